# Automatic confinement on CPU pressure (issue 10: "the class root's CPU
# pressure where available"): resource_auto_confine pressure=<percent>
# compares the `some avg10` of a PSI file with the threshold. The setup
# of t/resources-confine.t, smaller: two virtual hosts served by tenant
# runners, one burning CPU; the pressure comes from a file this test
# writes in PSI format (pressure_source=). Above the threshold the burning
# host is confined (its next request runs in the class's group) and the
# decision line names the CPU pressure; once the file says the pressure
# fell, it is released `hold` seconds later. Last, `nginx -t` on a kernel
# without PSI (its /proc/pressure hidden in a mount namespace) fails with a
# clear message. Needs root and a writable hierarchy (skipped otherwise).

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
my $root_name = 'ngx-res-pressure-' . port();
my ($cgroup_ok, @roots) = cgroup_check($supervisor_bin, $root_name);
plan skip_all => "resource_cgroup_root: $roots[0]" unless $cgroup_ok;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
my %users = tenant_users();

# burns the CPU time (user) in the query, in ms
my $burn_cgi = cpu_burn_cgi('with pid');
my $sleep_cgi = <<'PL';
#!/usr/bin/perl
select(undef, undef, undef, $ENV{QUERY_STRING} + 0);
print "Content-Type: text/plain\r\n\r\nslept $$\n";
PL
my %owner = ('burn.test' => 'ngxt1', 'a.test' => 'ngxt2');
for my $host (sort keys %owner) {
    make_site($host, $owner{$host});
    write_site_file($host, 'burn.cgi', $burn_cgi, owner => $owner{$host}, mode => 0700);
    write_site_file($host, 'sleep.cgi', $sleep_cgi, owner => $owner{$host}, mode => 0700);
}

my $hold = 2;
my $psi_file = servroot() . '/html/cpu.pressure';

# Writes the pressure source in PSI format (renamed into place: never read half-written).
sub set_pressure {
    my ($some_avg10) = @_;
    open my $fh, '>', "$psi_file.tmp" or die "$psi_file.tmp: $!";
    print $fh "some avg10=$some_avg10 avg60=1.00 avg300=1.00 total=123456\n",
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
    close $fh;
    rename "$psi_file.tmp", $psi_file or die "rename: $!";
}

start_nginx(user => 'nobody nogroup', workers => 2, setup => sub { set_pressure('5.00') }, http => <<"EOF");
    tenant_socket_dir $base/run;
    resource_cgroup_root $root_name;
    resource_class slow cpu=50;
    resource_auto_confine class=slow pressure=20 top=1 hold=${hold}s window=30s pressure_source=$psi_file;
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
                %w(burn.test a.test).each { |h| Nginx.echo "#{h} #{Nginx::Resource.confined?(h)}" }
            ';
        }
    }
EOF

