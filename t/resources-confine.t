# Automatic confinement (issue 10, thesis §7) on the real cgroup hierarchy:
# three virtual hosts served by tenant runners, one burning CPU, two cheap;
# the load comes from a file this test writes (load_source=). While the
# file says the load is above the threshold, only the burning host is
# confined: its next request runs in the class's group, resource_stats and
# Nginx::Resource.confined? say so, and the decision is logged with the
# host, its usage, rank and the load. Once the file says the load fell, the
# host is released `hold` seconds later by the workers' timers, with no
# request arriving in between. Needs root and a writable hierarchy
# (skipped otherwise).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use JSON::PP ();
use VlimitTest;
use TenantTest;
use ResourceTest qw(class_pids cpu_burn_cgi);

plan skip_all => 'nginx or the module is not built' unless nginx_available();
my $skip = tenants_skip_reason();
plan skip_all => $skip if $skip;

my $supervisor_bin = "$FindBin::Bin/../build/sbin/ngx-mruby-supervisor";
my $root_name = 'ngx-res-confine-' . port();
my ($cgroup_ok, @roots) = cgroup_check($supervisor_bin, $root_name);
plan skip_all => "resource_cgroup_root: $roots[0]" unless $cgroup_ok;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
my %users = tenant_users();

# burns the CPU time (user) in the query, in ms (runners cannot read /proc:
# the test looks at the groups from outside while the request runs)
my $burn_cgi = cpu_burn_cgi('with pid');
# sleeps for the seconds in the query (no CPU)
my $sleep_cgi = <<'PL';
#!/usr/bin/perl
select(undef, undef, undef, $ENV{QUERY_STRING} + 0);
print "Content-Type: text/plain\r\n\r\nslept $$\n";
PL
my %owner = ('burn.test' => 'ngxt1', 'a.test' => 'ngxt2', 'b.test' => 'ngxt3');
for my $host (sort keys %owner) {
    make_site($host, $owner{$host});
    write_site_file($host, 'burn.cgi', $burn_cgi, owner => $owner{$host}, mode => 0700);
    write_site_file($host, 'sleep.cgi', $sleep_cgi, owner => $owner{$host}, mode => 0700);
}

my $hold = 2;
my $load_file = servroot() . '/html/loadavg';

# Writes the load source in /proc/loadavg format (renamed into place: never read half-written).
sub set_load {
    my ($load) = @_;
    open my $fh, '>', "$load_file.tmp" or die "$load_file.tmp: $!";
    print $fh "$load $load $load 1/100 4242\n";
    close $fh;
    rename "$load_file.tmp", $load_file or die "rename: $!";
}

start_nginx(user => 'nobody nogroup', workers => 2, setup => sub { set_load('0.10') }, http => <<"EOF");
    tenant_socket_dir $base/run;
    resource_cgroup_root $root_name;
    resource_class slow cpu=50;
    resource_auto_confine class=slow load=2 top=1 hold=${hold}s window=30s load_source=$load_file;
    server {
        listen 127.0.0.1:${\ port()};
        server_name localhost;
        root $base/sites/\$host/htdocs;
        location ~ \\.cgi\$ {
            tenant_runner on;
            tenant_cgi on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_read_timeout 20s;
            add_header X-Class \$resource_class always;
        }
        location = /stats { resource_stats; }
        location = /confined {
            mruby_content_handler_code '
                %w(burn.test a.test b.test).each { |h| Nginx.echo "#{h} #{Nginx::Resource.confined?(h)}" }
            ';
        }
    }
EOF

