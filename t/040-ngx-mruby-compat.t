# Idioms from ngx_mruby's documentation, test config and sample scripts,
# run unchanged.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the README hello world and the Server = get_server_class idiom
--- config
    location /mruby {
        mruby_content_handler_code '
            Server = get_server_class
            r = Server::Request.new
            Server.echo "hello ngx_mruby world!"
            Server.echo "uri: #{r.uri}"
        ';
    }
--- request
GET /mruby
--- response_body
hello ngx_mruby world!
uri: /mruby


=== TEST 2: dynamic upstream with mruby_set + proxy_pass (docs use case)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / { return 200 "backend one\n"; }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2;
        location / { return 200 "backend two\n"; }
    }
--- config
    location /proxy {
        set $one 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        set $two 127.0.0.1:$TEST_NGINX_RAND_PORT_2;
        mruby_set $backend $TEST_NGINX_HTML_DIR/upstream.rb;
        proxy_pass http://$backend;
    }
--- user_files
>>> upstream.rb
r = Nginx::Request.new
backends = [r.var.one, r.var.two]
backends[r.var.arg_n.to_i % 2]
--- request eval
["GET /proxy?n=0", "GET /proxy?n=1"]
--- response_body eval
["backend one\n", "backend two\n"]


=== TEST 3: access control with an HTTP status constant (docs use case)
--- config
    location /auth {
        mruby_access_handler_code '
            r = Nginx::Request.new
            if r.headers_in["X-Auth-Key"] != "secret"
              Nginx.return Nginx::HTTP_FORBIDDEN
            end
        ';
        mruby_content_handler_code 'Nginx.echo "authorized"';
    }
--- request eval
["GET /auth", "GET /auth"]
--- more_headers eval
["X-Auth-Key: secret", "X-Auth-Key: wrong"]
--- error_code eval
[200, 403]


=== TEST 4: a server-level handler returning DECLINED lets later phases fall through (ngx_mruby's test config)
--- config
    mruby_server_rewrite_handler_code 'Nginx::Request.new.headers_out["Server"] = "global_ngx_mruby"; Nginx.return Nginx::DECLINED';
    location = /index.html {
        mruby_rewrite_handler_code 'x = 1';
        mruby_content_handler_code 'y = 2';
    }
--- request
GET /index.html
--- response_headers
Server: global_ngx_mruby
--- response_body_like chomp
It works!


=== TEST 5: rputs then Nginx.return HTTP_OK, content_type, headers_out (test config idioms)
--- config
    location /hello {
        mruby_content_handler_code '
            r = Nginx::Request.new
            r.content_type = "text/html"
            r.headers_out["X-Hello"] = "world"
            Nginx.rputs "<h1>hello</h1>"
            Nginx.return Nginx::HTTP_OK
        ';
    }
--- request
GET /hello
--- response_headers
Content-Type: text/html
X-Hello: world
--- response_body chomp
<h1>hello</h1>


=== TEST 6: Nginx::Var assignment of a set variable, read by nginx (test config idiom)
--- config
    location /vartest {
        set $foo "mruby";
        mruby_set_code $bar 'Nginx::Var.new.foo + "-set"';
        mruby_content_handler_code 'v = Nginx::Var.new; Nginx.echo "#{v.foo} #{v.bar}"';
    }
--- request
GET /vartest
--- response_body
mruby mruby-set


=== TEST 7: Userdata passes data from access to content (docs use case)
--- config
    location /userdata {
        mruby_access_handler_code 'u = Userdata.new; u.token = Nginx::Request.new.headers_in["X-Token"]';
        mruby_content_handler_code 'Nginx.echo "token=#{Userdata.new.token}"';
    }
--- request
GET /userdata
--- more_headers
X-Token: abc123
--- response_body
token=abc123


=== TEST 8: Nginx.redirect to an external URL and internal path (docs)
--- config
    location /redirect { mruby_rewrite_handler_code 'Nginx.redirect "http://ngx.mruby.example/"'; }
    location /internal { mruby_rewrite_handler_code 'Nginx.redirect "/hello_internal"'; }
    location /hello_internal { mruby_content_handler_code 'Nginx.echo "internal"'; }
--- request eval
["GET /redirect", "GET /internal"]
--- error_code eval
[302, 200]
--- response_body_like eval
["302 Found", "^internal\$"]


=== TEST 9: the Nginx::Async sample (sleep then echo) and sub_request sample
--- config
    location /async_sleep {
        mruby_rewrite_handler_code '
            Nginx::Async.sleep 100
            Nginx.echo "slept"
        ';
    }
    location /sub {
        mruby_rewrite_handler_code '
            res = Nginx::Async::HTTP.sub_request "/dst", "a=b"
            Nginx.echo res.body
        ';
    }
    location /dst { mruby_content_handler_code 'Nginx.rputs "dst #{Nginx::Request.new.args}"'; }
--- request eval
["GET /async_sleep", "GET /sub"]
--- response_body eval
["slept\n", "dst a=b\n"]
