# vlimit_stats in the Prometheus text format, read back with the reference
# parser (prometheus_client from PyPI, in build/venv: `make setup`), while
# requests are in flight on a silent backend: the figures match the JSON
# stats of the same moment, label values survive escaping, counters stay
# after the keys go idle; `format=` in the directive and `?format=` in the
# request; nothing is formatted under the zone's lock; nginx -t rejects a
# bad format.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use IPC::Open3 ();
use JSON::PP ();
use Symbol ();
use Test::More;
use VlimitTest;

my $python = "$FindBin::Bin/../build/venv/bin/python";
-x $python or BAIL_OUT("$python missing: run make setup (it installs prometheus_client)");
nginx_available() or BAIL_OUT('nginx or the module is not built');

# The parser's view of an exposition: { family name => family }, with a
# check that no family is split or repeated and no series is duplicated.
sub parse_exposition {
    my ($text) = @_;
    my $err = Symbol::gensym();
    my $pid = IPC::Open3::open3(my $in, my $out, $err, $python, "$FindBin::Bin/lib/prometheus_parse.py");
    print $in $text;
    close $in;
    my $json = do { local $/; <$out> };
    my $errors = do { local $/; <$err> };
    waitpid $pid, 0;
    die "the Prometheus parser rejected the output: $errors\n$text" if $?;
    my %families;
    for my $family (@{ JSON::PP::decode_json($json) }) {
        die "family $family->{name} appears twice (split or repeated)" if $families{ $family->{name} };
        my %seen;
        for my $s (@{ $family->{samples} }) {
            my $series = join ',', $s->{name}, map { "$_=$s->{labels}{$_}" } sort keys %{ $s->{labels} };
            die "duplicate series $series" if $seen{$series}++;
        }
        $families{ $family->{name} } = $family;
    }
    return \%families;
}

