# mruby_upstream_keepalive and Nginx::Upstream: read and switch the single
# server of an upstream, read and resize its keepalive pool.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET ();

no_shuffle();

$ENV{TEST_NGINX_B1_PORT} ||= Test::Nginx::Socket::pick_free_port(server_port());
$ENV{TEST_NGINX_B2_PORT} ||= Test::Nginx::Socket::pick_free_port(server_port(), $ENV{TEST_NGINX_B1_PORT});

# GET $path on the test server; returns the body.
sub http_get_body {
    my ($path) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => server_port(), Proto => 'tcp', Timeout => 5)
        or return "connect failed: $@";
    print $sock "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $res = <$sock> // '';
    close $sock;
    $res =~ s/^.*?\r\n\r\n//s;
    return $res;
}

# Two backends in the same nginx, and the upstreams the tests use.
our $SlowBody = 'x' x 2000;
our $Backends = <<'_EOC_' =~ s/__SLOW_BODY__/$SlowBody/r;
    server {
        listen 127.0.0.1:$TEST_NGINX_B1_PORT;
        location / { return 200 "backend1\n"; }
        location = /conn { return 200 "$connection"; }
        location = /slow { limit_rate 1000; return 200 "__SLOW_BODY__"; }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_B2_PORT;
        location / { return 200 "backend2\n"; }
    }
    upstream backend {
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
        mruby_upstream_keepalive 4;
    }
    upstream plain {
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
    }
    upstream multi {
        server 127.0.0.1:$TEST_NGINX_B1_PORT;
        server 127.0.0.1:$TEST_NGINX_B2_PORT;
    }
_EOC_

