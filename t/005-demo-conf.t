# conf/nginx.conf (what `make run` serves) loads and every demo location
# answers as documented. Ports and the pid file are moved so this can run
# beside `make run`.
use strict;
use warnings;
use Test::More;
use File::Path qw(make_path remove_tree);
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use IO::Socket::INET;
use File::Spec;

my $root = abs_path(dirname(__FILE__) . '/..');
my $nginx = $ENV{TEST_NGINX_BINARY} || "$root/build/sbin/nginx";
my $servroot = "$root/t/servroot_demo";
# free ports, found by binding to port 0
sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, ReuseAddr => 1) or die $!;
    my $port = $s->sockport;
    close $s;
    return $port;
}
my $port = free_port();
my $backend = free_port();

remove_tree($servroot);
make_path("$servroot/logs");
open my $in, '<', "$root/conf/nginx.conf" or die "conf/nginx.conf: $!";
my $conf = do { local $/; <$in> };
close $in;
$conf =~ s/127\.0\.0\.1:8080/127.0.0.1:$port/g;
$conf =~ s/127\.0\.0\.1:8081/127.0.0.1:$backend/g;
$conf =~ s{^pid .*;}{pid $servroot/logs/nginx.pid;}m;
$conf =~ s{^error_log .*;}{error_log $servroot/logs/error.log info;}m;
$conf =~ s{build/run/}{$servroot/}g;
# TEST_NGINX_LOAD_MODULES (as the harness): e.g. the packaged module with Debian's nginx
if (defined $ENV{TEST_NGINX_LOAD_MODULES}) {
    my $load = join '', map { "load_module " . File::Spec->rel2abs($_) . ";\n" } split ' ', $ENV{TEST_NGINX_LOAD_MODULES};
    $conf =~ s{^load_module .*;\n}{$load}m;
}
my @exact_locations = $conf =~ m{^\s*location = (\S+) \{}mg;
open my $out, '>', "$servroot/nginx.conf" or die $!;
print $out $conf;
close $out;

my $rc = system($nginx, '-p', "$root/", '-e', "$servroot/logs/error.log", '-c', "$servroot/nginx.conf");
is($rc, 0, 'nginx starts with the demo configuration');

sub request {
    my ($method, $path, $headers, $body) = @_;
    my $s;
    for (1 .. 50) {
        $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 3) and last;
        select(undef, undef, undef, 0.1);
    }
    die "cannot connect: $!" unless $s;
    $body //= '';
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" . ($headers // '');
    $req .= "Content-Length: " . length($body) . "\r\n" if length $body;
    print $s "$req\r\n$body";
    my $resp = do { local $/; <$s> };
    my ($head, $content) = split /\r\n\r\n/, $resp, 2;
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    return ($status, $head, $content);
}

my @cases = (
    ['GET', '/hello', undef, undef, 200, qr/\AHello World\n\z/],
    ['GET', '/cached', undef, undef, 200, qr/\AHello World\n\z/],
    ['GET', '/live?name=Ada', undef, undef, 200, qr/\AHello Ada\n\z/],
    ['GET', '/private', undef, undef, 403, qr/403 Forbidden/],
    ['GET', '/private', "X-Token: secret\r\n", undef, 200, qr/\Awelcome operator\n\z/],
    ['GET', '/set', undef, undef, 200, qr/\Ahello from \/set\n\z/],
    ['GET', '/old', undef, undef, 200, qr/\AHello World\n\z/],
    ['GET', '/logged', undef, undef, 200, qr/see the error_log/],
    ['GET', '/info.rb', undef, undef, 200, qr/\Auri=\/info\.rb nginx=1\./],
    ['GET', '/plain', undef, undef, 200, qr/\Ano Ruby here\n\z/],
    ['GET', '/filtered', undef, undef, 200, qr/\ATHE QUICK BROWN FOX\n\z/],
    ['POST', '/echo-body', undef, 'x' x 100, 200, qr/\Agot 100 bytes\n\z/],
    ['GET', '/async', undef, undef, 200, qr/\Aafter 100 ms, \/hello said: Hello World\n\z/],
    ['GET', '/rack', undef, undef, 200, qr/\Arack at \/rack\n\z/],
    ['GET', '/upstream/x', undef, undef, 200, qr/\Abackend on \d+ got \/upstream\/x\n\z/],
);
for my $case (@cases) {
    my ($method, $path, $headers, $body, $want_status, $want_body) = @$case;
    my ($status, $head, $content) = request($method, $path, $headers, $body);
    is($status, $want_status, "$method $path status");
    like($content // '', $want_body, "$method $path body");
}
# The front page lists every demo location, and each one listed answers.
my ($index_status, $index_head, $index) = request('GET', '/');
is($index_status, 200, 'GET / answers');
like($index_head, qr{^Content-Type: text/plain}mi, 'GET / is text');
like($index, qr{\Angx-mruby-rs demo \(conf/nginx\.conf\), e\.g\. curl http://localhost/hello\n}, 'GET / says what it is');
my @listed = $index =~ m{^  (/\S*) +\S}mg;
cmp_ok(scalar @listed, '>=', 15, 'the index lists the demo locations');
for my $location (grep { $_ ne '/' } @exact_locations) {
    ok((grep { m{^\Q$location\E(?:\?|\z)} } @listed), "the index lists $location");
}
for my $path (@listed) {
    my ($status) = request('GET', $path);
    isnt($status, 404, "GET $path (listed) is served") and cmp_ok($status, '<', 500, "GET $path is not an error");
}

# vlimit stats of the demo zone, both formats
my (undef, undef, $stats) = request('GET', '/vlimit-status');
like($stats, qr/\A\{"demo":\{"size":65536,/, '/vlimit-status shows the demo zone as JSON');
my (undef, $metrics_head, $metrics) = request('GET', '/metrics');
like($metrics_head, qr{^Content-Type: text/plain; version=0\.0\.4}mi, '/metrics is the Prometheus text format');
like($metrics, qr/^nginx_vlimit_zone_size_bytes\{zone="demo"\} 65536$/m, '/metrics shows the demo zone');

my (undef, $head) = request('GET', '/upstream/y');
like($head, qr/^X-Upstream: 127\.0\.0\.1:$backend keepalive=8\r?$/m, 'Nginx::Upstream reads the demo upstream');

my $pid = do { local @ARGV = ("$servroot/logs/nginx.pid"); <> };
chomp $pid;
kill 'QUIT', $pid;
for (1 .. 50) { last unless kill 0, $pid; select(undef, undef, undef, 0.1); }
ok(!kill(0, $pid), 'nginx stops');

open my $log, '<', "$servroot/logs/error.log" or die $!;
my @log = <$log>;
ok(scalar(grep { /served \/logged \(trace=server_rewrite\)/ } @log), 'the log handler wrote its line');
ok(!scalar(grep { /\[(error|alert|crit|emerg)\]/ } @log), 'no errors in the log') or diag(grep { /\[(error|alert|crit|emerg)\]/ } @log);
ok(scalar(grep { /worker exiting/ } @log), 'mruby_exit_worker ran');
remove_tree($servroot);
done_testing();
