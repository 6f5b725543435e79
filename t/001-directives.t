# Every directive: contexts, inheritance, file and inline forms, nginx -t errors.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: mruby_init_code runs at load; its global reaches requests
--- http_config
    mruby_init_code '$boot = "booted in master"';
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs $boot'; }
--- request
GET /t
--- response_body chomp
booted in master
--- no_error_log
[error]


=== TEST 2: mruby_init file with cache defines classes for handlers
--- http_config
    mruby_init $TEST_NGINX_HTML_DIR/init.rb cache;
--- user_files
>>> init.rb
module Greeter
  def self.hi(name) "hi #{name}" end
end
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs Greeter.hi("bob")'; }
--- request
GET /t
--- response_body chomp
hi bob
--- no_error_log
[error]


=== TEST 3: mruby_init_worker_code and mruby_init_worker run in the worker
--- http_config
    mruby_init_worker_code '$worker_pid = Nginx::Request; $from_worker = "worker-inline"';
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs $from_worker'; }
--- request
GET /t
--- response_body chomp
worker-inline
--- no_error_log
[error]


=== TEST 4: mruby_init_worker file
--- http_config
    mruby_init_worker $TEST_NGINX_HTML_DIR/worker.rb;
--- user_files
>>> worker.rb
Userdata.new("boot").value = "worker-file"
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs Userdata.new("boot").value'; }
--- request
GET /t
--- response_body chomp
worker-file
--- no_error_log
[error]


=== TEST 5: mruby_exit_worker_code runs when the worker exits (seen by the next server)
--- http_config
    mruby_exit_worker_code 'File.open("/tmp/ngx_mruby_rs_exit_worker.txt", "w") { |f| f.write "exited #{$$}" }';
    mruby_init_code 'File.delete("/tmp/ngx_mruby_rs_exit_worker.txt") if File.exist?("/tmp/ngx_mruby_rs_exit_worker.txt")';
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs "running"'; }
--- request
GET /t
--- response_body chomp
running


=== TEST 6: the previous server's exit_worker hook wrote its file
--- http_config
    mruby_exit_worker $TEST_NGINX_HTML_DIR/exit.rb;
--- user_files
>>> exit.rb
Nginx.log Nginx::LOG_NOTICE, "exit hook ran"
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs File.read("/tmp/ngx_mruby_rs_exit_worker.txt")[0, 6]'; }
--- request
GET /t
--- response_body chomp
exited


=== TEST 7: post_read handler at server level (inline and file)
--- config
    mruby_post_read_handler_code 'Nginx::Request.new.headers_in["X-Post-Read"] = "inline"';
    mruby_post_read_handler $TEST_NGINX_HTML_DIR/post_read.rb;
    location = /t {
        mruby_content_handler_code 'h = Nginx::Request.new.headers_in; Nginx.rputs "#{h["X-Post-Read"]} #{h["X-Post-Read-File"]}"';
    }
--- user_files
>>> post_read.rb
Nginx::Request.new.headers_in["X-Post-Read-File"] = "file"
--- request
GET /t
--- response_body chomp
inline file
--- no_error_log
[error]


=== TEST 8: server_rewrite handler runs before the location is chosen
--- config
    mruby_server_rewrite_handler_code 'r = Nginx::Request.new; r.uri = "/rewritten" if r.uri == "/orig"';
    location = /rewritten { mruby_content_handler_code 'Nginx.rputs "landed on rewritten"'; }
    location = /orig { return 200 "not rewritten"; }
--- request
GET /orig
--- response_body chomp
landed on rewritten
--- no_error_log
[error]


=== TEST 9: server_rewrite handler from a file
--- config
    mruby_server_rewrite_handler $TEST_NGINX_HTML_DIR/srw.rb;
    location = /t { mruby_content_handler_code 'Nginx.rputs $srw'; }
--- user_files
>>> srw.rb
$srw = "server rewrite file"
--- request
GET /t
--- response_body chomp
server rewrite file


=== TEST 10: rewrite handler (inline) can return a status
--- config
    location = /t {
        mruby_rewrite_handler_code 'Nginx.return Nginx::HTTP_NOT_FOUND if Nginx::Request.new.args == "deny"';
        return 200 "passed rewrite\n";
    }
--- request eval
["GET /t", "GET /t?deny"]
--- error_code eval
[200, 404]
--- response_body_like eval
["passed rewrite", "404 Not Found"]


=== TEST 11: rewrite handler from a file
--- config
    location = /t {
        mruby_rewrite_handler $TEST_NGINX_HTML_DIR/rw.rb;
        mruby_content_handler_code 'Nginx.rputs $rw';
    }
--- user_files
>>> rw.rb
$rw = "rewrite file"
--- request
GET /t
--- response_body chomp
rewrite file


