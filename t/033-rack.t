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