sub read_file { my ($path) = @_; open my $fh, '<', $path or return undef; local $/; my $t = <$fh> // ''; $t }

# The pids in class slow's group, in every hierarchy (sorted, unique).
sub slow_pids { class_pids('slow', @roots) }

sub stats_json {
    my ($status, $body) = http_get('/stats');
    return $status == 200 ? JSON::PP::decode_json($body) : { status => $status };
}

subtest 'pressure below the threshold: usage is counted, nobody is confined' => sub {
    my ($s1, $b1) = http_get_host('burn.test', '/burn.cgi?900', 20);
    like("$s1 $b1", qr/^200 burnt \d+$/, 'the burning host burnt 900 ms of CPU');
    my ($s2, $b2) = http_get_host('a.test', '/sleep.cgi?0');
    like("$s2 $b2", qr/^200 slept \d+$/, 'the cheap host answers');
    my $stats = stats_json();
    is_deeply([@{ $stats->{auto_confine} }{qw(pressure pressure_source current)}], ['20.00%', $psi_file, '5.00%'],
        'resource_stats: the threshold, the source and its reading') or diag explain $stats;
    ok(($stats->{hosts}{'burn.test'}{window_cpu_ms} // 0) >= 800, 'burn.test\'s usage is in the window');
    ok(!grep({ defined $stats->{hosts}{$_}{confined} } keys %{ $stats->{hosts} }), 'nobody is confined');
};

subtest 'pressure above the threshold: the timers confine the burning host' => sub {
    my $from = error_log_size();
    set_pressure('38.34');
    ok(wait_until(sub { error_log_since($from) =~ /confining host/ }, 4), 'a decision is logged within seconds');
    sleep 1.2;
    my @lines = error_log_since($from) =~ /^(.*resource_auto_confine: confining host.*)$/mg;
    is(scalar @lines, 1, 'one decision');
    like($lines[0] // '',
        qr/\[warn\].*confining host "burn\.test" to class "slow": \d+ ms CPU in the last 30s, rank 1 of top 1, cpu pressure 38\.34% above 20\.00%$/,
        'the line names the signal: cpu pressure, the reading and the threshold');
    my $stats = stats_json();
    is($stats->{hosts}{'burn.test'}{confined}{pressure}, '38.34%', 'resource_stats: confined, with the pressure');
    is($stats->{hosts}{'a.test'}{confined}, undef, 'a.test is not confined');
    is($stats->{auto_confine}{current}, '38.34%', 'the current reading');
    my ($status, $body) = http_get('/confined');
    is("$status $body", "200 burn.test true\na.test false\n", 'Nginx::Resource.confined? agrees');
};

subtest 'its next request runs in the class\'s group, the cheap host\'s does not' => sub {
    my $burn = open_request('/burn.cgi?500', host => 'burn.test', proto => 'HTTP/1.0');
    ok(wait_until(sub { scalar slow_pids() }, 3), 'class slow holds a task during the request');
    my @uids = map { (split ' ', (proc_status($_) // {})->{Uid} // '')[0] // -1 } slow_pids();
    is_deeply([sort { $a <=> $b } keys %{ { map { $_ => 1 } @uids } }], [$users{ngxt1}[0]],
        'everything in slow runs as burn.test\'s owner');
    my ($status, $body, $head) = read_response($burn, 20);
    is($status, 200, 'the request ends normally');
    my ($cheap_status, $cheap_body, $cheap_head) = http_get_host('a.test', '/sleep.cgi?0');
    like("$cheap_status $cheap_body", qr/^200 slept \d+$/, 'the cheap host answers');
    unlike($cheap_head, qr/^X-Class: slow/mi, 'not in the class');
    ok(wait_until(sub { !slow_pids() }, 3), 'class slow is empty after it');
};

subtest 'pressure falls: released hold seconds later' => sub {
    my $from = error_log_size();
    my $t0 = time;
    set_pressure('1.50');
    ok(wait_until(sub { error_log_since($from) =~ /releasing host/ }, $hold + 4), 'a release is logged');
    my $elapsed = time - $t0;
    ok($elapsed >= $hold - 1 && $elapsed <= $hold + 3, sprintf('after %.1f s (hold=%ds)', $elapsed, $hold));
    like(error_log_since($from),
        qr/\[notice\].*releasing host "burn\.test" from class "slow": cpu pressure 1\.50% at or below 20\.00% for ${hold}s/,
        'the line names the signal');
    my ($status, $body) = http_get('/confined');
    is("$status $body", "200 burn.test false\na.test false\n", 'Nginx::Resource.confined? agrees');
};

subtest 'a pressure source not in PSI format: an [error], and a [notice] when it can be read again' => sub {
    my $from = error_log_size();
    open my $fh, '>', $psi_file or die $!;
    print $fh "3.50 2.00 1.00 1/100 4242\n";    # /proc/loadavg, not PSI
    close $fh;
    ok(wait_until(sub { error_log_since($from) =~ /resource_auto_confine: .*is not in PSI/ }, 4), 'an [error] is logged');
    sleep 3;    # a few steps: each worker that steps logs the [error] once (and so the [notice] later)
    like(error_log_since($from), qr/\[error\].*"\Q$psi_file\E" is not in PSI \(\/proc\/pressure\/cpu\) format, no decision this second/,
        'naming the file');
    set_pressure('2.00');
    ok(wait_until(sub { error_log_since($from) =~ /resource_auto_confine: the cpu pressure can be read again/ }, 6),
        'a [notice] when it can be read again');
};

subtest 'nginx -s stop removes the sub-tree' => sub {
    stop_nginx();
    ok(wait_until(sub { !grep { -e $_ } @roots }, 10), "every group is removed (@roots)");
};

subtest 'without pressure_source=: nginx -t needs a PSI file' => sub {
    my $binary = $ENV{TEST_NGINX_BINARY} || "$FindBin::Bin/../build/sbin/nginx";
    my $conf = read_file(servroot() . '/conf/nginx.conf');
    $conf =~ s/ pressure_source=\S+;/;/ or die 'no pressure_source= in the configuration';
    open my $fh, '>', servroot() . '/conf/system-psi.conf' or die $!;
    print $fh $conf;
    close $fh;
    my $test = "$binary -t -p " . servroot() . '/ -c conf/system-psi.conf 2>&1';
    my $out = `$test`;
    is($?, 0, 'with /proc/pressure/cpu (this kernel has PSI; cgroup v1 here): nginx -t passes') or diag $out;
    my $empty = servroot() . '/no-psi';
    mkdir $empty;
    $out = `unshare --mount -- sh -c 'mount --bind $empty /proc/pressure && exec $test'`;
    SKIP: {
        skip "cannot hide /proc/pressure in a mount namespace: $out", 2 if $out =~ /mount:|unshare:/;
        isnt($?, 0, 'with /proc/pressure hidden (a kernel without PSI): nginx -t fails');
        like($out, qr/\[emerg\].*resource_auto_confine: pressure=20\.00% needs CPU pressure \(PSI\), but "\/proc\/pressure\/cpu" does not exist/,
            'saying why') or diag $out;
    }
};

done_testing();