# The value of the sample named `$name` whose labels include `%labels`
# (undef when there is none). The parser names a counter's family without
# its `_total`; samples keep their full name.
sub value_of {
    my ($families, $name, %labels) = @_;
    (my $family = $name) =~ s/_total$//;
    my $f = $families->{$family} or return undef;
    SAMPLE: for my $s (@{ $f->{samples} }) {
        next unless $s->{name} eq $name;
        for (keys %labels) { next SAMPLE unless ($s->{labels}{$_} // "\0") eq $labels{$_} }
        return $s->{value};
    }
    return undef;
}

sub get_metrics {
    my ($path) = @_;
    my $s = open_request($path);
    my $raw = '';
    while (my $n = $s->sysread(my $buf, 65536)) { $raw .= $buf }
    close $s;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    my ($type) = $head =~ m{^Content-Type: *([^\r\n]*)}mi;
    return ($status, $type // '', $body // '');
}

my $backend = silent_backend();
my $tenant_a = 'team "a" \\ prod';    # a quote and a backslash in a label value
my $root = servroot() . '/html';

start_nginx(workers => 1, setup => sub { write_html('static/file.txt' => "x\n") }, http => <<"EOF");
    vlimit_zone vl 64k;
    vlimit_zone tenants 32k;
    upstream silent { server 127.0.0.1:@{[ backend_port() ]}; }
    server {
        listen 127.0.0.1:@{[ port() ]};
        location /slow/ {
            vlimit ip 3 zone=vl;
            vlimit key=\$http_x_tenant 2 zone=tenants;
            proxy_pass http://silent;
            proxy_read_timeout 30s;
        }
        location /static/ { root $root; vlimit file 5 zone=vl; }
        location = /metrics { vlimit_stats format=prometheus; }
        location = /metrics-vl { vlimit_stats zone=vl format=prometheus; }
        location = /stats { vlimit_stats; }
    }
EOF

my ($st) = http_get('/static/file.txt');
is($st, 200, 'a file request is counted and released');

# tenant A: two in flight, a third rejected by the key limit; tenant B: one
# in flight; then the ip limit (3) rejects tenant C.
my @held;
push @held, open_request('/slow/1', headers => ["X-Tenant: $tenant_a"]) for 1 .. 2;
ok(wait_until(sub { key_count('tenants', $tenant_a) == 2 }), 'tenant A has two requests in flight');
my ($rejected) = http_get('/slow/2', headers => ["X-Tenant: $tenant_a"]);
is($rejected, 503, 'a third request of tenant A is rejected');
push @held, open_request('/slow/3', headers => ['X-Tenant: b']);
ok(wait_until(sub { key_count('vl', '127.0.0.1') == 3 }), 'three requests in flight from 127.0.0.1');
($rejected) = http_get('/slow/4', headers => ['X-Tenant: c']);
is($rejected, 503, 'a fourth request from the address is rejected by the ip limit');

my ($status, $type, $text) = get_metrics('/metrics');
is($status, 200, '/metrics answers 200');
is($type, 'text/plain; version=0.0.4; charset=utf-8', 'the Prometheus text format content type');
my $m = parse_exposition($text);
my $json = stats();

is($m->{nginx_vlimit_requests_in_flight}{type}, 'gauge', 'in flight is a gauge');
is($m->{nginx_vlimit_rejections}{type}, 'counter', 'rejections is a counter (nginx_vlimit_rejections_total)');
is($m->{nginx_vlimit_key_rejections}{type}, 'counter', 'per-key rejections is a counter');
is(value_of($m, 'nginx_vlimit_requests_in_flight', zone => 'vl', kind => 'ip', key => '127.0.0.1'),
    3, 'ip key: 3 in flight');
is(value_of($m, 'nginx_vlimit_requests_in_flight', zone => 'tenants', kind => 'key', key => $tenant_a),
    2, 'a key with a quote and a backslash comes back intact: 2 in flight');
is(value_of($m, 'nginx_vlimit_requests_in_flight', zone => 'tenants', kind => 'key', key => 'b'), 1, 'tenant b: 1');
is(value_of($m, 'nginx_vlimit_requests_in_flight', zone => 'tenants', kind => 'key', key => 'c'),
    undef, 'tenant c was never counted');
is(value_of($m, 'nginx_vlimit_requests_limit', zone => 'tenants', key => $tenant_a), 2, 'the key limit');
is(value_of($m, 'nginx_vlimit_requests_limit', zone => 'vl', key => '127.0.0.1'), 3, 'the ip limit');
is(value_of($m, 'nginx_vlimit_key_rejections_total', zone => 'tenants', key => $tenant_a), 1,
    'one rejection on tenant A');
is(value_of($m, 'nginx_vlimit_key_rejections_total', zone => 'vl', key => '127.0.0.1'), 1,
    'one rejection on the address');
is(value_of($m, 'nginx_vlimit_requests_in_flight', zone => 'vl', kind => 'file'), undef,
    'the released file key is idle: no series');

for my $zone (qw(vl tenants)) {
    my $z = $json->{$zone};
    is(value_of($m, 'nginx_vlimit_rejections_total', zone => $zone), $z->{rejections}, "$zone: rejections as in JSON");
    is(value_of($m, 'nginx_vlimit_zone_size_bytes', zone => $zone), $z->{size}, "$zone: size as in JSON");
    is(value_of($m, 'nginx_vlimit_zone_used_bytes', zone => $zone), $z->{used}, "$zone: used bytes as in JSON");
    is(value_of($m, 'nginx_vlimit_zone_free_bytes', zone => $zone), $z->{free}, "$zone: free bytes as in JSON");
    is(value_of($m, 'nginx_vlimit_zone_keys', zone => $zone), $z->{keys}, "$zone: live keys as in JSON");
    is(value_of($m, 'nginx_vlimit_zone_max_keys', zone => $zone), $z->{max_keys}, "$zone: max keys as in JSON");
    is(value_of($m, 'nginx_vlimit_zone_full_total', zone => $zone), 0, "$zone: never full");
    is(value_of($m, 'nginx_vlimit_reclaimed_total', zone => $zone), 0, "$zone: nothing reclaimed");
}
is(value_of($m, 'nginx_vlimit_zone_size_bytes', zone => 'vl'), 65536, 'vl is 64k');
is(value_of($m, 'nginx_vlimit_rejections_total', zone => 'vl'), 1, 'vl: one rejection');
is(value_of($m, 'nginx_vlimit_rejections_total', zone => 'tenants'), 1, 'tenants: one rejection');
ok(value_of($m, 'nginx_vlimit_zone_used_bytes', zone => 'vl') + value_of($m, 'nginx_vlimit_zone_free_bytes', zone => 'vl')
        == 65536, 'used + free = size');

# one zone only
($status, $type, $text) = get_metrics('/metrics-vl');
my $only = parse_exposition($text);
is(value_of($only, 'nginx_vlimit_zone_size_bytes', zone => 'vl'), 65536, 'zone=vl shows vl');
is(value_of($only, 'nginx_vlimit_zone_size_bytes', zone => 'tenants'), undef, 'zone=vl hides tenants');

# ?format= overrides the directive, both ways
($status, $type, $text) = get_metrics('/stats?format=prometheus');
is($type, 'text/plain; version=0.0.4; charset=utf-8', '/stats?format=prometheus answers in the text format');
is(value_of(parse_exposition($text), 'nginx_vlimit_requests_in_flight', key => 'b'), 1, '... with the same figures');
($status, $type, $text) = get_metrics('/metrics?a=1&format=json');
is($type, 'application/json', '/metrics?format=json answers JSON');
is(JSON::PP::decode_json($text)->{tenants}{keys}, 2, '... with the same figures');
($status, $type, $text) = get_metrics('/metrics?format=xml');
is($status, 400, 'an unknown ?format= is a 400');
like($text, qr/unknown format "xml", use "json" or "prometheus"/, '... that says why');

# the held requests end: their series go, the counters stay
close $_ for @held;
ok(wait_until(sub { stats()->{vl}{keys} == 0 && stats()->{tenants}{keys} == 0 }), 'the held requests are released');
(undef, undef, $text) = get_metrics('/metrics');
$m = parse_exposition($text);
is(scalar @{ $m->{nginx_vlimit_requests_in_flight}{samples} }, 0, 'no key in flight: no in-flight series');
ok(exists $m->{nginx_vlimit_requests_in_flight}, '... but the family is still described');
is(value_of($m, 'nginx_vlimit_rejections_total', zone => 'vl'), 1, 'the zone rejection counter stays');
is(value_of($m, 'nginx_vlimit_zone_keys', zone => 'tenants'), 0, 'no live keys');

# every figure above was formatted from a snapshot, after the zone's lock
# was released (the formatters check it and say so at [alert])
unlike(error_log_since(0), qr/is being formatted while this worker holds its lock/,
    'no zone was formatted while its lock was held (JSON and Prometheus, keys in flight)');

# configuration errors
for my $case (['format=xml', qr/vlimit_stats: invalid format "xml", it must be "json" or "prometheus"/],
    ['format=json format=prometheus', qr/vlimit_stats: invalid parameter "format=prometheus"/],
    ['zone=vl zone=vl', qr/invalid number of arguments|invalid parameter "zone=vl"/],
    ['colour=red', qr/vlimit_stats: invalid parameter "colour=red"/])
{
    my ($args, $message) = @$case;
    eval {
        start_nginx(workers => 1, http => <<"EOF");
    vlimit_zone vl 64k;
    server { listen 127.0.0.1:@{[ port() ]}; location = /m { vlimit_stats $args; } }
EOF
    };
    like($@, $message, "nginx refuses vlimit_stats $args");
}

done_testing();
