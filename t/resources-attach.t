# Cgroup#attach / #detach (issue 10) through the supervisor, on the real
# cgroup hierarchy: mruby_init (the master, root) creates and sets a group
# of the Cgroup API; mruby_init_worker (a worker, no privilege) attaches a
# tenant runner to it and later detaches it, the supervisor doing the
# move. The runner's pid comes from the test through a file (read by the
# worker's script), and each step starts a fresh worker (the test ends the
# running one; the master starts another, which runs mruby_init_worker
# again). Refused: no pid (the worker is never moved), the worker's own
# pid, the master's, the supervisor's, pid 1, a group that does not exist,
# names outside the root or like a generation's directory (also as raw
# lines on a worker's connection); each refusal raises in Ruby and the
# supervisor logs it. At the end a reload's mruby_init deletes the group.
# Needs root and a writable hierarchy (skipped otherwise).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use VlimitTest;
use TenantTest;

plan skip_all => 'nginx or the module is not built' unless nginx_available();
my $skip = tenants_skip_reason();
plan skip_all => $skip if $skip;

my $supervisor_bin = "$FindBin::Bin/../build/sbin/ngx-mruby-supervisor";
my $root_name = 'ngx-res-attach-' . port();
my ($cgroup_ok, @roots) = cgroup_check($supervisor_bin, $root_name);
plan skip_all => "resource_cgroup_root: $roots[0]" unless $cgroup_ok;
my ($cpu_root) = grep { m{/cpu/} } @roots;
my ($cpuacct_root) = grep { m{/cpuacct/} } @roots;
plan skip_all => "no cgroup v1 cpu and cpuacct hierarchies here (@roots)" unless $cpu_root && $cpuacct_root;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
my %users = tenant_users();
my $uid = $users{ngxt4}[0];
make_site('at', 'ngxt4');
write_site_file('at', 'pid.cgi', <<'PL', owner => 'ngxt4', mode => 0700);
#!/usr/bin/perl
print "Content-Type: text/plain\r\n\r\nok\n";
PL

# What the worker's script does next: "attach <runner> <supervisor>", "detach <runner>", "delete".
my $cmd_file = "$base/attach.cmd";
sub command {
    my ($text) = @_;
    open my $fh, '>', "$cmd_file.tmp" or die $!;
    print $fh "$text\n";
    close $fh;
    chmod 0644, "$cmd_file.tmp";
    rename "$cmd_file.tmp", $cmd_file or die $!;
}

my $init_rb = <<"RB";
cmd = File.exist?("$cmd_file") ? File.read("$cmd_file").split : []
if cmd[0] == "delete"
  [Cgroup::CPU.new("api"), Cgroup::CPUACCT.new("api")].each(&:delete)
  Nginx.errlogger Nginx::LOG_NOTICE, "attach test: deleted, exist? #{Cgroup::CPU.new("api").exist?}"
else
  cpu = Cgroup::CPU.new("api")
  cpu.cfs_period_us = 100000
  cpu.cfs_quota_us = 20000
  cpu.create
  Cgroup::CPUACCT.new("api").create
  Nginx.errlogger Nginx::LOG_NOTICE, "attach test: created, quota #{cpu.cfs_quota_us}"
  # also in a file: at the first start the error_log of the configuration
  # is not open yet (Debian's nginx logs to its default /var/log/nginx/)
  File.open("$base/attach.init", "w") { |f| f.write "created, quota #{cpu.cfs_quota_us}" }
end
RB

my $worker_rb = <<"RB";
def report(label)
  yield
  Nginx.errlogger Nginx::LOG_NOTICE, "attach test: #{label}: ok"
rescue => e
  Nginx.errlogger Nginx::LOG_NOTICE, "attach test: #{label}: #{e.class}: #{e.message}"
