# vlimit with requests really in flight: exact counts for each kind with two
# workers, release on abort / timeout, kill -9 of a worker (inside and
# outside the zone lock), reload, and a full zone. Plain Perl (see
# t/lib/VlimitTest.pm): Test::Nginx::Socket sends one request at a time.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use VlimitTest;

plan skip_all => 'nginx or the module is not built' unless nginx_available();
plan skip_all => 'ss(8) is needed to find the worker holding a connection' if system('command -v ss >/dev/null') != 0;

my $port = port();
my $backend = backend_port();
my $have_ipv6 = IO::Socket::IP->new(LocalHost => '::1', Listen => 1) ? 1 : 0;
my $listen6 = $have_ipv6 ? "listen [::1]:$port;" : '';

# 80 KB at 40 KB/s: each admitted request stays in flight about 2 s.
my $big = 'x' x 81920;

my $http = <<"EOF";
    vlimit_zone vl 1m;
    vlimit_zone tiny 32k;
    log_format vl '\$request_uri \$status \$vlimit_status \$vlimit_count';
    server {
        listen 127.0.0.1:$port;
        $listen6
        server_name localhost;
        root html;
        access_log logs/vl.log vl;
        location /ip/   { alias html/; limit_rate 40k; vlimit ip 3 zone=vl; }
        location /file/ { alias html/; limit_rate 40k; vlimit file 3 zone=vl; }
        location /host/ { alias html/; limit_rate 40k; vlimit host 3 zone=vl; }
        location /key/  { alias html/; limit_rate 40k; vlimit key=\$http_x_tenant 3 zone=vl; }
        location /full/ { alias html/; limit_rate 40k; vlimit key=\$arg_k 1 zone=tiny; }
        location /dry/  { alias html/; limit_rate 40k; vlimit key=\$http_x_tenant 1 zone=vl; vlimit_dry_run on; }
        location /sleep/ { alias html/; vlimit key=\$http_x_sleep 100 zone=vl; }
        location /upstream/ {
            vlimit ip 3 zone=vl;
            proxy_pass http://127.0.0.1:$backend;
            proxy_read_timeout 1s;
        }
        location /body/ {
            vlimit ip 3 zone=vl;
            client_body_timeout 1s;
            proxy_pass http://127.0.0.1:$backend;
        }
        location = /stats { vlimit_stats; }
    }
EOF

sub setup_files {
    write_html('big.bin' => $big, 'ok.txt' => "ok\n");
    symlink 'big.bin', servroot() . '/html/alias.bin' or die "symlink: $!";
}

start_nginx(http => $http, main => 'env VLIMIT_TEST_LOCK_SLEEP_MS=10000;', setup => \&setup_files);

# Sends all requests at once, then reads them: returns the list of statuses.
sub burst {
    my @socks = map { open_request(@$_) } @_;
    return map { (read_response($_))[0] } @socks;
}

sub tally {
    my %n;
    $n{$_}++ for @_;
    return join ' ', map { "$_=$n{$_}" } sort keys %n;
}

sub zone_empty {
    my ($zone, $what) = @_;
    ok(wait_until(sub { zone_keys($zone) == 0 }, 5), "$what: zone $zone is empty again")
        or diag explain stats();
}

# --- exactness: limit 3, 8 concurrent requests, two workers ---------------

{
    my @reqs = map { ['/ip/big.bin'] } 1 .. 8;
    push @reqs, map { ['/ip/big.bin', addr => '::1'] } 1 .. 8 if $have_ipv6;
    my @st = burst(@reqs);
    is(tally(@st[0 .. 7]), '200=3 503=5', 'ip: exactly 3 of 8 from 127.0.0.1 pass');
    if ($have_ipv6) {
        is(tally(@st[8 .. 15]), '200=3 503=5', 'ip: ::1 is a key of its own, exactly 3 of 8 pass');
    }
    zone_empty('vl', 'ip');
}

SKIP: {
    skip 'no IPv6 loopback', 1 unless $have_ipv6;
    my $s = open_request('/ip/big.bin', addr => '::1');
    ok(wait_until(sub { key_count('vl', '::1') == 1 }, 3), 'ip: an IPv6 client is counted by its full address (::1)');
    read_response($s);
}

