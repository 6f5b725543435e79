# The Nginx class: output, status, logging, redirects, versions, constants.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: rputs and echo build the body; Content-Length is their sum
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs "a"; Nginx.echo "b"; Nginx.rputs 42; Nginx.rputs nil; Nginx.echo :sym'; }
--- request
GET /t
--- response_headers
Content-Length: 9
--- response_body
ab
42sym


=== TEST 2: Nginx.return with an error status and no body serves nginx's page
--- config
    location = /t { mruby_content_handler_code 'Nginx.return Nginx::HTTP_NOT_FOUND'; }
--- request
GET /t
--- error_code: 404
--- response_body_like chomp
404 Not Found


=== TEST 3: a body with a non-200 status is sent with that status (ngx_mruby #484)
--- config
    location = /after { mruby_content_handler_code 'Nginx.rputs "custom not found"; Nginx.return 404'; }
    location = /before { mruby_content_handler_code 'Nginx.return 503; Nginx.rputs "maintenance"'; }
--- request eval
["GET /after", "GET /before"]
--- error_code eval
[404, 503]
--- response_body eval
["custom not found", "maintenance"]


=== TEST 4: Nginx.return 200 without a body sends an empty 200 (ngx_mruby sent 500)
--- config
    location = /t { mruby_content_handler_code 'Nginx.return Nginx::HTTP_OK'; }
--- request
GET /t
--- error_code: 200
--- response_headers
Content-Length: 0
--- response_body:


=== TEST 5: send_header and status_code= are aliases of return; 204 has no body
--- config
    location = /a { mruby_content_handler_code 'Nginx.send_header 201; Nginx.rputs "created"'; }
    location = /b { mruby_content_handler_code 'Nginx.status_code = 202; Nginx.rputs "accepted"'; }
    location = /c { mruby_content_handler_code 'Nginx.return Nginx::HTTP_NO_CONTENT'; }
--- request eval
["GET /a", "GET /b", "GET /c"]
--- error_code eval
[201, 202, 204]
--- response_body eval
["created", "accepted", ""]


=== TEST 6: a content handler that writes nothing answers an empty 200 (no hang)
--- config
    location = /t { mruby_content_handler_code 'x = 1'; }
--- request
GET /t
--- error_code: 200
--- response_body:
--- timeout: 2


=== TEST 7: Nginx::DECLINED from content falls through to the static file
--- config
    location = /index.html { mruby_content_handler_code 'Nginx.return Nginx::DECLINED'; }
--- request
GET /index.html
--- response_body_like chomp
It works!


=== TEST 8: Nginx.log and errlogger write at the given level with request context
--- config
    location = /t {
        mruby_content_handler_code '
            Nginx.log Nginx::LOG_ERR, "an err line"
            Nginx.errlogger Nginx::LOG_WARN, "a warn line"
            Nginx.log Nginx::LOG_INFO, 12345
            Nginx.rputs "logged"
        ';
    }
--- request
GET /t
--- error_log eval
[qr/\[error\] .*an err line, client: 127\.0\.0\.1, server: localhost, request: "GET \/t HTTP\/1\.1"/, qr/\[warn\] .*a warn line/, qr/\[info\] .*12345/]


=== TEST 9: Nginx.redirect to a URL sends 302 (or the given status) with Location
--- config
    location = /a { mruby_content_handler_code 'Nginx.redirect "http://example.com/x"'; }
    location = /b { mruby_rewrite_handler_code 'Nginx.redirect "https://example.com/y", 301'; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[302, 301]
--- response_headers eval
["Location: http://example.com/x", "Location: https://example.com/y"]


=== TEST 10: Nginx.redirect to a path is an internal redirect keeping the args
--- config
    location = /from { mruby_rewrite_handler_code 'Nginx.redirect "/to"'; }
    location = /from-content { mruby_content_handler_code 'Nginx.redirect "/to"'; }
    location = /to { mruby_content_handler_code 'r = Nginx::Request.new; Nginx.rputs "at #{r.uri} args=#{r.args}"'; }
--- request eval
["GET /from?q=1", "GET /from-content?q=2"]
--- response_body eval
["at /to args=q=1", "at /to args=q=2"]
--- no_error_log
[error]


=== TEST 11: module, nginx and configure information
--- config
    location = /t {
        mruby_content_handler_code '
            Nginx.echo Nginx.module_name
            Nginx.echo Nginx.module_version
            Nginx.echo Nginx.nginx_version
            Nginx.echo Nginx.server_version
            Nginx.echo Nginx.configure.include?("--with-compat")
        ';
    }
--- request
GET /t
--- response_body_like chomp
\Angx_mruby
\d+\.\d+\.\d+
1\.\d+\.\d+
1\.\d+\.\d+
true


=== TEST 12: constants
--- config
    location = /t {
        mruby_content_handler_code '
            c = [Nginx::TRUE, Nginx::FALSE, Nginx::OK, Nginx::ERROR, Nginx::AGAIN, Nginx::BUSY, Nginx::DONE,
                 Nginx::DECLINED, Nginx::ABORT, Nginx::HTTP_OK, Nginx::HTTP_MOVED_TEMPORARILY,
                 Nginx::HTTP_FORBIDDEN, Nginx::HTTP_NOT_FOUND, Nginx::HTTP_SERVICE_UNAVAILABLE,
                 Nginx::HTTP_INTERNAL_SERVER_ERROR, Nginx::HTTP_TOO_MANY_REQUESTS, Nginx::HTTP_CLIENT_CLOSED_REQUEST,
                 Nginx::LOG_STDERR, Nginx::LOG_EMERG, Nginx::LOG_ERR, Nginx::LOG_NOTICE, Nginx::LOG_DEBUG]
            Nginx.rputs c.map(&:inspect).join(" ")
        ';
    }
--- request
GET /t
--- response_body chomp
"1" "0" 0 -1 -2 -3 -4 -5 -6 200 302 403 404 503 500 429 499 0 1 4 6 8


=== TEST 13: Nginx.var, get_server_class, server_name
--- config
    location = /t {
        mruby_content_handler_code 'Nginx.rputs "#{Nginx.var.uri} #{get_server_class} #{server_name}"';
    }
--- request
GET /t
--- response_body chomp
/t Nginx NGINX


=== TEST 14: a negative log level logs an error instead
--- config
    location = /t { mruby_content_handler_code 'Nginx.log(-1, "odd level"); Nginx.rputs "ok"'; }
--- request
GET /t
--- response_body chomp
ok
--- error_log
Nginx.log: invalid log level -1: odd level
