# mruby_ssl_handshake_handler[_code] and Nginx::SSL: the script picks the
# certificate per SNI name during the handshake. Checked with
# `openssl s_client` from --- init snippets (they run once nginx is up).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Path ();

no_shuffle();

# A second port for the TLS server, and throwaway certificates (never committed).
$ENV{TEST_NGINX_SSL_PORT} ||= Test::Nginx::Socket::pick_free_port(server_port());
our $CertDir = server_root() . '/certs';
File::Path::make_path($CertDir);
for my $name (qw(default a.test b.test)) {
    next if -s "$CertDir/$name.crt";
    system("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=$name -days 1"
           . " -keyout $CertDir/$name.key -out $CertDir/$name.crt >/dev/null 2>&1") == 0
        or bail_out("openssl req failed for $name");
}
$ENV{TEST_NGINX_CERT_DIR} = $CertDir;

# Handshake with SNI $sni (undef: none); returns (subject CN or undef, s_client output).
sub tls_cn {
    my ($sni) = @_;
    my $port = $ENV{TEST_NGINX_SSL_PORT};
    my $name = defined $sni ? "-servername $sni" : '-noservername';
    my $out = `echo | timeout 10 openssl s_client -connect 127.0.0.1:$port $name 2>&1`;
    my ($cn) = $out =~ /^subject=.*?CN\s*=\s*([^\s,\/]+)/m;
    return ($cn, $out);
}

sub cn_is {
    my ($sni, $want, $what) = @_;
    my ($cn, $out) = tls_cn($sni);
    Test::More::is($cn, $want, $what) or Test::More::diag($out);
}

sub handshake_fails {
    my ($sni, $what) = @_;
    my ($cn, $out) = tls_cn($sni);
    Test::More::ok(!defined $cn, $what) or Test::More::diag($out);
}

# The TLS server block, with the handshake directive(s) of a test.
sub tls_server {
    my ($directives) = @_;
    return <<"_EOC_";
    server {
        listen 127.0.0.1:\$TEST_NGINX_SSL_PORT ssl;
        server_name tls.test;
        ssl_certificate \$TEST_NGINX_CERT_DIR/default.crt;
        ssl_certificate_key \$TEST_NGINX_CERT_DIR/default.key;
        # nginx before 1.23.4 leaves TLSv1.3 out by default
        ssl_protocols TLSv1.2 TLSv1.3;
$directives
        location / { return 200 "tls\\n"; }
    }
_EOC_
}

run_tests();

END { File::Path::remove_tree($CertDir) if $CertDir }

__DATA__

=== TEST 1: a handshake file picks the certificate by SNI; no SNI keeps the default
--- http_config eval
main::tls_server(q{
        mruby_ssl_handshake_handler $TEST_NGINX_HTML_DIR/handshake.rb;
}) . q{
    mruby_init_code 'CERT_DIR = "$TEST_NGINX_CERT_DIR"';
}
--- user_files
>>> handshake.rb
ssl = Nginx::SSL.new
name = ssl.servername
if %w(a.test b.test).include?(name)
  ssl.certificate = "#{CERT_DIR}/#{name}.crt"
  ssl.certificate_key = "#{CERT_DIR}/#{name}.key"
end
--- init
main::cn_is('a.test', 'a.test', 'SNI a.test gets the a.test certificate');
main::cn_is('b.test', 'b.test', 'SNI b.test gets the b.test certificate');
main::cn_is(undef, 'default', 'no SNI: the server certificate');
main::cn_is('other.test', 'default', 'unknown SNI: the server certificate');
--- no_error_log
[error]