sub read_file { my ($path) = @_; open my $fh, '<', $path or return undef; local $/; my $t = <$fh> // ''; $t }

# The pids in class slow's group, in every hierarchy (sorted, unique).
sub slow_pids { class_pids('slow', @roots) }

# How many lines of a /proc/<pid>/cgroup text name class slow's group.
sub slow_lines { my ($text) = @_; scalar grep { m{/\Q$root_name\E/[^/]+/slow$} } split /\n/, $text // '' }

sub stats_json {
    my ($status, $body) = http_get('/stats');
    return $status == 200 ? JSON::PP::decode_json($body) : { status => $status };
}

sub access_lines { scalar(() = (read_file(servroot() . '/logs/access.log') // '') =~ /\n/g) }

subtest 'load below the threshold: usage is counted, nobody is confined' => sub {
    my ($s1, $b1, $h1) = http_get_host('burn.test', '/burn.cgi?900', 20);
    like("$s1 $b1", qr/^200 burnt \d+$/, 'the burning host burnt 900 ms of CPU');
    for my $host (qw(a.test b.test)) {
        my ($s, $b) = http_get_host($host, '/sleep.cgi?0');
        like("$s $b", qr/^200 slept \d+$/, "the cheap host $host answers");
    }
    my $stats = stats_json();
    my $burn = $stats->{hosts}{'burn.test'} // {};
    ok(($burn->{window_cpu_ms} // 0) >= 800, "resource_stats: burn.test used $burn->{window_cpu_ms} ms in the window");
    for my $host (qw(a.test b.test)) {
        my $h = $stats->{hosts}{$host} // {};
        ok(($h->{requests} // 0) == 1 && ($h->{window_cpu_ms} // 1e9) < 300,
            "$host: one request, $h->{window_cpu_ms} ms");
    }
    is($stats->{load}, '0.10', 'the load is read from the file');
    ok(!grep({ defined $stats->{hosts}{$_}{confined} } keys %{ $stats->{hosts} }), 'nobody is confined');
};

my ($confined_at, $log_before_release);
subtest 'load above the threshold: the timers confine the burning host, without a request' => sub {
    my $from = error_log_size();
    my $requests = access_lines();
    set_load('5.00');
    ok(wait_until(sub { error_log_since($from) =~ /confining host/ }, 4), 'a decision is logged within seconds');
    sleep 1.5;    # later steps must not confine anyone else
    my $log = error_log_since($from);
    my @lines = $log =~ /^(.*resource_auto_confine: confining host.*)$/mg;
    is(scalar @lines, 1, 'one decision (two workers tick, one steps each second)') or diag $log;
    like($lines[0] // '',
        qr/\[warn\].*confining host "burn\.test" to class "slow": (\d+) ms CPU in the last 30s, rank 1 of top 1, load 5\.00 above 2\.00/,
        'the line names the host, its usage, rank and the load');
    my ($usage) = ($lines[0] // '') =~ /: (\d+) ms CPU/;
    ok(($usage // 0) >= 800, "its usage: $usage ms");
    is(access_lines(), $requests, 'no request arrived meanwhile (the access log did not grow)');

    my $stats = stats_json();
    my $reason = $stats->{hosts}{'burn.test'}{confined};
    is(ref $reason, 'HASH', 'resource_stats shows burn.test confined') or diag explain $stats;
    is_deeply([$reason->{rank}, $reason->{load}, $reason->{usage_ms}], [1, '5.00', $usage], 'with its rank, load and usage');
    ok($reason->{since} > 0, 'and since when');
    is($stats->{hosts}{$_}{confined}, undef, "$_ is not confined") for qw(a.test b.test);
    my ($status, $body) = http_get('/confined');
    is("$status $body", "200 burn.test true\na.test false\nb.test false\n", 'Nginx::Resource.confined? agrees');
};

# The runners of `$user` and whether each is in class slow, by /proc/<pid>/cgroup.
sub runners_in_slow {
    my ($user) = @_;
    return map { [$_, slow_lines(read_file("/proc/$_/cgroup"))] } runner_pids($users{$user}[0]);
}

subtest 'its next request runs in the class, the cheap hosts\' do not' => sub {
    my $burn = open_request('/burn.cgi?700', host => 'burn.test', proto => 'HTTP/1.0');
    my $cheap = open_request('/sleep.cgi?1', host => 'a.test', proto => 'HTTP/1.0');
    my $runner_in_slow = sub { grep { ((proc_status($_) // {})->{Name} // '') =~ /^ngx-mruby-super/ } slow_pids() };
    ok(wait_until(sub { scalar $runner_in_slow->() }, 3), 'class slow holds the burning host\'s runner during its request');
    my ($runner) = $runner_in_slow->();
    my @during = slow_pids();
    is(slow_lines(read_file("/proc/$runner/cgroup")), scalar @roots, "/proc/$runner/cgroup names slow in every hierarchy");
    my @uids = map { (split ' ', (proc_status($_) // {})->{Uid} // '')[0] // -1 } @during;
    is_deeply([sort { $a <=> $b } keys %{ { map { $_ => 1 } @uids } }], [$users{ngxt1}[0]],
        "everything in slow (@during) runs as burn.test's owner");
    ok(wait_until(sub { runners_in_slow('ngxt2') }, 3), 'the cheap host a.test has a runner meanwhile');
    my @cheap = runners_in_slow('ngxt2');
    is_deeply([map { $_->[1] } @cheap], [map { 0 } @cheap], 'outside class slow: ' . join(' ', map { $_->[0] } @cheap));
    my ($status, $body) = read_response($burn, 20);
    my ($child) = $body =~ /^burnt (\d+)/;
    is($status, 200, 'the burning host\'s request ends normally');
    ok($child && grep({ $_ == $child } @during), "its CGI program ($child) ran in class slow too");
    my ($cstatus, $cbody) = read_response($cheap, 10);
    like("$cstatus $cbody", qr/^200 slept \d+$/, 'the cheap request ends normally');
    ok(wait_until(sub { !slow_pids() }, 3), 'class slow is empty after it');
};

subtest 'load falls: released hold seconds later by the timers, no request needed' => sub {
    # a request of the confined host, still running when it is released
    my $long = open_request('/sleep.cgi?' . ($hold + 6), host => 'burn.test', proto => 'HTTP/1.0');
    ok(wait_until(sub { scalar slow_pids() }, 3), 'a long request of the confined host runs in class slow');
    my $from = error_log_size();
    my $requests = access_lines();
    my $t0 = time;
    set_load('0.50');
    ok(wait_until(sub { error_log_since($from) =~ /releasing host/ }, $hold + 4), 'a release is logged');
    my $elapsed = time - $t0;
    ok($elapsed >= $hold - 1 && $elapsed <= $hold + 3, sprintf('after %.1f s (hold=%ds, steps once a second)', $elapsed, $hold));
    is(access_lines(), $requests, 'no request arrived meanwhile (the access log did not grow)');
    my $log = error_log_since($from);
    like($log, qr/\[notice\].*releasing host "burn\.test" from class "slow": load 0\.50 at or below 2\.00 for ${hold}s \(\d+ ms CPU in the last 30s\)/,
        'the line names the host, the load and the hold');
    is(scalar(() = $log =~ /releasing host/g), 1, 'one release, for burn.test only');
    my ($status, $body) = http_get('/confined');
    is("$status $body", "200 burn.test false\na.test false\nb.test false\n", 'Nginx::Resource.confined? agrees');
    is(stats_json()->{hosts}{'burn.test'}{confined}, undef, 'resource_stats too');
    my $long_response = '';
    while (my $n = $long->sysread(my $buf, 65536)) { $long_response .= $buf }
    close $long;
    my ($long_head, $long_body) = split /\r\n\r\n/, $long_response, 2;
    like("$long_head\n$long_body", qr{^HTTP/1\.1 200 .*^X-Class: slow\r?\n.*^slept \d+$}ms,
        'the long request, answered after the release: $resource_class names slow, where it ran (decided once)');
    ok(wait_until(sub { !slow_pids() }, 3), 'class slow is empty after it');
    my $next = open_request('/sleep.cgi?1', host => 'burn.test', proto => 'HTTP/1.0');
    ok(wait_until(sub { runners_in_slow('ngxt1') }, 3), 'the next request of burn.test has its runner');
    sleep 0.3;
    my @runners = runners_in_slow('ngxt1');
    is_deeply([map { $_->[1] } @runners], [map { 0 } @runners], 'outside class slow: ' . join(' ', map { $_->[0] } @runners));
    is(scalar(slow_pids()), 0, 'class slow holds no task');
    my ($s3, $b3) = read_response($next, 10);
    like("$s3 $b3", qr/^200 slept \d+$/, 'and is served');
};

subtest 'a load source that cannot be read: said once (not every second), and when it can be read again' => sub {
    my $from = error_log_size();
    set_load('garbage');    # not in /proc/loadavg format
    sleep 3.5;              # three or four steps of the timers
    my @lines = error_log_since($from) =~ /^(.*resource_auto_confine: .*is not in \/proc\/loadavg format, no decision this second)$/mg;
    ok(@lines >= 1 && @lines <= 2, scalar(@lines) . ' [error] line(s) in 3.5 s, at most one per worker') or diag error_log_since($from);
    like($lines[0] // '', qr/\[error\].*"\Q$load_file\E" is not in \/proc\/loadavg format/, 'naming the file');
    set_load('0.20');
    ok(wait_until(sub { error_log_since($from) =~ /resource_auto_confine: the load can be read again/ }, 4),
        'a [notice] when it can be read again');
    is(stats_json()->{load}, '0.20', 'resource_stats reads it');
};

subtest 'nginx -s stop removes the sub-tree' => sub {
    stop_nginx();
    ok(wait_until(sub { !grep { -e $_ } @roots }, 10), "every group is removed (@roots)");
};

done_testing();
