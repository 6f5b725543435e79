# The Rack-style API: `run app`
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a Rack app with headers and a multi-part body
--- config
    location = /app {
        mruby_content_handler_code '
            class HelloApp
              def call(env)
                [201, {"Content-Type" => "text/x-rack", "X-App" => "hello", "X-Multi" => ["a", "b"]},
                 ["part one, ", "part two, ", "path=#{env["PATH_INFO"]}"]]
              end
            end
            run HelloApp.new
        ';
    }
--- request
GET /app
--- error_code: 201
--- response_headers
Content-Type: text/x-rack
X-App: hello
--- raw_response_headers_like chomp
X-Multi: a\r?\nX-Multi: b
--- response_body chomp
part one, part two, path=/app
--- no_error_log
[error]


=== TEST 2: the env carries the request
--- config
    location = /env {
        mruby_content_handler_code '
            app = lambda do |env|
              keys = %w(REQUEST_METHOD SCRIPT_NAME PATH_INFO REQUEST_URI QUERY_STRING SERVER_NAME SERVER_PORT REMOTE_ADDR rack.url_scheme HTTP_X_CUSTOM HTTP_USER_AGENT server.name)
              lines = keys.map { |k| "#{k}=#{env[k]}" }
              lines << "multithread=#{env["rack.multithread"]} multiprocess=#{env["rack.multiprocess"]} run_once=#{env["rack.run_once"]} hijack=#{env["rack.hijack?"]}"
              lines << "remote_port=#{env["REMOTE_PORT"].to_i > 0} addr=#{env["SERVER_ADDR"]} version=#{env["server.version"] == Nginx.server_version}"
              [200, {}, [lines.join("\n")]]
            end
            run app
        ';
    }
--- request
GET /env?a=1
--- more_headers
X-Custom: yes
User-Agent: rack-test
--- response_body chomp
REQUEST_METHOD=GET
SCRIPT_NAME=
PATH_INFO=/env
REQUEST_URI=/env?a=1
QUERY_STRING=a=1
SERVER_NAME=localhost
SERVER_PORT=$TEST_NGINX_SERVER_PORT
REMOTE_ADDR=127.0.0.1
rack.url_scheme=http
HTTP_X_CUSTOM=yes
HTTP_USER_AGENT=rack-test
server.name=NGINX
multithread=false multiprocess=true run_once=false hijack=false
remote_port=true addr=127.0.0.1 version=true


=== TEST 3: rack.input, CONTENT_TYPE and CONTENT_LENGTH for a POST
--- config
    location = /post {
        mruby_enable_read_request_body on;
        mruby_content_handler_code '
            run(lambda { |env| [200, {}, ["#{env["CONTENT_TYPE"]} #{env["CONTENT_LENGTH"]} [#{env["rack.input"].read}]"]] })
        ';
    }
--- request
POST /post
name=value
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body chomp
application/x-www-form-urlencoded 10 [name=value]


=== TEST 4: headers as an Array of pairs; nil status keeps 200; rack.logger logs
--- config
    location = /t {
        mruby_content_handler_code '
            run(lambda { |env| env["rack.logger"].warn("from rack app"); [nil, [["X-Pair", "1"]], ["ok"]] })
        ';
    }
--- request
GET /t
--- response_headers
X-Pair: 1
--- response_body chomp
ok
--- error_log
from rack app


=== TEST 5: a Rack error status with a body is sent as is
--- config
    location = /t {
        mruby_content_handler_code 'run(lambda { |env| [404, {"Content-Type" => "text/plain"}, ["no such thing"]] })';
    }
--- request
GET /t
--- error_code: 404
--- response_body chomp
no such thing


=== TEST 6: wrong response types raise TypeError (500 and a log line)
--- config
    location = /a { mruby_content_handler_code 'run(lambda { |env| "not an array" })'; }
    location = /b { mruby_content_handler_code 'run(lambda { |env| ["200", {}, []] })'; }
    location = /c { mruby_content_handler_code 'run(lambda { |env| [200, "x", []] })'; }