{
    # a symlink and its target are one file: one counter
    my @st = burst((map { ['/file/big.bin'] } 1 .. 4), (map { ['/file/alias.bin'] } 1 .. 4));
    is(tally(@st), '200=3 503=5', 'file: exactly 3 of 8 pass across a file and its symlink');
    zone_empty('vl', 'file');
}

{
    my @hosts = ('example.com', 'EXAMPLE.com.:80', 'Example.Com:8080', 'example.com.');
    my @st = burst(map { ['/host/big.bin', host => $hosts[$_ % 4]] } 0 .. 7);
    is(tally(@st), '200=3 503=5', 'host: case, trailing dot and port are ignored, exactly 3 of 8 pass');
    my $s = open_request('/host/big.bin', host => 'EXAMPLE.com.:80');
    ok(wait_until(sub { key_count('vl', 'example.com') == 1 }, 3), 'host: EXAMPLE.com.:80 is counted as example.com');
    read_response($s);
    $s = open_request('/host/big.bin', proto => 'HTTP/1.0', no_host => 1);
    ok(wait_until(sub { key_count('vl', 'localhost') == 1 }, 3), 'host: HTTP/1.0 without Host counts under the server name');
    my ($status) = read_response($s);
    is($status, 200, 'host: HTTP/1.0 without Host is served');
    zone_empty('vl', 'host');
}

{
    my @st = burst(map { ['/key/big.bin', headers => ['X-Tenant: acme']] } 1 .. 8);
    is(tally(@st), '200=3 503=5', 'key: exactly 3 of 8 with the same key pass');
    zone_empty('vl', 'key');
}

{
    my $log = error_log_since(0);
    like($log, qr/\[warn\].*vlimit: zone "vl" key "ip 127\.0\.0\.1" count 3 limit 3, rejecting with 503/,
        'a rejection logs zone, key, count and limit at [warn]');
    open my $fh, '<', servroot() . '/logs/vl.log' or die $!;
    my $access = do { local $/; <$fh> };
    like($access, qr{^/key/big\.bin 503 REJECTED 3$}m, '$vlimit_status / $vlimit_count: REJECTED 3');
    like($access, qr{^/key/big\.bin 200 PASSED [123]$}m, '$vlimit_status / $vlimit_count: PASSED');
}

{
    my $from = error_log_size();
    my @st = burst(map { ['/dry/big.bin', headers => ['X-Tenant: dry']] } 1 .. 3);
    is(tally(@st), '200=3', 'dry run: nothing is rejected');
    like(error_log_since($from), qr/vlimit: zone "vl" key "key dry" count 1 limit 1, not rejecting \(dry run\)/,
        'dry run: the rejection is logged');
    open my $fh, '<', servroot() . '/logs/vl.log' or die $!;
    my $access = do { local $/; <$fh> };
    like($access, qr{^/dry/big\.bin 200 REJECTED_DRY_RUN 1$}m, 'dry run: $vlimit_status is REJECTED_DRY_RUN');
    zone_empty('vl', 'dry run');
}

# --- every way a request ends gives its count back ------------------------

{
    my $s = open_request('/ip/big.bin');
    ok(wait_until(sub { key_count('vl', '127.0.0.1') == 1 }, 3), 'abort mid-body: counted while in flight');
    $s->sysread(my $buf, 1000);
    close $s;
    zone_empty('vl', 'client abort mid-body');
}

{
    my $listener = silent_backend();
    my $s = open_request('/upstream/x');
    ok(wait_until(sub { key_count('vl', '127.0.0.1') == 1 }, 3), 'abort while waiting for upstream: counted');
    close $s;
    zone_empty('vl', 'client abort (499)');
    ok(wait_until(sub { -s servroot() . '/logs/vl.log' && `grep -c '^/upstream/x 499 ' ${\ servroot()}/logs/vl.log` > 0 }, 3),
        'the aborted request was finalised with 499');

    my $t0 = time;
    my ($status) = http_get('/upstream/y');
    is($status, 504, 'proxy_read_timeout: 504');
    zone_empty('vl', 'upstream timeout');

    $s = open_request('/body/z', method => 'POST', headers => ['Content-Length: 100'], body => 'abc');
    ok(wait_until(sub { key_count('vl', '127.0.0.1') == 1 }, 3), 'client_body_timeout: counted while waiting');
    read_response($s, 5);
    zone_empty('vl', 'client_body_timeout');
    close $listener;
}