end
cmd = File.exist?("$cmd_file") ? File.read("$cmd_file").split : []
stat = File.read("/proc/self/stat").split
me = stat[0].to_i
master = stat[3].to_i
Nginx.errlogger Nginx::LOG_NOTICE, "attach test: worker #{me} master #{master} command #{cmd.join(" ")}"
cpu = Cgroup::CPU.new("api")
case cmd[0]
when "attach"
  runner = cmd[1].to_i
  supervisor = cmd[2].to_i
  report("no pid") { cpu.attach }
  report("nil") { cpu.attach(nil) }
  report("string") { cpu.attach(runner.to_s) }
  report("zero") { cpu.attach(0) }
  report("huge") { cpu.attach(2**40) }
  report("worker") { cpu.attach(me) }
  report("master") { cpu.attach(master) }
  report("supervisor") { cpu.attach(supervisor) }
  report("pid 1") { cpu.attach(1) }
  report("outside") { Cgroup::CPU.new("../x") }
  report("rewritten") { g = Cgroup::CPU.new("api"); g.instance_variable_set(:\@name, "../../x"); g.attach(runner) }
  report("generation") { g = Cgroup::CPU.new("api"); g.instance_variable_set(:\@name, "#{master}.1"); g.attach(runner) }
  report("missing") { Cgroup::CPU.new("nosuch").attach(runner) }
  report("runner") { cpu.attach(runner); Cgroup::CPUACCT.new("api").attach(runner) }
  report("usage") { Nginx.errlogger Nginx::LOG_NOTICE, "attach test: usage #{Cgroup::CPUACCT.new("api").usage.class}, quota #{cpu.cfs_quota_us}" }
when "detach"
  runner = cmd[1].to_i
  report("detach no pid") { cpu.detach }
  report("detach worker") { cpu.detach(me) }
  report("detach runner") { cpu.detach(runner) }
end
RB

start_nginx(user => 'nobody nogroup', workers => 1, setup => sub {
    for (['init.rb', $init_rb], ['worker.rb', $worker_rb]) {
        open my $fh, '>', servroot() . "/conf/$_->[0]" or die $!;
        print $fh $_->[1];
        close $fh;
    }
}, http => <<"EOF");
    tenant_socket_dir $base/run;
    resource_cgroup_root $root_name;
    mruby_init ${\ servroot()}/conf/init.rb;
    mruby_init_worker ${\ servroot()}/conf/worker.rb;
    server {
        listen 127.0.0.1:${\ port()};
        server_name localhost;
        root $base/sites/\$host/htdocs;
        location ~ \\.cgi\$ {
            tenant_runner on;
            tenant_cgi on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param REQUEST_METHOD \$request_method;
            add_header X-Runner-Pid \$tenant_runner_pid always;
        }
    }
EOF