our $Locations = <<'_EOC_';
    location = /proxy {
        proxy_pass http://backend/;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
    location = /conn {
        proxy_pass http://backend/conn;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
    location = /slow {
        proxy_pass http://backend/slow;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
    }
    location = /plainconn {
        proxy_pass http://plain/conn;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    return if exists $block->{must_die};
    $block->set_value(http_config => $Backends . (Test::Nginx::Socket::section($block, 'http_config') // ''));
    $block->set_value(config => $Locations . (Test::Nginx::Socket::section($block, 'config') // ''));
});

run_tests();

__DATA__

=== TEST 1: server reads the upstream's single server
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs Nginx::Upstream.new("backend").server'; }
--- request
GET /t
--- response_body eval
"127.0.0.1:$ENV{TEST_NGINX_B1_PORT}"
--- no_error_log
[error]


=== TEST 2: server= switches the proxied backend, for every later request of the worker
--- config
    location = /switch {
        mruby_content_handler_code '
            u = Nginx::Upstream.new("backend")
            u.server = "127.0.0.1:$TEST_NGINX_B2_PORT"
            Nginx.rputs u.server
        ';
    }
    location = /server { mruby_content_handler_code 'Nginx.rputs Nginx::Upstream.new("backend").server'; }
--- request eval
["GET /proxy", "GET /switch", "GET /proxy", "GET /server", "GET /proxy"]
--- response_body eval
["backend1\n", "127.0.0.1:$ENV{TEST_NGINX_B2_PORT}", "backend2\n", "127.0.0.1:$ENV{TEST_NGINX_B2_PORT}", "backend2\n"]
--- no_error_log
[error]


=== TEST 3: switching back and forth
--- config
    location = /to {
        mruby_content_handler_code '
            port = Nginx::Request.new.var.arg_port
            Nginx::Upstream.new("backend").server = "127.0.0.1:#{port}"
            Nginx.rputs "ok"
        ';
    }
--- request eval
["GET /to?port=$ENV{TEST_NGINX_B2_PORT}", "GET /proxy", "GET /to?port=$ENV{TEST_NGINX_B1_PORT}", "GET /proxy", "GET /to?port=$ENV{TEST_NGINX_B2_PORT}", "GET /proxy"]
--- response_body eval
["ok", "backend2\n", "ok", "backend1\n", "ok", "backend2\n"]
--- no_error_log
[error]


=== TEST 4: mruby_upstream_keepalive keeps the upstream connection; without it nginx reconnects
--- config
    location = /t { return 200 "t\n"; }
--- init
my ($c1, $c2) = (main::http_get_body('/conn'), main::http_get_body('/conn'));
Test::More::like($c1, qr/^\d+$/, 'backend connection number');
Test::More::is($c2, $c1, 'the second request reuses the cached connection');
my ($p1, $p2) = (main::http_get_body('/plainconn'), main::http_get_body('/plainconn'));
Test::More::isnt($p2, $p1, 'no keepalive: a new connection');
--- request
GET /t
--- response_body
t


=== TEST 5: keepalive_cache reads and resizes the pool; keepalive still works after
--- config
    location = /ka {
        mruby_content_handler_code '
            u = Nginx::Upstream.new("backend")
            out = [u.keepalive_cache]
            u.keepalive_cache = 8
            out << u.keepalive_cache
            u.keepalive_cache = 2
            out << u.keepalive_cache
            Nginx.rputs out.join(",")
        ';
    }
--- init
my $c1 = main::http_get_body('/conn');
Test::More::is(main::http_get_body('/ka'), '4,8,2', 'keepalive_cache 4 -> 8 -> 2');
Test::More::is(main::http_get_body('/conn'), $c1, 'the cached connection survived the shrink');
Test::More::is(main::http_get_body('/conn'), $c1, 'and is still reused');
--- request
GET /proxy
--- response_body
backend1
--- no_error_log
[error]


=== TEST 6: shrinking below the number of idle connections closes the oldest ones
--- config
    location = /shrink {
        mruby_content_handler_code '
            u = Nginx::Upstream.new("backend")
            u.keepalive_cache = 2
            Nginx.rputs u.keepalive_cache
        ';
    }
--- init
# three requests at once leave three idle upstream connections in the pool of 4
my @kids;
for (1 .. 3) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) { my $b = main::http_get_body('/slow'); POSIX::_exit(length($b) == 2000 ? 0 : 1) }
    push @kids, $pid;
}
my $ok = 0;
for (@kids) { waitpid $_, 0; $ok++ if $? == 0 }
Test::More::is($ok, 3, 'three concurrent proxied requests');
Test::More::is(main::http_get_body('/shrink'), '2', 'pool shrunk to 2');
my $c1 = main::http_get_body('/conn');
Test::More::like($c1, qr/^\d+$/, 'proxying still works');
Test::More::is(main::http_get_body('/conn'), $c1, 'and reuses a cached connection');
--- request
GET /proxy
--- response_body
backend1
--- no_error_log
[error]
[alert]


=== TEST 7: errors are Ruby exceptions: unknown upstream, multiple servers, n < 2, no keepalive, bad server
--- config
    location = /t {
        mruby_content_handler_code '
            def try
              yield
            rescue => e
              Nginx.echo "#{e.class}: #{e.message}"
            end
            try { Nginx::Upstream.new("nosuch") }
            try { Nginx::Upstream.new("multi") }
            try { Nginx::Upstream.new("backend").keepalive_cache = 1 }
            try { Nginx::Upstream.new("backend").keepalive_cache = "4" }
            Nginx.echo Nginx::Upstream.new("plain").keepalive_cache
            try { Nginx::Upstream.new("plain").keepalive_cache = 4 }
            try { Nginx::Upstream.new("backend").server = "127.0.0.1:99999" }
            try { Nginx::Upstream.new("backend").server = 1 }
            Nginx.echo Nginx::Upstream.new("backend").keepalive_cache
        ';
    }
--- request
GET /t
--- response_body
RuntimeError: nosuch upstream not found
RuntimeError: don't support multiple server config
ArgumentError: keepalive_cache must be greater than 1
TypeError: keepalive_cache must be an Integer, not String
0
RuntimeError: keepalive is not enabled for upstream "plain" (use mruby_upstream_keepalive)
ArgumentError: invalid server "127.0.0.1:99999": invalid port
TypeError: server must be a String, not Integer
4
--- no_error_log
[error]


=== TEST 8: an uncaught error is a 500 with one log line
--- config
    location = /t { mruby_content_handler_code 'Nginx::Upstream.new("backend").keepalive_cache = 0'; }
--- request
GET /t
--- error_code: 500
--- error_log
keepalive_cache must be greater than 1 (ArgumentError)


=== TEST 9: mruby_upstream_keepalive needs a positive number
--- http_config
    upstream u { server 127.0.0.1:1; mruby_upstream_keepalive 0; }
--- config
--- must_die
--- error_log
invalid value "0" in "mruby_upstream_keepalive" directive


=== TEST 10: mruby_upstream_keepalive and keepalive are the same setting
--- http_config
    upstream u { server 127.0.0.1:1; keepalive 2; mruby_upstream_keepalive 4; }
--- config
--- must_die
--- error_log
"mruby_upstream_keepalive" directive is duplicate (keepalive is already set for this upstream)


=== TEST 11: mruby_upstream_keepalive only in upstream blocks
--- config
    mruby_upstream_keepalive 4;
--- must_die
--- error_log
"mruby_upstream_keepalive" directive is not allowed here
