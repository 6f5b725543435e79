# Waiting is one primitive (issue 8): arming a timer or subrequest and
# yielding happen in one call, the cleanup is registered when armed, and a
# script that cannot yield gets a FiberError with nothing left armed. The
# internal halves (`__sleep`, ...) do not exist. These used to crash the
# worker (SIGSEGV when the orphaned timer fired on a freed request).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

master_on();
log_level('info');
no_shuffle();
run_tests();

__DATA__

=== TEST 1: the internal __sleep is not callable; 20 times, then the worker still serves after the would-be timers
--- config
    location = /raw { mruby_content_handler_code 'Nginx::Async.__sleep(200); Nginx.rputs "done"'; }
    location = /after { mruby_content_handler_code 'Nginx::Async.sleep 400; Nginx.rputs "still here"'; }
--- request eval
[("GET /raw") x 20, "GET /after"]
--- error_code eval
[(500) x 20, 200]
--- response_body_like eval
[("500 Internal Server Error") x 20, "^still here\$"]
--- error_log
undefined method '__sleep'
--- no_error_log
exited on signal
[alert]


=== TEST 2: sleep where the Fiber cannot yield (Ruby called back from a C method), FiberError rescued; 20 times
--- config
    location = /c {
        mruby_content_handler_code '
            o = Object.new
            def o.to_s
              Nginx::Async.sleep 200
              "late"
            end
            begin
              Nginx.rputs o
            rescue => e
              Nginx.rputs "refused: #{e.message}\n"
            end
            Nginx.rputs "done"
        ';
    }
    location = /after { mruby_content_handler_code 'Nginx::Async.sleep 400; Nginx.rputs "still here"'; }
--- request eval
[("GET /c") x 20, "GET /after"]
--- error_code eval
[(200) x 20, 200]
--- response_body_like eval
[("^refused: .*Nginx::Async can only wait in the handler's own Fiber; Nginx::Async.sleep was called inside Ruby code called back from C.*\ndone\$") x 20, "^still here\$"]
--- no_error_log
exited on signal
[alert]


=== TEST 2b: sleep inside instance_eval (run by the VM, not from C) does wait
--- config
    location = /eval {
        mruby_content_handler_code '
            t0 = Time.now
            Object.new.instance_eval { Nginx::Async.sleep 100 }
            Nginx.rputs "waited #{((Time.now - t0) * 1000).to_i >= 90}"
        ';
    }
--- request
GET /eval
--- response_body chomp
waited true
--- no_error_log
[error]


=== TEST 3: sleep inside a Fiber the script made: FiberError, nothing armed
--- config
    location = /own {
        mruby_content_handler_code '
            f = Fiber.new { Nginx::Async.sleep 200; "slept" }
            begin
              f.resume
            rescue FiberError => e
              Nginx.rputs e.message
            end
        ';
    }
    location = /after { mruby_content_handler_code 'Nginx::Async.sleep 400; Nginx.rputs "still here"'; }
--- request eval
[("GET /own") x 5, "GET /after"]
--- response_body_like eval
[("from another Fiber") x 5, "^still here\$"]
--- no_error_log
exited on signal


=== TEST 4: an unrescued FiberError is the script's exception: 500 and one log line
--- config
    location = /i { mruby_content_handler_code 'o = Object.new; def o.to_s; Nginx::Async.sleep 100; "x"; end; Nginx.echo o'; }
--- request eval
["GET /i", "GET /i"]
--- error_code eval
[500, 500]
--- error_log
inside Ruby code called back from C
--- no_error_log
exited on signal


=== TEST 5: sub_request where the Fiber cannot yield starts no subrequest
--- config
    location = /t {
        mruby_content_handler_code '
            begin
              o = Object.new
              def o.to_s; Nginx::Async::HTTP.sub_request "/sub"; "x"; end
              Nginx.rputs o
            rescue => e
              Nginx.rputs "refused"
            end
        ';
    }
    location = /sub { mruby_content_handler_code 'Nginx.log Nginx::LOG_ERR, "subrequest ran"; Nginx.rputs "sub"'; }
--- request
GET /t
--- response_body chomp
refused
--- no_error_log
subrequest ran
exited on signal


=== TEST 6: the internal halves of sub_request and last_response do not exist
--- config
    location = /t {
        mruby_content_handler_code '
            out = []
            %w[__sub_request __last_response].each do |m|
              out << Nginx::Async::HTTP.respond_to?(m)
            end
            out << Nginx::Async.respond_to?(:__sleep)
            Nginx.rputs out.inspect
        ';
    }
