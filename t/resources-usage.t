# Per-host usage and auto-confinement as nginx shows them: the shared
# zone, Nginx::Resource.usage / .confined? and resource_stats.
#
# Without tenant runners nothing records usage, so these tests see the
# zone empty; the tenant path records each request's kernel figures
# (t/resources-moves.t), and t/resources-confine.t drives the ranking,
# confine and release end to end (also unit-tested in resource-policy/).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: an unseen host: zero usage, not confined; resource_stats agrees
--- http_config
    resource_cgroup_root ngx-mruby-test;
    resource_class slow cpu=10;
    resource_auto_confine class=slow load=2 top=1 hold=5 load_source=html/loadavg;
--- config
    location = /ruby {
        mruby_content_handler_code '
            u = Nginx::Resource.usage("a.test")
            Nginx.echo u.keys.sort.join(",")
            Nginx.echo u.values.inject(:+)
            Nginx.echo Nginx::Resource.confined?("a.test").inspect
            Nginx.echo Nginx::Resource.confined?("A.TEST:8080").inspect
        ';
    }
    location = /stats { resource_stats; }
--- user_files
>>> loadavg
5.00 4.00 3.00 2/345 6789
--- request eval
["GET /ruby", "GET /stats"]
--- response_body_like eval
["^cpu_sys_ms,cpu_user_ms,mem_peak_kb,requests,window_cpu_ms\n0\nfalse\nfalse\n\\z",
 qr{"load":"5.00","zone":\{"capacity":\d+,"hosts":0\},"hosts":\{\}\}}]
--- no_error_log
[error]
resource_auto_confine: confining


=== TEST 2: wrong types, wrong arity and huge host names raise
--- config
    location = /errors {
        mruby_content_handler_code '
            out = []
            [[1], [nil], [:sym], [], ["a", "b"], ["x" * 300], ["x" * 1_000_000]].each do |args|
              begin
                Nginx::Resource.usage(*args)
                out << "no error"
              rescue TypeError, ArgumentError => e
                out << "#{e.class}: #{e.message}"
              end
            end
            begin; Nginx::Resource.confined?(42); rescue TypeError => e; out << "#{e.class}: #{e.message}"; end
            begin; Nginx::Resource.confined?; rescue ArgumentError => e; out << "#{e.class}"; end
            Nginx.rputs out.join("\n")
        ';
    }
--- request
GET /errors
--- response_body chomp
TypeError: host must be a String, not Integer
TypeError: host must be a String, not NilClass
TypeError: host must be a String, not Symbol
ArgumentError: wrong number of arguments (given 0, expected 1)
ArgumentError: wrong number of arguments (given 2, expected 1)
ArgumentError: host is 300 bytes long, at most 255
ArgumentError: host is 1000000 bytes long, at most 255
TypeError: host must be a String, not Integer
ArgumentError


=== TEST 3: without any resource directive the API answers zeros (no zone)
--- config
    location = /ruby {
        mruby_content_handler_code '
            Nginx.echo Nginx::Resource.usage("a.test")["requests"]
            Nginx.echo Nginx::Resource.confined?("a.test")
        ';
    }
--- request
GET /ruby
--- response_body
0
false


=== TEST 4: from mruby_init (the master, before the zone is mapped): zeros, no crash
--- http_config
    resource_cgroup_root ngx-mruby-test;
    resource_class slow cpu=10;
    mruby_init_code 'Nginx.errlogger Nginx::LOG_NOTICE, "init usage=#{Nginx::Resource.usage("a.test")["requests"]} confined=#{Nginx::Resource.confined?("a.test")}"';
--- config
    location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- error_log
init usage=0 confined=false


=== TEST 5: an unreadable load source: an [error] naming it (again after a minute while it lasts), requests served
--- http_config
    resource_cgroup_root ngx-mruby-test;
    resource_class slow cpu=10;
    resource_auto_confine class=slow load=2 top=1 hold=5 load_source=/nonexistent/loadavg;
--- config
    location = /ruby {
        mruby_content_handler_code 'Nginx.echo Nginx::Resource.confined?("a.test")';
    }
--- request
GET /ruby
--- response_body
false
--- error_log
resource_auto_confine: cannot read the load from "/nonexistent/loadavg": No such file or directory (os error 2), no decision this second


=== TEST 6: a load source not in /proc/loadavg format
--- http_config
    resource_cgroup_root ngx-mruby-test;
    resource_class slow cpu=10;
    resource_auto_confine class=slow load=2 top=1 hold=5 load_source=html/loadavg;
--- config
    location = /stats { resource_stats; }
--- user_files
>>> loadavg
high
--- request
GET /stats
--- response_body_like eval
qr{"load":"\\"/\S+/html/loadavg\\" is not in /proc/loadavg format"}
--- error_log eval
qr{resource_auto_confine: "/\S+/html/loadavg" is not in /proc/loadavg format, no decision this second}