sub read_file { my ($path) = @_; open my $fh, '<', $path or return undef; local $/; my $t = <$fh> // ''; $t }

# The group of `pid` in the hierarchy whose controllers are exactly `$controller`.
sub group_of {
    my ($pid, $controller) = @_;
    for (split /\n/, read_file("/proc/$pid/cgroup") // '') {
        my (undef, $controllers, $path) = split /:/, $_, 3;
        return $path if $controllers eq $controller;
    }
    return undef;
}

# Ends the worker (gracefully: the runners it keeps go back to the
# supervisor); the master starts a new one, which runs mruby_init_worker.
sub fresh_worker {
    my @old = worker_pids();
    kill 'QUIT', @old;
    my @new;
    wait_until(sub { @new = grep { my $n = $_; !grep { $_ == $n } @old } worker_pids(); @new == 1 }, 10)
        or die "no new worker";
    return $new[0];
}

my ($status, $body, $head) = http_get_host('at', '/pid.cgi');
my ($runner) = $head =~ /^X-Runner-Pid:\s*(\d+)/mi;
is("$status $body", "200 ok\n", 'a request to the site');
ok($runner, "served by runner $runner");
my ($supervisor) = supervisor_pids();
my $supervisor_cpu = group_of($supervisor, 'cpu');
is(group_of($runner, 'cpu'), $supervisor_cpu, "the runner is in the supervisor's own cpu group ($supervisor_cpu)");
is(do { open my $fh, '<', "$base/attach.init"; local $/; <$fh> } // '', 'created, quota 20000', 'mruby_init created the group and set its quota');
ok(-f "$cpu_root/api/cgroup.procs" && -f "$cpuacct_root/api/cgroup.procs", 'it exists under the root');

subtest 'raw lines on a worker\'s connection: outside the root, a generation\'s name, refused' => sub {
    my $from = error_log_size();
    my @workers = worker_pids();
    my $sent = send_as_worker(supervisor_socket(), \@workers, "M 9 cpu ../x $runner", "M 9 cpu 1234.1 $runner", "H 9 0");
    ok($sent, "written on worker ${sent}'s connection");
    ok(wait_until(sub { (() = error_log_since($from) =~ /refused a malformed request/g) >= 3 }, 5), 'three refusals logged');
    my $log = error_log_since($from);
    like($log, qr/refused a malformed request from worker pid $sent: invalid group: "M 9 cpu \.\.\/x $runner"/, '../x');
    like($log, qr/refused a malformed request from worker pid $sent: invalid group: "M 9 cpu 1234\.1 $runner"/, '1234.1');
    like($log, qr/refused a malformed request from worker pid $sent: invalid pid: "H 9 0"/, 'pid 0');
    is(group_of($runner, 'cpu'), $supervisor_cpu, 'the runner has not moved');
};

sleep 1.5;    # the worker keeps its runner idle for a second, then gives it back
my $worker;
subtest 'attach from mruby_init_worker: refusals raise and are logged, the runner moves' => sub {
    my $from = error_log_size();
    command("attach $runner $supervisor");
    $worker = fresh_worker();
    ok(wait_until(sub { error_log_since($from) =~ /attach test: usage/ }, 10), "the new worker $worker ran its script")
        or diag error_log_since($from);
    my $log = error_log_since($from);
    my ($master) = $log =~ /attach test: worker $worker master (\d+)/;
    ok($master, "its master is $master");
    my %expect = (
        'no pid'     => qr/ArgumentError: Cgroup#attach needs the pid of a tenant runner: the nginx worker itself is never moved/,
        'nil'        => qr/ArgumentError: Cgroup#attach needs the pid of a tenant runner/,
        'string'     => qr/TypeError: pid must be an Integer, not String/,
        'zero'       => qr/ArgumentError: pid 0 is out of range/,
        'huge'       => qr/ArgumentError: pid 1099511627776 is out of range/,
        'worker'     => qr/RuntimeError: Cgroup#attach\($worker\): the supervisor refused: not a runner of this supervisor/,
        'master'     => qr/RuntimeError: Cgroup#attach\($master\): the supervisor refused: not a runner of this supervisor/,
        'supervisor' => qr/RuntimeError: Cgroup#attach\($supervisor\): the supervisor refused: not a runner of this supervisor/,
        'pid 1'      => qr/RuntimeError: Cgroup#attach\(1\): the supervisor refused: not a runner of this supervisor/,
        'outside'    => qr/ArgumentError: invalid cgroup name "\.\.\/x"/,
        'rewritten'  => qr/ArgumentError: invalid cgroup name "\.\.\/\.\.\/x"/,
        'generation' => qr/ArgumentError: invalid cgroup name "$master\.1"/,
        'missing'    => qr{RuntimeError: Cgroup#attach\($runner\): the supervisor refused: there is no group \S+/\Q$root_name\E/nosuch \(create it first\)},
        'runner'     => qr/^ok$/,
    );
    for my $label (sort keys %expect) {
        my ($line) = $log =~ /attach test: \Q$label\E: (.*)$/m;
        like($line // '(no line)', $expect{$label}, $label);
    }
    for my $pid ($worker, $master, $supervisor, 1) {
        like($log, qr/\[error\].*supervisor: refused to attach pid $pid to cgroup "api" \(cpu\) asked by worker pid $worker: not a runner of this supervisor/,
            "the supervisor logged the refusal of pid $pid");
    }
    like($log, qr/\[error\].*supervisor: refused to attach pid $runner to cgroup "nosuch" \(cpu\) asked by worker pid $worker: there is no group/,
        'and of the missing group');
    like($log, qr/\[notice\].*supervisor: runner pid $runner of uid $uid attached to \Q$cpu_root\E\/api \(Cgroup#attach by worker pid $worker\)/,
        'the move is logged (cpu)');
    like($log, qr/\[notice\].*supervisor: runner pid $runner of uid $uid attached to \Q$cpuacct_root\E\/api /, 'and cpuacct');
    like($log, qr/attach test: usage Integer, quota 20000/, 'usage and settings read back from the worker');
    is(group_of($runner, 'cpu'), "$supervisor_cpu/$root_name/api" =~ s{^//}{/}r, 'the runner is in the group (cpu)')
        or diag read_file("/proc/$runner/cgroup");
    like(group_of($runner, 'cpuacct') // '', qr{/\Q$root_name\E/api$}, 'and in cpuacct');
    like(read_file("$cpu_root/api/cgroup.procs") // '', qr/^$runner$/m, "the group's cgroup.procs lists it");
    is(group_of($worker, 'cpu'), group_of($master, 'cpu'), 'the worker itself never moved');
};

subtest 'the attached runner serves requests inside the group, and its usage is counted there' => sub {
    my $before = read_file("$cpuacct_root/api/cpuacct.usage") // 0;
    my ($s, $b, $h) = http_get_host('at', '/pid.cgi');
    is("$s $b", "200 ok\n", 'served');
    my ($pid) = $h =~ /^X-Runner-Pid:\s*(\d+)/mi;
    is($pid, $runner, 'by the attached runner');
    ok((read_file("$cpuacct_root/api/cpuacct.usage") // 0) > $before, 'the group\'s cpuacct.usage grew');
};

sleep 1.5;
subtest 'detach: back to its own group' => sub {
    my $from = error_log_size();
    command("detach $runner");
    my $new = fresh_worker();
    ok(wait_until(sub { error_log_since($from) =~ /attach test: detach runner/ }, 10), "worker $new ran its script");
    my $log = error_log_since($from);
    like($log, qr/attach test: detach no pid: ArgumentError: Cgroup#detach needs the pid of a tenant runner/, 'no pid raises');
    like($log, qr/attach test: detach worker: RuntimeError: Cgroup#detach\($new\): the supervisor refused: not a runner of this supervisor/,
        'the worker\'s own pid raises');
    like($log, qr/\[error\].*supervisor: refused to detach pid $new asked by worker pid $new: not a runner/, 'and is logged');
    like($log, qr/attach test: detach runner: ok/, 'the runner is detached');
    like($log, qr/\[notice\].*supervisor: runner pid $runner of uid $uid back in its own group \(Cgroup#detach by worker pid $new\)/,
        'the move is logged');
    is(group_of($runner, 'cpu'), $supervisor_cpu, 'the runner is back in the supervisor\'s group (cpu)');
    is(group_of($runner, 'cpuacct'), group_of($supervisor, 'cpuacct'), 'and cpuacct');
    is(read_file("$cpu_root/api/cgroup.procs"), '', 'the group is empty');
};

subtest 'a reload\'s mruby_init deletes the group' => sub {
    my $from = error_log_size();
    command('delete');
    reload_nginx_one();
    ok(wait_until(sub { error_log_since($from) =~ /attach test: deleted, exist\? false/ }, 10), 'deleted from mruby_init')
        or diag error_log_since($from);
    ok(!-e "$cpu_root/api" && !-e "$cpuacct_root/api", 'the groups are gone');
};

sub reload_nginx_one {
    my %old = map { $_ => 1 } worker_pids();
    kill 'HUP', VlimitTest::pid_of_master();
    wait_until(sub { (grep { !$old{$_} } worker_pids()) >= 1 }, 10) or die 'reload did not happen';
}

subtest 'nginx -s stop removes the sub-tree' => sub {
    stop_nginx();
    ok(wait_until(sub { !grep { -e $_ } @roots }, 10), "every group is removed (@roots)");
};

subtest 'a worker reads groups without mruby_init having used the API (the layout comes from the master\'s check)' => sub {
    start_nginx(user => 'nobody nogroup', workers => 1, http => <<"EOF2");
    resource_cgroup_root $root_name;
    mruby_init_worker_code '
        begin
          Nginx.errlogger Nginx::LOG_NOTICE, "layout test: exist? #{Cgroup::CPU.new("nothere").exist?}"
        rescue => e
          Nginx.errlogger Nginx::LOG_NOTICE, "layout test: #{e.class}: #{e.message}"
        end
    ';
    server {
        listen 127.0.0.1:${\ port()};
        location / { return 200 "ok\\n"; }
    }
EOF2
    ok(wait_until(sub { error_log_since(0) =~ /layout test: (.*)/ }, 5), 'the worker ran its script');
    my ($line) = error_log_since(0) =~ /layout test: (.*)/;
    is($line, 'exist? false', 'Cgroup#exist? answers in a worker (no privilege) without an error');
    stop_nginx();
};

done_testing();
