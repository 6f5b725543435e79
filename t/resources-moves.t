# Per-request resource classes on the real cgroup hierarchy (issue 10,
# kernel side): before a request in a class is passed to its runner, the
# supervisor moves that runner into the class's group; when the response
# has been read, or the upstream times out, or the client goes away, it
# goes back to its owner's group. A request without a class, interleaved,
# stays out of it. A CGI program in a class cannot move itself or change a
# limit. Needs root and a writable hierarchy (skipped otherwise).

use strict;
use warnings;

use FindBin;
use IO::Socket::INET;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use IO::Select;
use VlimitTest;
use TenantTest;
use ResourceTest qw(class_pids cpu_burn_cgi);

plan skip_all => 'nginx or the module is not built' unless nginx_available();
my $skip = tenants_skip_reason();
plan skip_all => $skip if $skip;

my $supervisor_bin = "$FindBin::Bin/../build/sbin/ngx-mruby-supervisor";
my $root_name = 'ngx-res-moves-' . port();
my ($cgroup_ok, @roots) = cgroup_check($supervisor_bin, $root_name);
plan skip_all => "resource_cgroup_root: $roots[0]" unless $cgroup_ok;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
my %users = tenant_users();
my $uid = $users{ngxt3}[0];

make_site('m1', 'ngxt3');
# sleeps for the seconds in the query, then answers with its pid
my $sleep_cgi = <<'PL';
#!/usr/bin/perl
$| = 1;
select(undef, undef, undef, $ENV{QUERY_STRING} + 0);
print "Content-Type: text/plain\r\n\r\nslept $$\n";
PL
# burns the CPU time (user) in the query, in ms, then answers
write_site_file('m1', 'plain/burn.cgi', cpu_burn_cgi(), owner => 'ngxt3', mode => 0700);
# requests without a Host header are served (and counted) as server_name
make_site('localhost', 'ngxt3');
write_site_file('localhost', 'plain/sleep.cgi', $sleep_cgi, owner => 'ngxt3', mode => 0700);
chown $users{ngxt3}[0], $users{ngxt3}[1], site_dir('localhost') . '/plain';
chmod 0711, site_dir('localhost') . '/plain';
for my $dir (qw(heavy plain)) {
    write_site_file('m1', "$dir/sleep.cgi", $sleep_cgi, owner => 'ngxt3', mode => 0700);
    chown $users{ngxt3}[0], $users{ngxt3}[1], site_dir('m1') . "/$dir";
    chmod 0711, site_dir('m1') . "/$dir";
}

my $loc = <<'EOF';
            tenant_runner on;
            tenant_cgi on;
            fastcgi_pass unix:$tenant_socket;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_read_timeout 1500ms;
            add_header X-Runner-Pid $tenant_runner_pid always;
EOF
start_nginx(user => 'nobody nogroup', workers => 1, http => <<"EOF");
    tenant_socket_dir $base/run;
    resource_cgroup_root $root_name;
    resource_class heavy cpu=50 pids=64;
    resource_class small cpu=90;
    tenant_resource_class small;
    resource_checker cpu_user=700 log=logs/heavy.log;
    log_format usage '\$request_uri \$status cpu_user=\$request_cpu_user_ms cpu_sys=\$request_cpu_sys_ms mem=\$request_mem_peak_kb';
    server {
        access_log logs/usage.log usage;
        listen 127.0.0.1:${\ port()};
        server_name localhost;
        root $base/sites/\$host/htdocs;
        location /heavy/ {
            resource_class_for heavy;
$loc        }
        location /plain/ {
$loc        }
        location = /stats { resource_stats; }
        location = /plain/burn.cgi {
${\ ($loc =~ s/1500ms/20s/r)}        }
    }
EOF

