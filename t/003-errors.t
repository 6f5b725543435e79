# Errors: a raise is one [error] line with path:line, class, message and
# backtrace, and a 500; bad arguments raise; nothing crashes the worker.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a raise in a file script gives 500 and exactly one error line with everything on it
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/boom.rb; }
--- user_files
>>> boom.rb
def helper
  raise ArgumentError, "bad input from helper"
end
helper
--- request
GET /t
--- error_code: 500
--- error_log eval
qr{\[error\] .*mruby_content_handler: \S+/boom\.rb:2: bad input from helper \(ArgumentError\), backtrace: \[\S+/boom\.rb:2:in helper, \S+/boom\.rb:4\], client: 127\.0\.0\.1}
--- grep_error_log eval
qr/\[error\].*/
--- grep_error_log_out eval
qr/\A[^\n]+\n\z/


=== TEST 2: output written before a raise is discarded: 500, not a partial 200
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs "partial"; raise "after output"'; }
--- request
GET /t
--- error_code: 500
--- response_body_unlike
partial
--- error_log
after output (RuntimeError)


=== TEST 3: a raise in an access handler gives 500
--- config
    location = /t {
        mruby_access_handler_code 'raise IndexError, "access broke"';
        mruby_content_handler_code 'Nginx.rputs "never"';
    }
--- request
GET /t
--- error_code: 500
--- error_log
mruby_access_handler: mruby_access_handler_code@


=== TEST 4: a raise in a rewrite handler gives 500
--- config
    location = /t {
        mruby_rewrite_handler_code 'nil.no_such_method';
        return 200 "never";
    }
--- request
GET /t
--- error_code: 500
--- error_log
undefined method 'no_such_method' (NoMethodError)


=== TEST 5: a raise in the log handler is logged; the response is already out
--- config
    location = /t {
        mruby_content_handler_code 'Nginx.rputs "fine"';
        mruby_log_handler_code 'raise "late failure"';
    }
--- request
GET /t
--- response_body chomp
fine
--- error_log
mruby_log_handler: mruby_log_handler_code@


=== TEST 6: wrong argument types raise TypeError and ArgumentError
--- config
    location = /t {
        mruby_content_handler_code '
            out = []
            begin; Nginx.return "200"; rescue TypeError => e; out << "TypeError"; end
            begin; Nginx.rputs; rescue ArgumentError => e; out << "ArgumentError"; end
            begin; Nginx.log "x", "y"; rescue TypeError => e; out << "TypeError"; end
            begin; Nginx::Request.new.headers_out[1] = "x"; rescue TypeError => e; out << "TypeError"; end
            begin; Nginx.redirect 5; rescue TypeError => e; out << "TypeError"; end
            Nginx.rputs out.join(",")
        ';
    }
--- request
GET /t
--- response_body chomp
TypeError,ArgumentError,TypeError,TypeError,TypeError
--- no_error_log
[error]


=== TEST 7: a CR or LF in a response header name or value raises ArgumentError and is never sent
--- config
    location = /t {
        mruby_content_handler_code '
            h = Nginx::Request.new.headers_out
            out = []
            begin; h["X-Inject"] = "a\r\nSet-Cookie: evil=1"; rescue ArgumentError; out << "value"; end
            begin; h["X-Bad\nName"] = "v"; rescue ArgumentError; out << "name"; end
            begin; h["X-List"] = ["ok", "bad\nvalue"]; rescue ArgumentError; out << "array"; end
            Nginx.rputs out.join(",")
        ';
    }
--- request
GET /t
--- response_body chomp
value,name,array
--- raw_response_headers_unlike
(?i)set-cookie|x-inject|x-list


=== TEST 8: an uncaught CR/LF header error gives 500 and the header is not sent
--- config
    location = /t {
        mruby_content_handler_code 'Nginx::Request.new.headers_out["X-Split"] = "x\r\nLocation: http://evil/"; Nginx.rputs "no"';
    }
--- request
GET /t
--- error_code: 500
--- raw_response_headers_unlike
(?i)evil|x-split
--- error_log
must not contain CR, LF or NUL (ArgumentError)


=== TEST 9: a request header with CR/LF from Ruby is rejected too
--- config
    location = /t {
        mruby_content_handler_code '
            begin
              Nginx::Request.new.headers_in["X-In"] = "a\nb"
              Nginx.rputs "accepted"
            rescue ArgumentError => e
              Nginx.rputs "rejected: #{e.message}"
            end
        ';
    }
--- request
GET /t
--- response_body chomp
rejected: header value must not contain CR, LF or NUL


=== TEST 10: the worker survives bad scripts: same pid before and after
--- config
    location = /pid { mruby_content_handler_code 'Nginx.rputs Nginx::Var.new.pid'; }
    location = /bad1 { mruby_content_handler_code 'Nginx.rputs "x" * -1'; }
    location = /bad2 { mruby_content_handler_code 'def f(n) f(n + 1) end; f(0)'; }
    location = /bad3 { mruby_content_handler_code 'Nginx::Request.new.uri = Object.new'; }
    location = /bad4 { mruby_content_handler_code 'raise Exception, "not a StandardError"'; }
--- request eval
["GET /pid", "GET /bad1", "GET /bad2", "GET /bad3", "GET /bad4", "GET /pid"]
--- error_code eval
[200, 500, 500, 200, 500, 200]
--- response_body_like eval
["^\\d+\$", "500", "500", "", "500", "^\\d+\$"]
--- no_error_log
[alert]
[crit]


=== TEST 11: Nginx.log outside a request (mruby_init) goes to the error log
--- http_config
    mruby_init_code 'Nginx.log Nginx::LOG_WARN, "logged from init"';
--- config
    location = /t { return 200; }
--- request
GET /t
--- error_log
logged from init


=== TEST 12: a raise in mruby_init_worker is logged; the worker keeps serving
--- http_config
    mruby_init_worker_code 'raise "worker init failed"';
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs "up"'; }
--- request
GET /t
--- response_body chomp
up
--- error_log
[alert]
mruby_init_worker failed: mruby_init_worker_code@
