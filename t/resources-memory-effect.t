# The effect of `memory=` on the real cgroup hierarchy (issue 10): a
# request in a class `memory=32m` to a CGI program, run as a tenant user
# through its runner, that allocates past the cap is stopped by the
# kernel (an OOM kill in the class group), the client gets 502 with one
# error_log line saying so, and nginx, the same tenant and another tenant
# keep serving right after. Below the cap the same program answers. A
# PHP runner (php-cgi does the work itself) over the cap is the process
# the kernel kills: 502 and the same line.
# Needs root and a writable hierarchy with the memory controller (skipped
# otherwise, saying why).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use VlimitTest;
use TenantTest;
use ResourceTest;

plan skip_all => 'nginx or the module is not built' unless nginx_available();
my $skip = tenants_skip_reason();
plan skip_all => $skip if $skip;

my $supervisor_bin = "$FindBin::Bin/../build/sbin/ngx-mruby-supervisor";
my $root_name = 'ngx-res-mem-' . port();
my ($cgroup_ok, @roots) = resource_roots($supervisor_bin, $root_name);
plan skip_all => "resource_cgroup_root: $roots[0]" unless $cgroup_ok;
my $v1 = !grep { !m{^/sys/fs/cgroup/(cpu|cpuacct|memory|pids|blkio)/} } @roots;
plan skip_all => 'the kernel offers no memory controller here: memory= cannot be tested'
    if $v1 && !grep { m{^/sys/fs/cgroup/memory/} } @roots;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
my %users = tenant_users();
make_site('m1', 'ngxt1');
write_site_file('m1', 'alloc.cgi', alloc_cgi(), owner => 'ngxt1', mode => 0700);
write_site_file('m1', 'alloc.php', qq{<?php \$s = str_repeat("x", (int)\$_GET['mib'] << 20); echo "allocated ", strlen(\$s) >> 20, " MiB\\n";\n},
    owner => 'ngxt1', mode => 0600);