sub read_file { my ($path) = @_; open my $fh, '<', $path or return undef; local $/; my $t = <$fh> // ''; $t }

# The pids in class heavy's group, in every hierarchy (sorted, unique).
sub heavy_pids { class_pids('heavy', @roots) }

# True when pid's /proc/<pid>/cgroup names `$group` (heavy, or tenants.small/<uid>) in every hierarchy.
sub in_group {
    my ($pid, $group) = @_;
    my @lines = grep { m{/\Q$root_name\E/[^/]+/\Q$group\E$} } split /\n/, read_file("/proc/$pid/cgroup") // '';
    return @lines == @roots;
}

sub start_request {
    my ($path) = @_;
    return open_request($path, host => 'm1', proto => 'HTTP/1.0');
}

subtest 'the class group holds the runner during a slow request, and nothing after' => sub {
    my ($status, $body, $head) = http_get_host('m1', '/plain/sleep.cgi?0');
    is($status, 200, 'a request without a class');
    my ($plain_runner) = $head =~ /^X-Runner-Pid:\s*(\d+)/mi;
    ok(in_group($plain_runner, "tenants.small/$uid"), "its runner $plain_runner is in its owner's group");
    is(scalar(heavy_pids()), 0, 'class heavy holds no task');

    my $sock = start_request('/heavy/sleep.cgi?1.2');
    my $runner_in_heavy = sub { grep { ((proc_status($_) // {})->{Name} // '') =~ /^ngx-mruby-super/ } heavy_pids() };
    ok(wait_until(sub { scalar $runner_in_heavy->() }, 3), 'class heavy holds the runner while the request runs');
    # the runner is moved before the request is passed; its CGI program
    # starts a moment later (sampling at once raced it on a busy machine)
    wait_until(sub { heavy_pids() >= 2 }, 3);
    my @during = heavy_pids();
    my ($runner) = $runner_in_heavy->();
    ok($runner, "the runner itself ($runner) is in heavy, with its CGI child (@during)");
    ok(in_group($runner, 'heavy'), "/proc/$runner/cgroup names heavy in every hierarchy")
        or diag read_file("/proc/$runner/cgroup");
    is((split ' ', (proc_status($runner) // {})->{Uid} // '')[0], $uid, "it runs as the owner ($uid)");
    # a request without a class, interleaved: its runner is not moved
    my ($s2, $b2, $h2) = http_get_host('m1', '/plain/sleep.cgi?0.2');
    my ($other) = $h2 =~ /^X-Runner-Pid:\s*(\d+)/mi;
    is($s2, 200, 'an unclassed request served meanwhile');
    isnt($other, $runner, 'by another runner');
    ok(!grep({ $_ == $other } heavy_pids()), 'which stays out of class heavy');
    my ($status2, $body2) = read_response($sock);
    my ($child) = $body2 =~ /^slept (\d+)/;
    is($status2, 200, 'the classed request ends normally');
    ok($child && grep({ $_ == $child } @during), "its CGI program ($child) was in heavy too (it inherits the class)");
    ok(wait_until(sub { !heavy_pids() }, 3), 'class heavy holds no task after it') or diag join ' ', heavy_pids();
    ok(in_group($runner, "tenants.small/$uid"), 'the runner is back in its owner\'s group')
        or diag read_file("/proc/$runner/cgroup");
};

subtest 'upstream timeout: the class group is left' => sub {
    my $sock = start_request('/heavy/sleep.cgi?4');
    ok(wait_until(sub { heavy_pids() >= 1 }, 3), 'class heavy holds the runner');
    my ($status) = read_response($sock);
    is($status, 504, 'the request times out (fastcgi_read_timeout 1500ms)');
    ok(wait_until(sub { !heavy_pids() }, 5), 'class heavy holds no task after the timeout')
        or diag join ' ', heavy_pids();
};

subtest 'client abort: the class group is left' => sub {
    my $sock = start_request('/heavy/sleep.cgi?4');
    ok(wait_until(sub { heavy_pids() >= 1 }, 3), 'class heavy holds the runner');
    close $sock;
    ok(wait_until(sub { !heavy_pids() }, 5), 'class heavy holds no task after the client went away')
        or diag join ' ', heavy_pids();
    my ($status, $body) = http_get_host('m1', '/heavy/sleep.cgi?0');
    like("$status $body", qr/^200 slept \d+/, 'the next classed request is served');
    ok(wait_until(sub { !heavy_pids() }, 3), 'and heavy is empty again');
};

# The figures of the requests in logs/usage.log: uri => [user, sys, mem].
sub usage_lines {
    my %by;
    for (split /\n/, read_file(servroot() . '/logs/usage.log') // '') {
        $by{$1} = [$2, $3, $4] if /^(\S+) \d+ cpu_user=(\S+) cpu_sys=(\S+) mem=(\S+)$/;
    }
    return \%by;
}

subtest 'accounting from the kernel: a CPU burner and a cheap request interleaved' => sub {
    my $burn = start_request('/plain/burn.cgi?1500');
    sleep 0.3;
    my ($status, $body) = http_get_host('m1', '/plain/sleep.cgi?0.1');
    is($status, 200, 'a cheap request served while the burner runs');
    my ($bstatus, $bbody) = read_response($burn, 30);
    is("$bstatus $bbody", "200 burnt\n", 'the burner answers');
    ok(wait_until(sub { my $u = usage_lines(); $u->{'/plain/burn.cgi?1500'} && $u->{'/plain/sleep.cgi?0.1'} }, 5),
        'both are in the access log');
    my $u = usage_lines();
    my ($user, $sys, $mem) = @{ $u->{'/plain/burn.cgi?1500'} };
    ok($user >= 1300 && $user <= 2500 && $sys < 500, "the burner: \$request_cpu_user_ms $user (sys $sys) near its 1500 ms")
        or diag explain $u;
    ok($mem > 0, "\$request_mem_peak_kb of its runner: $mem");
    my ($cuser, $csys) = @{ $u->{'/plain/sleep.cgi?0.1'} };
    ok($cuser + $csys < 200, "the cheap one, interleaved: user $cuser + sys $csys ms, near zero");
    my $checker = read_file(servroot() . '/logs/heavy.log') // '';
    my @lines = split /\n/, $checker;
    is(scalar @lines, 1, 'resource_checker logged one line') or diag $checker;
    like($lines[0] // '', qr{"host":"m1".*"uri":"/plain/burn\.cgi\?1500".*"script":"[^"]*/plain/burn\.cgi".*"owner":$uid},
        'the burner, with its host, script and owner');
};

subtest 'a request without Host is counted under the server_name, not pooled as "-"' => sub {
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => port(), Timeout => 5) or die "connect: $!";
    print $sock "GET /plain/sleep.cgi?0 HTTP/1.0\r\n\r\n";
    my $reply = do { local $/; <$sock> } // '';
    like($reply, qr{^HTTP/1\.[01] 200 .*slept \d+}s, 'served from the server_name\'s site');
    my (undef, $stats) = http_get_host('m1', '/stats');
    like($stats, qr/"localhost":\{"requests":1,/, 'resource_stats counts it under "localhost"') or diag $stats;
    unlike($stats, qr/"-":/, 'no pooled "-" host');
};

subtest 'a CGI program in a class cannot move itself, change a limit or make a group' => sub {
    # every attempt for real, as the tenant user, from inside class heavy:
    # its own pid into the class's group, its owner's group and the root
    # (cgroup.procs and, v1, tasks), a limit file of each, a group in each
    my @gens = grep { -d } map { glob("$_/*") } @roots;
    my (@targets, %limit_before);
    for my $gen (@gens) {
        my $root = $gen =~ s{/[^/]+$}{}r;
        my $owner = "$gen/tenants.small/$uid";
        for my $dir ("$gen/heavy", $owner, $root) {
            push @targets, grep { -e } map { "$dir/$_" } qw(cgroup.procs tasks);
        }
        for my $file (map { ("$gen/heavy/$_", "$owner/$_") } qw(cpu.cfs_quota_us cpu.max pids.max)) {
            next unless -e $file;
            push @targets, $file;
            $limit_before{$file} = read_file($file);
        }
        push @targets, "mkdir $root/escape", "mkdir $gen/heavy/escape", "mkdir $owner/escape";
    }
    ok(keys %limit_before >= 2, 'limit files to try: ' . join(' ', sort keys %limit_before));
    my $list = join '', map { "$_\n" } @targets;
    write_site_file('m1', 'heavy/cgwrite.cgi', <<"PL", owner => 'ngxt3', mode => 0700);
#!/usr/bin/perl
print "Content-Type: text/plain\r\n\r\nuid \$<\n";
for my \$path (split /\n/, <<'LIST') {
${list}LIST
    if (\$path =~ s/^mkdir //) { print mkdir(\$path) ? "MADE \$path\n" : "DENIED \$path: \$!\n"; next }
    my \$ok = open(my \$fh, '>', \$path) && print(\$fh "\$\$\n") && close(\$fh);
    print \$ok ? "WROTE \$path\n" : "DENIED \$path: \$!\n";
}
PL
    my ($status, $body, $head) = http_get_host('m1', '/heavy/cgwrite.cgi');
    is($status, 200, 'the CGI program ran, in class heavy');
    like($body, qr/^uid $uid$/m, "as the tenant user ($uid)");
    my @denied = $body =~ /^DENIED /mg;
    is(scalar @denied, scalar @targets, scalar(@targets) . ' attempts, every one denied') or diag $body;
    unlike($body, qr/^(WROTE|MADE) /m, 'nothing written or made');
    is_deeply({ map { $_ => read_file($_) } keys %limit_before }, \%limit_before, 'every limit unchanged');
    ok(!(grep { -e } map { m{^mkdir (.*)} ? $1 : () } @targets), 'no group made');
    ok(wait_until(sub { !heavy_pids() }, 3), 'class heavy is empty after it (the runner went home)');
};

subtest 'nginx -s stop removes the sub-tree' => sub {
    stop_nginx();
    ok(wait_until(sub { !grep { -e $_ } @roots }, 10), "every group is removed (@roots)");
};

done_testing();