--- request eval
["GET /a", "GET /b", "GET /c"]
--- error_code eval
[500, 500, 500]
--- error_log eval
[qr/a Rack app must return \[status, headers, body\].*\(TypeError\)/, qr/Rack status must be an Integer.*\(TypeError\)/, qr/Rack headers must be a Hash.*\(TypeError\)/]


=== TEST 7: rack.logger takes a block, and a progname with a block, as Ruby's Logger does
--- config
    location = /t {
        mruby_content_handler_code '
            run(lambda do |env|
              log = env["rack.logger"]
              log.info { "message from a block" }
              log.warn("myapp") { "with a progname" }
              log.error "plain message"
              [200, {}, ["logged"]]
            end)
        ';
    }
--- request
GET /t
--- response_body chomp
logged
--- error_log
message from a block
myapp: with a progname
plain message
--- no_error_log
ArgumentError


=== TEST 8: a response breaking the Rack contract is a 500 with a log line saying what was wrong
--- config
    location = /hdr_array { mruby_content_handler_code 'run(lambda { |env| [200, [{"x" => "y"}], ["app-body"]] })'; }
    location = /hdr_string { mruby_content_handler_code 'run(lambda { |env| [200, "X-A: 1", ["app-body"]] })'; }
    location = /hdr_name { mruby_content_handler_code 'run(lambda { |env| [200, {42 => "y"}, ["app-body"]] })'; }
    location = /status_big { mruby_content_handler_code 'run(lambda { |env| [1000, {}, ["app-body"]] })'; }
    location = /status_small { mruby_content_handler_code 'run(lambda { |env| [42, {}, ["app-body"]] })'; }
    location = /status_float { mruby_content_handler_code 'run(lambda { |env| [200.0, {}, ["app-body"]] })'; }
    location = /body { mruby_content_handler_code 'run(lambda { |env| [200, {"X-Leak" => "1"}, 42] })'; }
--- request eval
["GET /hdr_array", "GET /hdr_string", "GET /hdr_name", "GET /status_big", "GET /status_small", "GET /status_float", "GET /body"]
--- error_code eval
[500, 500, 500, 500, 500, 500, 500]
--- raw_response_headers_unlike eval
[qr/X-Leak/i, qr/X-Leak/i, qr/X-Leak/i, qr/X-Leak/i, qr/X-Leak/i, qr/X-Leak/i, qr/X-Leak/i]
--- response_body_unlike eval
[qr/app-body/, qr/app-body/, qr/app-body/, qr/app-body/, qr/app-body/, qr/app-body/, qr/app-body/]
--- error_log eval
[
qr/\[error\].*mruby_content_handler: .*Rack headers must be a Hash, got Array \[\{"x" ?=> ?"y"\}\] \(TypeError\)/,
qr/\[error\].*Rack headers must be a Hash, got String "X-A: 1" \(TypeError\)/,
qr/\[error\].*Rack header names must be Strings, got Integer 42 \(TypeError\)/,
qr/\[error\].*Rack status must be an Integer in 100-999, got Integer 1000 \(TypeError\)/,
qr/\[error\].*Rack status must be an Integer in 100-999, got Integer 42 \(TypeError\)/,
qr/\[error\].*Rack status must be an Integer in 100-999, got Float 200(\.0)? \(TypeError\)/,
qr/\[error\].*Rack body must respond to each, got Integer 42 \(TypeError\)/,
]


=== TEST 9: one log line per broken response, and the worker keeps serving valid ones
--- config
    location = /bad { mruby_content_handler_code 'run(lambda { |env| [200, [{"x" => "y"}], ["body"]] })'; }
    location = /good { mruby_content_handler_code 'run(lambda { |env| [200, [["X-Pair", "1"]], ["good"]] })'; }
--- request eval
["GET /bad", "GET /good"]
--- error_code eval
[500, 200]
--- response_body eval
[qr/500 Internal Server Error/, "good"]
--- grep_error_log eval
qr/\[error\].*/
--- grep_error_log_out eval
qr/\A[^\n]*Rack headers must be a Hash[^\n]*\n\z/