write_site_file('m1', 'sleep.cgi', qq{#!/bin/sh\nsleep 1.5\nprintf 'Content-Type: text/plain\\r\\n\\r\\nslept\\n'\n},
    owner => 'ngxt1', mode => 0700);
make_site('m2', 'ngxt2');
write_site_file('m2', 'alloc.cgi', alloc_cgi(), owner => 'ngxt2', mode => 0700);

# http{}: the classes in `$classes`, a request's class from ?class=.
sub http_conf {
    my ($classes) = @_;
    return <<"EOF";
    tenant_interpreter .php /usr/bin/php-cgi;
    tenant_socket_dir $base/run;
    resource_cgroup_root $root_name;
$classes
    server {
        listen 127.0.0.1:${\ port()};
        server_name localhost;
        root $base/sites/\$host/htdocs;
        resource_class_for \$arg_class;
        location = /static.txt { root ${\ servroot()}/html; }
        location ~ \\.php\$ {
            tenant_runner on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param REDIRECT_STATUS 200;
            fastcgi_read_timeout 20s;
        }
        location ~ \\.cgi\$ {
            tenant_runner on;
            tenant_cgi on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param QUERY_STRING \$arg_mib;
            fastcgi_read_timeout 20s;
            add_header X-Runner-Pid \$tenant_runner_pid always;
        }
    }
EOF
}
start_nginx(user => 'nobody nogroup', workers => 1, http => http_conf('    resource_class capped memory=32m;'));
write_html('static.txt' => "static\n");

# The kernel's OOM kills in a group (v1 memory.oom_control, v2 memory.events); default class capped's.
sub oom_kills {
    my $group = group_dir('memory', $_[0] // 'capped');
    my $v1_control = slurp("$group/memory.oom_control");
    my $text = $v1_control // slurp("$group/memory.events") // '';
    my ($n) = $text =~ /^oom_kill (\d+)/m;
    return $n // 0;
}

subtest 'below the cap the program answers' => sub {
    my ($status, $body) = http_get_host('m1', '/alloc.cgi?class=capped&mib=8', 20);
    like("$status $body", qr/^200 allocated 8 MiB/, 'an 8 MiB allocation in class capped (memory=32m)');
    is(oom_kills(), 0, 'no OOM kill in the class group');
};

subtest 'past the cap: the kernel stops it, 502, one error_log line' => sub {
    my $master_workers = join ' ', worker_pids();
    my $log_from = error_log_size();
    my ($status, $body) = http_get_host('m1', '/alloc.cgi?class=capped&mib=128', 20);
    is($status, 502, 'allocating 128 MiB in class capped: 502');
    is(oom_kills(), 1, 'the kernel killed it: one OOM kill in the class group') or diag slurp(group_dir("memory", "capped") . "/memory.oom_control");
    # the supervisor writes its line once the worker has given the runner back
    wait_until(sub { error_log_since($log_from) =~ /out of memory/ }, 5);
    my $log = error_log_since($log_from);
    my $uid = $users{ngxt1}[0];
    like($log, qr/\[error\].* supervisor: the kernel killed 1 process\(es\) out of memory in resource class "capped" \(memory=32m\) while runner pid \d+ of uid $uid served a request there; the request failed$/m,
        'one line from the supervisor: the OOM kill in the class (the kernel\'s count), its cap, the runner and owner')
        or diag $log;
    like($log, qr/\[error\].*upstream prematurely closed.*request: "GET \/alloc\.cgi\?class=capped&mib=128 HTTP\/1\.0".*host: "m1"/,
        'and nginx\'s own line for the request (its URI and host)');
    is(() = $log =~ /out of memory/g, 1, 'the kill is logged once');

    # nginx, the same tenant, another tenant and static files keep serving
    my ($s1, $b1) = http_get_host('m2', '/alloc.cgi?mib=1', 20);
    like("$s1 $b1", qr/^200 allocated 1 MiB/, 'another tenant is served right after');
    my ($s2, $b2) = http_get_host('m1', '/static.txt');
    is("$s2 $b2", "200 static\n", 'a static file too');
    my ($s3, $b3) = http_get_host('m1', '/alloc.cgi?class=capped&mib=4', 20);
    like("$s3 $b3", qr/^200 allocated 4 MiB/, 'and the same tenant in the same class, within its cap');
    is(join(' ', worker_pids()), $master_workers, 'the same worker serves (nothing crashed)');
    ok(wait_until(sub { (slurp(group_dir('memory', 'capped') . '/cgroup.procs') // 'x') eq '' }, 5),
        'the class group holds no task after');
};

subtest 'interleaved: a request sleeping in the class while another is killed there' => sub {
    my $log_from = error_log_size();
    my $kills = oom_kills();
    my $sleeper = open_request('/sleep.cgi?class=capped', host => 'm1', proto => 'HTTP/1.0');
    sleep 0.3;
    my ($status, undef, $head) = http_get_host('m1', '/alloc.cgi?class=capped&mib=128', 20);
    my ($victim) = $head =~ /^X-Runner-Pid:\s*(\d+)/mi;
    is($status, 502, 'the allocating request: 502');
    my ($sstatus, $sbody) = read_response($sleeper, 10);
    is("$sstatus $sbody", "200 slept\n", 'the sleeping one in the same class ends normally');
    is(oom_kills(), $kills + 1, 'one OOM kill in the class group');
    wait_until(sub { error_log_since($log_from) =~ /out of memory/ }, 5);
    my $log = error_log_since($log_from);
    my @lines = $log =~ /^(.*out of memory.*)$/mg;
    is(scalar @lines, 1, 'one line') or diag $log;
    like($lines[0] // '', qr/while runner pid $victim of uid \d+ served a request there; the request failed$/,
        "it names the failed request's runner ($victim)");
};

subtest 'a PHP runner past the cap is killed itself: 502, the same line' => sub {
    my ($status0, $body0) = http_get_host('m1', '/alloc.php?class=capped&mib=4', 20);
    is("$status0 $body0", "200 allocated 4 MiB\n", 'PHP within the cap in class capped');
    my $kills = oom_kills();
    my $log_from = error_log_size();
    my ($status) = http_get_host('m1', '/alloc.php?class=capped&mib=96', 20);
    is($status, 502, 'allocating 96 MiB in PHP in class capped: 502');
    is(oom_kills(), $kills + 1, 'one more OOM kill in the class group');
    wait_until(sub { error_log_since($log_from) =~ /out of memory/ }, 5);
    my $log = error_log_since($log_from);
    like($log, qr/supervisor: the kernel killed 1 process\(es\) out of memory in resource class "capped" \(memory=32m\) while runner pid \d+ of uid $users{ngxt1}[0] served a request there; the request failed$/m,
        'the supervisor\'s line') or diag $log;
    my ($s2, $b2) = http_get_host('m1', '/alloc.php?mib=1', 20);
    is("$s2 $b2", "200 allocated 1 MiB\n", 'the tenant\'s next PHP request is served (a new runner)');
};

subtest 'tenant_resource_class memory=32m: the owner\'s own group, 502, a line naming the owner' => sub {
    start_nginx(user => 'nobody nogroup', workers => 1,
        http => http_conf("    resource_class owner memory=32m;\n    tenant_resource_class owner;"));
    my $uid = $users{ngxt1}[0];
    my ($status0, $body0) = http_get_host('m1', '/alloc.cgi?mib=4', 20);
    like("$status0 $body0", qr/^200 allocated 4 MiB/, 'within the cap in the owner\'s group');
    my $log_from = error_log_size();
    my ($status) = http_get_host('m1', '/alloc.cgi?mib=128', 20);
    is($status, 502, 'past it: 502');
    is(oom_kills("tenants.owner/$uid"), 1, "one OOM kill in tenants.owner/$uid");
    wait_until(sub { error_log_since($log_from) =~ /out of memory/ }, 5);
    my $log = error_log_since($log_from);
    like($log, qr/supervisor: the kernel killed 1 process\(es\) out of memory in the group of uid $uid \(tenant_resource_class "owner", memory=32m\); seen when runner pid \d+ failed a request or died$/m,
        'the supervisor\'s line names the owner and the cap') or diag $log;
    my ($s1, $b1) = http_get_host('m2', '/alloc.cgi?mib=16', 20);
    like("$s1 $b1", qr/^200 allocated 16 MiB/, 'another tenant, in its own group, is served right after');
    my ($s2, $b2) = http_get_host('m1', '/alloc.cgi?mib=4', 20);
    like("$s2 $b2", qr/^200 allocated 4 MiB/, 'and the same tenant within its cap');
    is(() = error_log_since($log_from) =~ /out of memory/g, 1, 'the kill is logged once');
};

subtest 'nginx -s stop removes the sub-tree' => sub {
    stop_nginx();
    ok(wait_until(sub { !grep { -e $_ } @roots }, 10), "every group is removed (@roots)");
};

done_testing();