=== TEST 12: access handler denies and allows
--- config
    location = /t {
        mruby_access_handler_code 'Nginx.return Nginx::HTTP_FORBIDDEN unless Nginx::Request.new.headers_in["X-Key"] == "ok"';
        mruby_content_handler_code 'Nginx.rputs "allowed"';
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["X-Key: ok", "X-Key: no"]
--- error_code eval
[200, 403]
--- response_body_like eval
["^allowed\$", "403 Forbidden"]


=== TEST 13: access handler from a file
--- config
    location = /t {
        mruby_access_handler $TEST_NGINX_HTML_DIR/access.rb;
        mruby_content_handler_code 'Nginx.rputs "unreachable"';
    }
--- user_files
>>> access.rb
Nginx.return Nginx::HTTP_UNAUTHORIZED
--- request
GET /t
--- error_code: 401


=== TEST 14: content handler from a file, with and without cache
--- config
    location = /a { mruby_content_handler $TEST_NGINX_HTML_DIR/c.rb; }
    location = /b { mruby_content_handler $TEST_NGINX_HTML_DIR/c.rb cache; }
--- user_files
>>> c.rb
Nginx.rputs "content file #{Nginx::Request.new.uri}"
--- request eval
["GET /a", "GET /b"]
--- response_body eval
["content file /a", "content file /b"]


=== TEST 15: log handler (inline) runs after the response
--- config
    location = /t {
        mruby_content_handler_code 'Nginx.rputs "body"';
        mruby_log_handler_code 'Nginx.log Nginx::LOG_ERR, "log phase saw status #{Nginx::Var.new.status}"';
    }
--- request
GET /t
--- response_body chomp
body
--- error_log
log phase saw status 200


=== TEST 16: log handler from a file
--- config
    location = /t {
        return 204;
        mruby_log_handler $TEST_NGINX_HTML_DIR/log.rb;
    }
--- user_files
>>> log.rb
Nginx.log Nginx::LOG_WARN, "file log handler for #{Nginx::Request.new.uri}"
--- request
GET /t
--- error_code: 204
--- error_log
file log handler for /t


=== TEST 17: handlers at every phase run in phase order in one request
--- config
    mruby_post_read_handler_code '$order = ["post_read"]';
    mruby_server_rewrite_handler_code '$order << "server_rewrite"';
    location = /t {
        mruby_rewrite_handler_code '$order << "rewrite"';
        mruby_access_handler_code '$order << "access"';
        mruby_content_handler_code '$order << "content"; Nginx.rputs $order.join(",")';
        mruby_log_handler_code '$order << "log"; Nginx.log Nginx::LOG_ERR, "order: #{$order.join(",")}"';
    }
--- request
GET /t
--- response_body chomp
post_read,server_rewrite,rewrite,access,content
--- error_log
order: post_read,server_rewrite,rewrite,access,content,log


=== TEST 18: inline code runs before the file handler of the same phase
--- config
    location = /t {
        mruby_rewrite_handler $TEST_NGINX_HTML_DIR/second.rb;
        mruby_rewrite_handler_code '$seq = "inline"';
        mruby_content_handler_code 'Nginx.rputs $seq';
    }
--- user_files
>>> second.rb
$seq << ",file"
--- request
GET /t
--- response_body chomp
inline,file


=== TEST 19: handlers are inherited from server to location unless overridden
--- config
    mruby_content_handler_code 'Nginx.rputs "server level #{Nginx::Request.new.uri}"';
    location = /inherits { }
    location = /own { mruby_content_handler_code 'Nginx.rputs "own"'; }
--- request eval
["GET /inherits", "GET /own"]
--- response_body eval
["server level /inherits", "own"]


=== TEST 20: handler inside if-in-location
--- config
    location = /t {
        if ($arg_x) {
            mruby_content_handler_code 'Nginx.rputs "in if"';
        }
        mruby_content_handler_code 'Nginx.rputs "outside if"';
    }
--- request eval
["GET /t?x=1", "GET /t"]
--- response_body eval
["in if", "outside if"]


=== TEST 21: mruby_set_code value reaches return and add_header
--- config
    location = /t {
        set $name "world";
        mruby_set_code $greeting '"hello " + Nginx::Var.new.name';
        add_header X-Greeting $greeting;
        return 200 "$greeting\n";
    }
--- request
GET /t
--- response_headers
X-Greeting: hello world
--- response_body
hello world
--- no_error_log
[error]


=== TEST 22: mruby_set from a file (with cache), nil gives an empty value
--- config
    location = /t {
        mruby_set $upper $TEST_NGINX_HTML_DIR/set.rb cache;
        mruby_set_code $empty 'nil';
        return 200 "[$upper][$empty]\n";
    }
--- user_files
>>> set.rb
Nginx::Request.new.args.upcase
--- request
GET /t?abc
--- response_body
[ABC][]


=== TEST 23: mruby_set at server level runs in server rewrite
--- config
    mruby_set_code $srv_value '"from server " + Nginx::Request.new.uri';
    location = /t { return 200 "$srv_value\n"; }
--- request
GET /t
--- response_body
from server /t


=== TEST 24: mruby_set runs in config order with set
--- config
    location = /t {
        set $a "1";
        mruby_set_code $b 'Nginx::Var.new.a + "2"';
        set $c "${b}3";
        return 200 "$c\n";
    }
--- request
GET /t
--- response_body
123


=== TEST 25: an exception in mruby_set gives 500 and a log line
--- config
    location = /t {
        mruby_set_code $x 'raise "set failed"';
        return 200 "$x";
    }
--- request
GET /t
--- error_code: 500
--- error_log
mruby_set: mruby_set_code@
set failed (RuntimeError)


=== TEST 26: mruby_cache on keeps the load-time bytecode of file handlers
--- config
    location = /cached {
        mruby_cache on;
        mruby_content_handler $TEST_NGINX_HTML_DIR/v.rb;
    }
    location = /live { mruby_content_handler $TEST_NGINX_HTML_DIR/v.rb; }
    location = /edit {
        mruby_content_handler_code 'File.open(Nginx::Var.new.document_root + "/v.rb", "w") { |f| f.write "Nginx.rputs %q(version two)" }; Nginx.rputs "edited"';
    }
--- user_files
>>> v.rb
Nginx.rputs "v1"
--- request eval
["GET /cached", "GET /live", "GET /edit", "GET /cached", "GET /live"]
--- response_body eval
["v1", "v1", "edited", "v1", "version two"]


=== TEST 27: mruby_add_handler runs the requested .rb file; missing file is 404
--- config
    location ~ \.rb$ {
        mruby_add_handler on;
    }
--- user_files
>>> hello.rb
Nginx.rputs "added handler #{Nginx::Request.new.uri}"
--- request eval
["GET /hello.rb", "GET /missing.rb"]
--- error_code eval
[200, 404]
--- response_body_like eval
["^added handler /hello.rb\$", "404 Not Found"]


=== TEST 28: a syntax error in a file fails nginx -t with file and line
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/broken.rb; }
--- user_files
>>> broken.rb
x = 1
if x
  Nginx.rputs "a"