=== TEST 2: inline handler; servername, local_port, tls_version, log, errlogger
--- http_config eval
main::tls_server(q{
        mruby_ssl_handshake_handler_code '
            ssl = Nginx::SSL.new
            Nginx::SSL.log Nginx::LOG_NOTICE, "hs sni=#{ssl.servername.inspect} port=#{ssl.local_port} (#{ssl.local_port.class}) tls=#{ssl.tls_version}"
            Nginx::SSL.errlogger Nginx::LOG_WARN, "via errlogger"
        ';
})
--- init
main::cn_is('a.test', 'default', 'handshake completes with the default certificate');
main::cn_is(undef, 'default', 'and without SNI');
--- error_log
hs sni="a.test" port=$TEST_NGINX_SSL_PORT (Integer) tls=TLSv1.3
hs sni="" port=$TEST_NGINX_SSL_PORT (Integer) tls=TLSv1.3
[warn]
via errlogger
--- no_error_log
[error]


=== TEST 3: certificate_data= and certificate_key_data= take PEM text
--- http_config eval
main::tls_server(q{
        mruby_ssl_handshake_handler_code '
            ssl = Nginx::SSL.new
            dir = "$TEST_NGINX_CERT_DIR"
            if ssl.servername == "b.test"
              ssl.certificate_data = File.open("#{dir}/b.test.crt") { |f| f.read }
              ssl.certificate_key_data = File.open("#{dir}/b.test.key") { |f| f.read }
            end
        ';
})
--- init
main::cn_is('b.test', 'b.test', 'PEM data for b.test');
main::cn_is('a.test', 'default', 'others keep the default');
--- no_error_log
[error]


=== TEST 4: the choice is per handshake: nothing carries over to the next one
--- http_config eval
main::tls_server(q{
        mruby_ssl_handshake_handler_code '
            ssl = Nginx::SSL.new
            if ssl.servername == "a.test"
              ssl.certificate = "$TEST_NGINX_CERT_DIR/a.test.crt"
              ssl.certificate_key = "$TEST_NGINX_CERT_DIR/a.test.key"
            end
        ';
})
--- init
main::cn_is('a.test', 'a.test', 'first handshake: a.test');
main::cn_is('b.test', 'default', 'next handshake (ngx_mruby would reuse a.test): default');
main::cn_is('a.test', 'a.test', 'a.test again');
--- no_error_log
[error]


=== TEST 5: an exception fails the handshake with one log line; the next handshake works
--- http_config eval
main::tls_server(q{
        mruby_ssl_handshake_handler_code '
            raise "boom for #{Nginx::SSL.new.servername}" if Nginx::SSL.new.servername == "bad.test"
        ';
})
--- init
main::handshake_fails('bad.test', 'the handshake fails');
main::cn_is('a.test', 'default', 'the next handshake succeeds');
--- grep_error_log eval: qr/\[error\].*mruby_ssl_handshake_handler: .*/
--- grep_error_log_out eval
qr/^\[error\].*mruby_ssl_handshake_handler: mruby_ssl_handshake_handler_code\@\S+:\d+: boom for bad.test \(RuntimeError\), backtrace: \[.*\].*\n$/


=== TEST 6: an unreadable certificate or key fails the handshake with one line
--- http_config eval
main::tls_server(q{
        mruby_ssl_handshake_handler_code '
            ssl = Nginx::SSL.new
            case ssl.servername
            when "nocert.test"
              ssl.certificate = "/nonexistent/x.crt"
              ssl.certificate_key = "$TEST_NGINX_CERT_DIR/a.test.key"
            when "nokey.test"
              ssl.certificate = "$TEST_NGINX_CERT_DIR/a.test.crt"
              ssl.certificate_key = "/nonexistent/x.key"
            end
        ';
})
--- init
main::handshake_fails('nocert.test', 'missing certificate file');
main::handshake_fails('nokey.test', 'missing key file');
main::cn_is('a.test', 'default', 'other names still work');
--- error_log
mruby_ssl_handshake_handler: cert /nonexistent/x.crt not exists or not read
mruby_ssl_handshake_handler: key /nonexistent/x.key not exists or not read