--- request
GET /t
--- response_body chomp
[false, false, false]


=== TEST 7: the log phase cannot wait, and says so (the rest of the script does not silently vanish)
--- config
    location = /t {
        mruby_content_handler_code 'Nginx.rputs "ok"';
        mruby_log_handler_code 'Nginx::Async.sleep 10; Nginx.log Nginx::LOG_ERR, "log handler went on"';
    }
--- request
GET /t
--- response_body chomp
ok
--- error_log
Nginx::Async can only wait in post_read, server_rewrite, rewrite, access and content handlers and mruby_set, not in mruby_log_handler
--- no_error_log
log handler went on
exited on signal


=== TEST 8: filters cannot wait, and say so
--- config
    location = /t {
        mruby_content_handler_code 'Nginx.rputs "body"';
        mruby_output_header_filter_code 'Nginx::Async.sleep 10';
    }
--- request
GET /t
--- error_code: 500
--- error_log
not in mruby_output_header_filter (Nginx::Async.sleep)
--- no_error_log
exited on signal


=== TEST 9: sleep and sub_request still work, and sub_request returns its response
--- config
    location = /t {
        mruby_content_handler_code '
            Nginx::Async.sleep 20
            r = Nginx::Async::HTTP.sub_request "/sub", {"a" => "b c"}
            again = Nginx::Async::HTTP.last_response
            Nginx.rputs "#{r.status} #{r.body} #{again.body}"
        ';
    }
    location = /sub { mruby_content_handler_code 'Nginx.rputs Nginx::Request.new.args'; }
--- request
GET /t
--- response_body chomp
200 a=b%20c a=b%20c
--- no_error_log
[error]


=== TEST 10: sleep arguments are checked before anything is armed
--- config
    location = /t {
        mruby_content_handler_code '
            out = []
            [0, -5, 2**40, "10", nil, 1.5].each do |v|
              begin
                Nginx::Async.sleep v
                out << "slept"
              rescue ArgumentError, TypeError => e
                out << e.class.to_s
              end
            end
            Nginx.rputs out.join(",")
        ';
    }
--- request
GET /t
--- response_body chomp
ArgumentError,ArgumentError,ArgumentError,TypeError,TypeError,TypeError


=== TEST 11: sub_request and last_response check their arguments and where they run
--- http_config
    mruby_init_code '
        begin
          Nginx::Async::HTTP.last_response
        rescue RuntimeError => e
          $init_error = e.message
        end
    ';
--- config
    location = /t {
        mruby_content_handler_code '
            out = []
            [[123], ["relative"], ["/x", 5], ["/x", [1]], []].each do |args|
              begin
                Nginx::Async::HTTP.sub_request(*args)
                out << "started"
              rescue ArgumentError, TypeError => e
                out << e.class.to_s
              end
            end
            out << Nginx::Async::HTTP.last_response.inspect
            out << $init_error
            Nginx.rputs out.join(",")
        ';
    }
--- request
GET /t
--- response_body chomp
TypeError,ArgumentError,TypeError,TypeError,ArgumentError,nil,can't use this method at this phase. only use at request phase
--- no_error_log
[error]


=== TEST 12: no internal half of Async, Vlimit or SecureRandom is callable
--- config
    location = /t {
        mruby_content_handler_code '
            Nginx.rputs [
              [Nginx::Async, :__sleep], [Nginx::Async::HTTP, :__sub_request], [Nginx::Async::HTTP, :__last_response],
              [Nginx::Vlimit, :__stats_json], [SecureRandom, :__random_number],
            ].map { |obj, m| obj.respond_to?(m) }.inspect
            Nginx.rputs " #{SecureRandom.rand(3..3)}"
        ';
    }
--- request
GET /t
--- response_body chomp
[false, false, false, false, false] 3


=== TEST 13: sub_request takes its query as keywords too (as the Ruby method did)
--- config
    location = /t { mruby_content_handler_code 'r = Nginx::Async::HTTP.sub_request "/sub", a: "b"; Nginx.rputs r.body'; }
    location = /sub { mruby_content_handler_code 'Nginx.rputs Nginx::Request.new.args'; }
--- request
GET /t
--- response_body chomp
a=b