end end
--- must_die
--- error_log eval
qr{\[emerg\] .*mruby_content_handler failed: \S*/broken\.rb:4: syntax error}


=== TEST 29: a syntax error in inline code fails with the directive and line
--- config
    location = /t {
        mruby_access_handler_code 'if true then';
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*mruby_access_handler_code failed: mruby_access_handler_code\@\S+nginx\.conf:\d+:1: syntax error}


=== TEST 30: a missing script file fails at load
--- config
    location = /t { mruby_content_handler /nonexistent/script.rb; }
--- must_die
--- error_log
mruby_content_handler failed: /nonexistent/script.rb: cannot open


=== TEST 31: an invalid second argument is rejected
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/x.rb nocache; }
--- user_files
>>> x.rb
Nginx.rputs 1
--- must_die
--- error_log
invalid parameter "nocache", valid parameter is only "cache"


=== TEST 32: the same directive twice in one block is rejected
--- config
    location = /t {
        mruby_content_handler_code 'Nginx.rputs 1';
        mruby_content_handler_code 'Nginx.rputs 2';
    }
--- must_die
--- error_log
"mruby_content_handler_code" directive is duplicated


=== TEST 33: mruby_cache takes on|off only
--- config
    location = /t { mruby_cache maybe; }
--- must_die
--- error_log
invalid value "maybe" in "mruby_cache" directive, it must be "on" or "off"


=== TEST 34: the removed mruby_output_filter explains its replacement
--- config
    location = /t { mruby_output_filter /tmp/x.rb; }
--- must_die
--- error_log
mruby_output_filter{,_code} was deleted from v1.17.2


=== TEST 35: mruby_post_read_handler is not allowed in a location
--- config
    location = /t { mruby_post_read_handler_code 'x'; }
--- must_die
--- error_log
"mruby_post_read_handler_code" directive is not allowed here


=== TEST 36: mruby_set needs a $variable
--- config
    location = /t { mruby_set_code novar '1'; }
--- must_die
--- error_log
invalid variable name "novar"


=== TEST 37: mruby_init error fails startup
--- http_config
    mruby_init_code 'raise "init exploded"';
--- config
    location = /t { return 200; }
--- must_die
--- error_log
mruby_init failed: mruby_init_code@


=== TEST 38: a location without Ruby is untouched where other locations use it
--- config
    location = /ruby { mruby_content_handler_code 'Nginx.rputs "ruby"'; }
    location = /plain { return 200 "plain\n"; }
--- request eval
["GET /ruby", "GET /plain"]
--- response_body eval
["ruby", "plain\n"]


=== TEST 39: the to_s of an mruby_set value runs for the request too (it may read it)
--- config
    location = /t {
        mruby_set_code $x '
            value = Object.new
            def value.to_s; "uri=#{Nginx::Request.new.uri}"; end
            value
        ';
        return 200 "$x";
    }
--- request
GET /t
--- response_body chomp
uri=/t
--- no_error_log
[error]