# --- kill -9 of a worker holding counts -----------------------------------

{
    my @socks = map { open_request('/key/big.bin', headers => ['X-Tenant: k9']) } 1 .. 3;
    ok(wait_until(sub { key_count('vl', 'k9') == 3 }, 3), 'kill -9: 3 counts held');
    my $holders = holder_pids();
    my ($victim) = sort { $holders->{$b} <=> $holders->{$a} } keys %$holders;
    my $left = 3 - $holders->{$victim};
    my $from = error_log_size();
    kill 'KILL', $victim;
    ok(wait_until(sub { !grep { $_ == $victim } worker_pids() }, 5), "worker $victim is gone");
    ok(wait_until(sub { worker_pids() == 2 }, 5), 'the master respawned it');
    ok(wait_until(sub { key_count('vl', 'k9') == $left }, 5), "the dead worker's counts are given back ($left left)")
        or diag explain stats();
    like(error_log_since($from), qr/vlimit: zone "vl": gave back \d+ counts held by dead worker $victim/,
        'the give-back is logged');
    read_response($_) for @socks;
    zone_empty('vl', 'kill -9');
}

{
    # a worker killed while it holds the zone lock
    my $s = open_request('/sleep/ok.txt', headers => ['X-Sleep: vlimit-test-sleep-in-lock']);
    sleep 0.5;
    my ($victim) = keys %{ holder_pids() };
    my $from = error_log_size();
    kill 'KILL', $victim;
    close $s;
    my $t0 = time;
    my ($status) = read_response(open_request('/ip/ok.txt'), 5);
    is($status, 200, 'after a worker died inside the lock, requests still pass');
    ok(time - $t0 < 4, 'and they do not wait for the lock');
    ok(wait_until(sub { error_log_since($from) =~ /shared memory zone "vl" was locked by $victim/ }, 3),
        'the master force-unlocked the zone of the dead worker');
    zone_empty('vl', 'kill -9 inside the lock');
}

# --- reload with requests in flight ---------------------------------------

{
    my @socks = map { open_request('/key/big.bin', headers => ['X-Tenant: hup']) } 1 .. 3;
    ok(wait_until(sub { key_count('vl', 'hup') == 3 }, 3), 'reload: 3 in flight');
    reload_nginx();
    is(key_count('vl', 'hup'), 3, 'reload: the counts survive the reload');
    my ($status) = http_get('/key/ok.txt', headers => ['X-Tenant: hup']);
    is($status, 503, 'reload: no double limit, the 4th request is rejected by the new workers');
    my @st = map { (read_response($_))[0] } @socks;
    is(tally(@st), '200=3', 'reload: the old requests complete');
    zone_empty('vl', 'reload');
    ($status) = http_get('/key/ok.txt', headers => ['X-Tenant: hup']);
    is($status, 200, 'reload: admitted again afterwards');
}

# --- a full zone ----------------------------------------------------------

{
    my $max = stats()->{tiny}{max_keys};
    my $from = error_log_size();
    my @st = burst(map { ["/full/big.bin?k=$_"] } 1 .. $max + 4);
    is(tally(@st), "200=$max 503=4", "full zone: $max keys fit, 4 new keys get 503");
    like(error_log_since($from), qr/\[error\].*vlimit: zone "tiny" is full, cannot count new key "key \d+", rejecting with 503/,
        'full zone: logged');
    is(stats()->{tiny}{zone_full}, 4, 'full zone: counted in stats');
    zone_empty('tiny', 'full zone');
    my ($status) = http_get('/full/ok.txt?k=new');
    is($status, 200, 'full zone: new keys are admitted after the requests end');
}

done_testing();
