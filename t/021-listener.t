# mruby_server_context_handler_code and Nginx::Server#add_listener: Ruby
# adds listening sockets to the server block being parsed.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Path ();
use IO::Socket::INET ();

no_shuffle();

$ENV{TEST_NGINX_EXTRA_PORT} ||= Test::Nginx::Socket::pick_free_port(server_port());
our $CertDir = server_root() . '/certs-listener';
File::Path::make_path($CertDir);
unless (-s "$CertDir/listener.crt") {
    system("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=listener.test -days 1"
           . " -keyout $CertDir/listener.key -out $CertDir/listener.crt >/dev/null 2>&1") == 0
        or bail_out('openssl req failed');
}
$ENV{TEST_NGINX_CERT_DIR} = $CertDir;

# GET $path on 127.0.0.1:$port over plain HTTP/1.0; returns the raw response.
sub http_get {
    my ($port, $path) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 5)
        or return "connect failed: $@";
    print $sock "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $res = <$sock> // '';
    close $sock;
    return $res;
}

run_tests();

END { File::Path::remove_tree($CertDir) if $CertDir }

__DATA__

=== TEST 1: add_listener opens a port on the server being parsed
--- config
    mruby_server_context_handler_code '
        Nginx::Server.new.add_listener({address: "127.0.0.1:$TEST_NGINX_EXTRA_PORT"})
    ';
    location = /t { mruby_content_handler_code 'Nginx.rputs "port #{Nginx::Var.new.server_port}"'; }
--- init
my $res = main::http_get($ENV{TEST_NGINX_EXTRA_PORT}, '/t');
Test::More::like($res, qr{^HTTP/1\.\d 200}, 'served on the added port');
Test::More::like($res, qr{\r\n\r\nport $ENV{TEST_NGINX_EXTRA_PORT}$}, 'by this server');
--- request
GET /t
--- response_body eval
"port $ENV{TEST_NGINX_SERVER_PORT}"
--- no_error_log
[error]


=== TEST 2: a port alone listens on every address; String keys work too
--- config
    mruby_server_context_handler_code '
        Nginx::Server.new.add_listener({"address" => "$TEST_NGINX_EXTRA_PORT"})
    ';
    location = /t { return 200 "wildcard\n"; }
--- init
Test::More::like(main::http_get($ENV{TEST_NGINX_EXTRA_PORT}, '/t'), qr{\r\n\r\nwildcard\n$}, 'served on *:port');
--- request
GET /t
--- response_body
wildcard


=== TEST 3: ssl: true makes a TLS listener
--- config
    ssl_certificate $TEST_NGINX_CERT_DIR/listener.crt;
    ssl_certificate_key $TEST_NGINX_CERT_DIR/listener.key;
    mruby_server_context_handler_code '
        Nginx::Server.new.add_listener({address: "127.0.0.1:$TEST_NGINX_EXTRA_PORT", ssl: true})
    ';
    location = /t { return 200 "scheme=$scheme\n"; }
--- init
my $port = $ENV{TEST_NGINX_EXTRA_PORT};
my $out = `timeout 10 curl -sk https://127.0.0.1:$port/t 2>&1`;
Test::More::is($out, "scheme=https\n", 'HTTPS on the added port');
--- request
GET /t
--- response_body
scheme=http


=== TEST 4: http2: true serves HTTP/2 (prior knowledge) on the added port
--- config
    mruby_server_context_handler_code '
        Nginx::Server.new.add_listener({address: "127.0.0.1:$TEST_NGINX_EXTRA_PORT", http2: true})
    ';
    location = /t { return 200 "proto=$server_protocol\n"; }
--- init
my $port = $ENV{TEST_NGINX_EXTRA_PORT};
my $out = `timeout 10 curl -s --http2-prior-knowledge http://127.0.0.1:$port/t 2>&1`;
Test::More::is($out, "proto=HTTP/2.0\n", 'HTTP/2 on the added port');
--- request
GET /t
--- response_body
proto=HTTP/1.1


=== TEST 5: a missing or empty address fails nginx -t
--- config
    mruby_server_context_handler_code 'Nginx::Server.new.add_listener({ssl: false})';
--- must_die
--- error_log
mruby_server_context_handler_code failed: mruby_server_context_handler_code@
add_listener: :address must be a non-empty String (ArgumentError)


=== TEST 6: a non-Hash argument is a TypeError
--- config
    mruby_server_context_handler_code 'Nginx::Server.new.add_listener("127.0.0.1:1")';
--- must_die
--- error_log
add_listener takes a Hash
(TypeError)


=== TEST 7: an invalid port fails nginx -t naming the address
--- config
    mruby_server_context_handler_code 'Nginx::Server.new.add_listener({address: "127.0.0.1:99999"})';
--- must_die
--- error_log
add_listener: invalid port in "127.0.0.1:99999" (ArgumentError)


=== TEST 8: the same address twice is nginx's "a duplicate listen" error
--- config
    mruby_server_context_handler_code '
        s = Nginx::Server.new
        s.add_listener({address: "127.0.0.1:$TEST_NGINX_EXTRA_PORT", ssl: true})
        s.add_listener({address: "127.0.0.1:$TEST_NGINX_EXTRA_PORT"})
    ';
--- must_die
--- error_log
a duplicate listen 127.0.0.1:
add_listener: cannot listen on "127.0.0.1:


=== TEST 9: outside the server context handler: RuntimeError, 500, no crash
--- config
    location = /t { mruby_content_handler_code 'Nginx::Server.new.add_listener({address: "127.0.0.1:1"})'; }
--- request
GET /t
--- error_code: 500
--- error_log
add_listener can be called only in mruby_server_context_handler_code (RuntimeError)


=== TEST 10: in mruby_init it is an error too
--- http_config
    mruby_init_code 'Nginx::Server.new.add_listener({address: "127.0.0.1:1"})';
--- config
--- must_die
--- error_log
mruby_init failed
add_listener can be called only in mruby_server_context_handler_code (RuntimeError)


=== TEST 11: any exception in the server context code fails nginx -t
--- config
    mruby_server_context_handler_code 'raise "no listeners today"';
--- must_die
--- error_log
mruby_server_context_handler_code failed: mruby_server_context_handler_code@
no listeners today (RuntimeError)


=== TEST 12: only in server context
--- http_config
    mruby_server_context_handler_code 'Nginx::Server.new';
--- config
--- must_die
--- error_log
"mruby_server_context_handler_code" directive is not allowed here
