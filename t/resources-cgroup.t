# The Cgroup Ruby API (mruby-cgroup compatible) on the machine's real cgroup
# hierarchy, from mruby_init (the master, root): create, set, read back,
# delete, one level below resource_cgroup_root; invalid names and values
# raise, failed writes raise, other phases raise. Every directory the
# tests make is removed at the end (END block), even after a failure.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

END {
    # the roots made by Cgroup#create (groups are deleted by the scripts)
    for my $dir (sort { length($b) <=> length($a) } split /\n/, `find /sys/fs/cgroup -maxdepth 5 -type d -name 'ngx-mruby-t-cg-*' 2>/dev/null`) {
        rmdir "$_" for glob("$dir/*/");
        rmdir $dir;
    }
}

no_shuffle();
run_tests();

__DATA__

=== TEST 1: create, set, read back, delete in every controller; bad writes raise
--- http_config
    resource_cgroup_root ngx-mruby-t-cg-$TEST_NGINX_SERVER_PORT;
    mruby_init_code '
        out = []
        c = Cgroup::CPU.new("web")
        c.cfs_period_us = 100000
        c.cfs_quota_us = 30000
        c.shares = 512
        out << c.exist?
        c.create
        out << c.exist? << c.cfs_quota_us << c.cfs_period_us << c.shares
        c.cfs_quota_us = -1
        c.modify
        out << c.cfs_quota_us
        a = Cgroup::CPUACCT.new("web")
        a.create
        out << a.usage.class
        m = Cgroup::MEMORY.new("web")
        m.limit_in_bytes = 64 * 1024 * 1024
        m.create
        out << m.limit_in_bytes << m.usage_in_bytes.class
        b = Cgroup::BLKIO.new("web")
        b.create
        b.throttle_read_bps_device = "1:3 1048576"
        begin
          b.modify
          out << "no error"
        rescue RuntimeError => e
          out << (e.message.include?("blkio.throttle.read_bps_device") ? "write refused" : e.message)
        end
        [c, a, m, b].each(&:delete)
        out << c.exist? << m.exist?
        begin; c.modify; rescue RuntimeError => e; out << (e.message.include?("does not exist") ? "gone" : e.message); end
        Nginx.errlogger Nginx::LOG_NOTICE, "cgroup: #{out.inspect}"
    ';
--- config
    location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- error_log
cgroup: [false, true, 30000, 100000, 512, -1, Integer, 67108864, Integer, "write refused", false, false, "gone"]


=== TEST 2: invalid names, types and values raise before anything is written
--- http_config
    resource_cgroup_root ngx-mruby-t-cg-$TEST_NGINX_SERVER_PORT;
    mruby_init_code '
        out = []
        # "1234.1" could be a generation directory of the module (<master pid>.<n>): names start with a letter
        [["../x"], ["a/b"], ["."], [""], ["x" * 65], ["1234.1"], ["9x"], ["-x"], [1], [nil], [], ["a", "b"]].each do |args|
          begin
            Cgroup::CPU.new(*args)
            out << "no error"
          rescue ArgumentError, TypeError => e
            out << e.class.to_s
          end
        end
        c = Cgroup::CPU.new("v")
        [[:cfs_quota_us=, 10], [:cfs_quota_us=, 2**62], [:cfs_quota_us=, "5"], [:cfs_period_us=, 999],
         [:shares=, 1], [:shares=, nil]].each do |m, v|
          begin
            c.send(m, v)
            out << "no error"
          rescue ArgumentError, TypeError => e
            out << e.class.to_s
          end
        end
        mem = Cgroup::MEMORY.new("v")
        [1, -2, 2**60, 1.5].each do |v|
          begin; mem.limit_in_bytes = v; out << "no error"; rescue ArgumentError, TypeError => e; out << e.class.to_s; end
        end
        io = Cgroup::BLKIO.new("v")
        ["8:0", "8:0 -1", "x:y 1", 5].each do |v|
          begin; io.throttle_read_bps_device = v; out << "no error"; rescue ArgumentError, TypeError => e; out << e.class.to_s; end
        end
        out << c.exist?
        Nginx.errlogger Nginx::LOG_NOTICE, "refused: #{out.join(",")}"
    ';
--- config
    location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- error_log
refused: ArgumentError,ArgumentError,ArgumentError,ArgumentError,ArgumentError,ArgumentError,ArgumentError,ArgumentError,TypeError,TypeError,ArgumentError,ArgumentError,ArgumentError,ArgumentError,TypeError,ArgumentError,ArgumentError,TypeError,ArgumentError,ArgumentError,ArgumentError,TypeError,ArgumentError,ArgumentError,ArgumentError,TypeError,false


=== TEST 3: a script that rewrites @name cannot leave the root
--- http_config
    resource_cgroup_root ngx-mruby-t-cg-$TEST_NGINX_SERVER_PORT;
    mruby_init_code '
        c = Cgroup::CPU.new("ok")
        c.instance_variable_set(:@name, "../../escape")
        begin
          c.create
          Nginx.errlogger Nginx::LOG_NOTICE, "escape: created"
        rescue ArgumentError => e
          Nginx.errlogger Nginx::LOG_NOTICE, "escape: #{e.message}"
        end
    ';
--- config
    location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- error_log
escape: invalid cgroup name "../../escape"


=== TEST 4: from a request the API raises; without resource_cgroup_root it raises too
--- http_config
    mruby_init_code '
        begin
          Cgroup::CPU.new("x").create
        rescue ArgumentError => e
          Nginx.errlogger Nginx::LOG_NOTICE, "no root: #{e.message}"
        end
    ';
--- config
    location = /t {
        mruby_content_handler_code '
            begin
              Cgroup::CPU.new("x").create
              Nginx.echo "created"
            rescue RuntimeError => e
              Nginx.echo e.message
            end
        ';
    }
--- request
GET /t
--- response_body
Cgroup is only for mruby_init and mruby_init_worker, not mruby_content_handler
--- error_log
no root: the Cgroup API needs "resource_cgroup_root" in http{}


=== TEST 5: attach and detach run from mruby_init_worker only, through the tenant runners' supervisor
--- http_config
    resource_cgroup_root ngx-mruby-t-cg-$TEST_NGINX_SERVER_PORT;
    mruby_init_code '
        begin
          Cgroup::CPU.new("x").attach(1)
        rescue RuntimeError => e
          Nginx.errlogger Nginx::LOG_NOTICE, "init attach: #{e.message}"
        end
    ';
    mruby_init_worker_code '
        begin
          Cgroup::CPU.new("x").attach(1)
        rescue RuntimeError => e
          Nginx.errlogger Nginx::LOG_NOTICE, "worker attach: #{e.message}"
        end
    ';
--- config
    location = /t {
        mruby_content_handler_code '
            begin
              Cgroup::CPU.new("x").detach(1)
            rescue RuntimeError => e
              Nginx.echo e.message
            end
        ';
    }
--- request
GET /t
--- response_body
Cgroup#detach asks the tenant runners' supervisor, which runs once workers start: call it from mruby_init_worker, not mruby_content_handler
--- error_log
init attach: Cgroup#attach asks the tenant runners' supervisor, which runs once workers start: call it from mruby_init_worker, not mruby_init
worker attach: Cgroup#attach(1): no tenant runners in this configuration (tenant_runner), so no supervisor to ask