=== TEST 7: bad PEM, a key that does not match, a certificate without a key
--- http_config eval
main::tls_server(q{
        mruby_ssl_handshake_handler_code '
            ssl = Nginx::SSL.new
            dir = "$TEST_NGINX_CERT_DIR"
            case ssl.servername
            when "badpem.test"
              ssl.certificate_data = "not a certificate"
              ssl.certificate_key_data = "not a key"
            when "mismatch.test"
              ssl.certificate = "#{dir}/a.test.crt"
              ssl.certificate_key = "#{dir}/b.test.key"
            when "nokey.test"
              ssl.certificate = "#{dir}/a.test.crt"
            when "type.test"
              ssl.certificate = 42
            end
        ';
})
--- init
main::handshake_fails($_, "$_ fails the handshake") for qw(badpem.test mismatch.test nokey.test type.test);
main::cn_is('a.test', 'default', 'other names still work');
--- error_log
mruby_ssl_handshake_handler: cannot read certificate:
mruby_ssl_handshake_handler: cannot use certificate key:
mruby_ssl_handshake_handler: a certificate was set without certificate_key
certificate path must be a String, not Integer (TypeError)


=== TEST 8: a handshake neither sees nor leaves globals
--- http_config eval
main::tls_server(q{
        mruby_ssl_handshake_handler_code '
            Nginx::SSL.log Nginx::LOG_NOTICE, "hs sees #{$from_request.inspect} #{$boot.inspect}"
            $from_handshake = "leaked"
        ';
}) . q{
    mruby_init_code '$boot = "init global"';
}
--- config
    location = /t {
        mruby_content_handler_code '
            $from_request = "request global"
            Nginx.rputs "#{$from_handshake.inspect} #{$boot.inspect}"
        ';
    }
--- init
main::cn_is('a.test', 'default', 'handshake completes');
--- request
GET /t
--- response_body chomp
nil "init global"
--- error_log
hs sees nil "init global"
--- no_error_log
[error]


=== TEST 9: Nginx::SSL in a content handler raises RuntimeError (500), no crash
--- config
    location = /t {
        mruby_content_handler_code 'Nginx.rputs Nginx::SSL.new.servername';
    }
--- request
GET /t
--- error_code: 500
--- error_log
Nginx::SSL is available only in mruby_ssl_handshake_handler (RuntimeError)


=== TEST 10: the RuntimeError can be rescued; Nginx::SSL.log works anywhere
--- config
    location = /t {
        mruby_content_handler_code '
            begin
              Nginx::SSL.new
            rescue RuntimeError => e
              Nginx.echo e.message
            end
            Nginx::SSL.log Nginx::LOG_NOTICE, "ssl log outside"
        ';
    }
--- request
GET /t
--- response_body
Nginx::SSL is available only in mruby_ssl_handshake_handler
--- error_log
ssl log outside
--- no_error_log
[error]


=== TEST 11: nginx -t fails when the server has no ssl
--- config
    mruby_ssl_handshake_handler_code 'Nginx::SSL.new';
--- must_die
--- error_log
mruby_ssl_handshake_handler: no ssl configured for the server in


=== TEST 12: one handshake handler per server
--- http_config eval
main::tls_server(q{
        mruby_ssl_handshake_handler_code 'Nginx::SSL.new';
        mruby_ssl_handshake_handler_code 'Nginx::SSL.new';
})
--- must_die
--- error_log
"mruby_ssl_handshake_handler_code" directive is duplicate


=== TEST 13: a syntax error and a bad second argument fail nginx -t
--- http_config eval
main::tls_server(q{
        mruby_ssl_handshake_handler_code 'if';
})
--- must_die
--- error_log eval
qr/mruby_ssl_handshake_handler_code failed: mruby_ssl_handshake_handler_code\@\S+:\d+: syntax error/


=== TEST 14: the file form takes only "cache" as second argument
--- http_config eval
main::tls_server(q{
        mruby_ssl_handshake_handler $TEST_NGINX_HTML_DIR/h.rb nocache;
})
--- user_files
>>> h.rb
Nginx::SSL.new
--- must_die
--- error_log
invalid parameter "nocache", valid parameter is only "cache"


=== TEST 15: the handler is not allowed outside a server block
--- http_config
    mruby_ssl_handshake_handler_code 'Nginx::SSL.new';
--- config
--- must_die
--- error_log
"mruby_ssl_handshake_handler_code" directive is not allowed here
