# Faults a careful reading found (issue 8), each driven for real:
# a handshake or server-context script that merely mentions Async ran
# nothing; after a slowly uploaded body the phases were resumed with an
# empty write event handler, so a later wait hung (nginx here is built
# without auth_request, so a subrequest stands for it); a filter or
# mruby_add_handler script that mentions Async pinned its Fiber for good.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Path ();
use IO::Socket::INET ();
use IO::Select ();

no_shuffle();

$ENV{TEST_NGINX_EXTRA_PORT} ||= Test::Nginx::Socket::pick_free_port(server_port());
$ENV{TEST_NGINX_SSL_PORT} ||= Test::Nginx::Socket::pick_free_port(server_port(), $ENV{TEST_NGINX_EXTRA_PORT});
our $CertDir = server_root() . '/certs-faults';
File::Path::make_path($CertDir);
unless (-s "$CertDir/default.crt") {
    system("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=default -days 1"
           . " -keyout $CertDir/default.key -out $CertDir/default.crt >/dev/null 2>&1") == 0
        or bail_out('openssl req failed');
}
$ENV{TEST_NGINX_CERT_DIR} = $CertDir;

# Sends a request whose body arrives in two parts, $pause seconds apart;
# returns the raw response (or what came within $timeout seconds).
sub slow_upload {
    my ($path, $body, $pause, $timeout) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{TEST_NGINX_SERVER_PORT})
        or return "connect failed: $@";
    my $half = int(length($body) / 2);
    print $sock "POST $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n" . substr($body, 0, $half);
    select(undef, undef, undef, $pause);
    print $sock substr($body, $half);
    my $sel = IO::Select->new($sock);
    my $res = '';
    my $deadline = time + $timeout;
    while (time < $deadline && $sel->can_read($deadline - time)) {
        my $n = sysread($sock, my $chunk, 4096);
        last unless $n;
        $res .= $chunk;
    }
    close $sock;
    return $res;
}

run_tests();

END { File::Path::remove_tree($CertDir) if $CertDir }

__DATA__

=== TEST 1: a handshake script that mentions Async (in a comment) runs
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_SSL_PORT ssl;
        ssl_certificate $TEST_NGINX_CERT_DIR/default.crt;
        ssl_certificate_key $TEST_NGINX_CERT_DIR/default.key;
        mruby_ssl_handshake_handler_code '
            # no Nginx::Async here, only this comment says Async
            Nginx::SSL.log Nginx::LOG_NOTICE, "handshake script ran for #{Nginx::SSL.new.servername}"
        ';
        location / { return 200 "tls\n"; }
    }
--- init
my $out = `echo | timeout 10 openssl s_client -connect 127.0.0.1:$ENV{TEST_NGINX_SSL_PORT} -servername async.test 2>&1`;
Test::More::like($out, qr/BEGIN CERTIFICATE|subject=/, 'the handshake completed');
--- request
GET /
--- error_log
handshake script ran for async.test


=== TEST 2: a server context script whose text contains AsyncJob runs (its listener exists)
--- config
    mruby_server_context_handler_code '
        AsyncJob = :not_nginx_async
        Nginx::Server.new.add_listener({address: "127.0.0.1:$TEST_NGINX_EXTRA_PORT"})
    ';
    location = /t { mruby_content_handler_code 'Nginx.rputs "served"'; }
--- init
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{TEST_NGINX_EXTRA_PORT});
Test::More::ok($sock, 'the listener added by the server context script accepts connections');
--- request
GET /t
--- response_body chomp
served


=== TEST 3: after a slowly uploaded body, a wait in a later handler is resumed (subrequest after a slow upload)
--- config
    mruby_enable_read_request_body on;
    location = /upload {
        mruby_access_handler_code '
            body = Nginx::Request.new.get_body
            sub = Nginx::Async::HTTP.sub_request "/sub"
            $got = "#{body.size} bytes, sub said #{sub.body}"
        ';
        mruby_content_handler_code 'Nginx.rputs $got';
    }
    location = /sub { mruby_content_handler_code 'Nginx.rputs "hi"'; }
--- init
my $res = main::slow_upload('/upload', 'x' x 2000, 0.3, 3);
Test::More::like($res, qr{^HTTP/1\.1 200}, 'answered');
Test::More::like($res, qr{2000 bytes, sub said hi\z}, 'the access handler resumed after its subrequest');
--- request
GET /sub
--- response_body chomp
hi


=== TEST 4: filter and mruby_add_handler scripts that mention Async do not keep their Fibers
--- config
    location = /f {
        mruby_content_handler_code 'Nginx.rputs "hello"';
        mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = f.body.upcase # no Async wait';
    }
    location ~ \.rb$ {
        root html;
        mruby_add_handler on;
    }
    location = /count {
        mruby_content_handler_code 'GC.start; Nginx.rputs ObjectSpace.count_objects[:T_FIBER].to_i';
    }
--- user_files
>>> app.rb
# mentions Async, never waits
Nginx.rputs "app"
--- request eval
[("GET /f") x 150, ("GET /app.rb") x 150, "GET /count"]
--- response_body eval
[("HELLO") x 150, ("app") x 150, "0"]


=== TEST 5: a handshake while a request waits sees none of that request's globals, and the request keeps them
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_SSL_PORT ssl;
        ssl_certificate $TEST_NGINX_CERT_DIR/default.crt;
        ssl_certificate_key $TEST_NGINX_CERT_DIR/default.key;
        mruby_ssl_handshake_handler_code 'Nginx::SSL.log Nginx::LOG_NOTICE, "handshake sees #{$owned.inspect}"; $from_handshake = 1';
        location / { return 200 "tls\n"; }
    }
--- config
    location = /slow {
        mruby_access_handler_code '$owned = "request"; Nginx::Async.sleep 400';
        mruby_content_handler_code 'Nginx.rputs "#{$owned} #{$from_handshake.inspect}"';
    }
--- init
my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}") or die "connect: $!";
print $sock "GET /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
select(undef, undef, undef, 0.1);
my $out = `echo | timeout 10 openssl s_client -connect 127.0.0.1:$ENV{TEST_NGINX_SSL_PORT} 2>&1`;
my $res = do { local $/; <$sock> };
Test::More::like($res, qr/\r\n\r\nrequest nil\z/, 'the waiting request kept its global and saw none of the handshake');
--- request
GET /slow
--- response_body chomp
request nil
--- error_log
handshake sees nil


=== TEST 6: scripts see the cycle they run for: Nginx::Upstream works in mruby_init (the cycle being configured)
--- http_config
    upstream init_backend { server 127.0.0.1:1; }
    mruby_init_code '$init_upstream = Nginx::Upstream.new("init_backend").server';
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs $init_upstream'; }
--- request
GET /t
--- response_body chomp
127.0.0.1:1
