# mruby_output_header_filter / mruby_output_body_filter and Nginx::Filter
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: header filter changes response headers of a static file
--- config
    location = /index.html {
        mruby_output_header_filter_code '
            h = Nginx::Headers_out.new
            h["X-Filtered"] = "yes"
            h["Server"] = "filtered"
        ';
    }
--- request
GET /index.html
--- response_headers
X-Filtered: yes
Server: filtered
--- response_body_like chomp
It works!


=== TEST 2: header filter from a file
--- config
    location = /t {
        mruby_output_header_filter $TEST_NGINX_HTML_DIR/hf.rb;
        return 200 "body\n";
    }
--- user_files
>>> hf.rb
Nginx::Headers_out.new["X-From-File"] = Nginx::Request.new.uri
--- request
GET /t
--- response_headers
X-From-File: /t
--- response_body
body


=== TEST 3: body filter rewrites a static file; Content-Length follows the new body
--- config
    location = /index.html {
        mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = f.body.upcase';
    }
--- request
GET /index.html
--- response_headers
Content-Length: 72
--- response_body chomp
<HTML><HEAD><TITLE>IT WORKS!</TITLE></HEAD><BODY>IT WORKS!</BODY></HTML>


=== TEST 4: body filter on a chunked upstream response split over many buffers
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            # SSI drops Content-Length: the response goes out chunked
            ssi on;
            ssi_types *;
            mruby_content_handler_code '
                200.times { |i| Nginx.rputs "chunk#{i};" }
            ';
        }
    }
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/;
        proxy_buffer_size 1k;
        proxy_buffers 8 1k;
        proxy_busy_buffers_size 2k;
        mruby_output_body_filter_code '
            f = Nginx::Filter.new
            parts = f.body.split(";")
            f.output "#{parts.size} parts, first=#{parts.first}, last=#{parts.last}"
        ';
    }
--- request
GET /t
--- response_body chomp
200 parts, first=chunk0, last=chunk199
--- no_error_log
[error]


=== TEST 5: body filter over a body written by a Ruby content handler, from a file script
--- config
    location = /t {
        mruby_content_handler_code 'Nginx.rputs "hello"; Nginx.rputs " world"';
        mruby_output_body_filter $TEST_NGINX_HTML_DIR/bf.rb;
    }
--- user_files
>>> bf.rb
f = Nginx::Filter.new
f.body = "[" + f.body.reverse + "]"
--- request
GET /t
--- response_body chomp
[dlrow olleh]


=== TEST 6: body filter that leaves the body alone
--- config
    location = /t {
        return 200 "unchanged\n";
        mruby_output_body_filter_code 'Nginx::Filter.new.body';
    }
--- request
GET /t
--- response_body
unchanged


=== TEST 7: header and body filter together
--- config
    location = /t {
        return 200 "abc";
        mruby_output_header_filter_code 'Nginx::Headers_out.new["X-Len-Before"] = Nginx::Var.new.sent_http_content_length.to_s';
        mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = f.body * 3';
    }
--- request
GET /t
--- response_headers
Content-Length: 9
--- response_body chomp
abcabcabc


=== TEST 8: an exception in a body filter gives a 500 page, logged once
--- config
    location = /t {
        return 200 "data";
        mruby_output_body_filter_code 'raise "filter broke"';
    }
--- request
GET /t
--- error_code: 500
--- error_log
mruby_output_body_filter: mruby_output_body_filter_code@
filter broke (RuntimeError)


=== TEST 9: Nginx::Filter outside a body filter raises
--- config
    location = /t {
        mruby_content_handler_code '
            begin
              Nginx::Filter.new.body
            rescue RuntimeError => e
              Nginx.rputs e.message
            end
        ';
    }
--- request
GET /t
--- response_body chomp
Nginx::Filter is only available in mruby_output_body_filter


=== TEST 10: HEAD requests pass through the body filter untouched
--- config
    location = /t {
        return 200 "head body";
        mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = "changed"';
    }
--- request
HEAD /t
--- response_headers
Content-Length: 9
--- response_body:


=== TEST 11: SSI subrequests go through the body filter of their location
--- config
    location = /main {
        ssi on;
        default_type text/html;
        return 200 'A<!--# include virtual="/part" -->C';
    }
    location = /part {
        return 200 "b";
        mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = f.body.upcase';
    }
--- request
GET /main
--- response_body chomp
ABC


=== TEST 12: header and body filters over a Ruby content handler
--- config
    location = /t {
        mruby_content_handler_code 'Nginx.rputs "the quick brown fox"';
        mruby_output_header_filter_code 'Nginx::Headers_out.new["X-Filtered"] = "yes"; Nginx.rputs "ignored"';
        mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = f.body.upcase';
    }
--- request
GET /t
--- response_headers
X-Filtered: yes
Content-Length: 19
--- response_body chomp
THE QUICK BROWN FOX


=== TEST 13: a header filter that raises turns the response into a 500 (the header is not sent yet), with one error line naming script:line
--- config
    location = /static {
        return 200 "static body\n";
        mruby_output_header_filter $TEST_NGINX_HTML_DIR/hf.rb;
    }
    location = /ruby {
        mruby_content_handler_code 'Nginx.rputs "ruby body"';
        mruby_output_header_filter $TEST_NGINX_HTML_DIR/hf.rb;
    }
    location = /explicit {
        mruby_content_handler_code 'Nginx.send_header 200; Nginx.rputs "after send_header"';
        mruby_output_header_filter $TEST_NGINX_HTML_DIR/hf.rb;
    }
    location = /both {
        mruby_content_handler_code 'Nginx.rputs "both body"';
        mruby_output_header_filter $TEST_NGINX_HTML_DIR/hf.rb;
        mruby_output_body_filter_code 'Nginx::Filter.new.body = "replaced"';
    }
    location = /proxied {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/fine;
        mruby_output_header_filter $TEST_NGINX_HTML_DIR/hf.rb;
    }
    location = /fine {
        mruby_content_handler_code 'Nginx.rputs "fine"';
    }
--- user_files
>>> hf.rb
Nginx::Headers_out.new["X-Before"] = "set"
raise "header filter broke"
--- request eval
["GET /static", "GET /ruby", "GET /explicit", "GET /both", "GET /proxied", "GET /fine"]
--- error_code eval
[500, 500, 500, 500, 500, 200]
--- response_headers eval
["!X-Before", "!X-Before", "!X-Before", "!X-Before", "!X-Before", "!X-Before"]
--- response_body_like eval
[qr/500 Internal Server Error/, qr/500 Internal Server Error/, qr/500 Internal Server Error/, qr/500 Internal Server Error/, qr/500 Internal Server Error/, qr/^fine$/]
--- grep_error_log eval
qr/\[error\].*header filter broke.*/
--- grep_error_log_out eval
[qr/^(?:[^\n]*mruby_output_header_filter: \S+hf\.rb:2: header filter broke \(RuntimeError\)[^\n]*\n){5}$/]
--- no_error_log
[alert]
[crit]
exited on signal
