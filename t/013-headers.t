# Nginx::Headers_in / Nginx::Headers_out
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: headers_in lookups: case-insensitive, nil, String, Array for repeats
--- config
    location = /t {
        mruby_content_handler_code '
            h = Nginx::Headers_in.new
            Nginx.echo h["x-one"]
            Nginx.echo h["X-MISSING"].inspect
            Nginx.echo h["X-Multi"].inspect
            Nginx.echo h.user_agent
        ';
    }
--- request
GET /t
--- more_headers
X-One: 1
X-Multi: a
X-Multi: b
User-Agent: test-agent/1.0
--- response_body
1
nil
["a", "b"]
test-agent/1.0


=== TEST 2: headers_in []= replaces, delete removes, and a proxied upstream sees the result
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            mruby_content_handler_code '
                h = Nginx::Headers_in.new
                Nginx.rputs "up: set=#{h["X-Set"].inspect} gone=#{h["X-Gone"].inspect} keep=#{h["X-Keep"]}"
            ';
        }
    }
--- config
    location = /t {
        mruby_rewrite_handler_code '
            h = Nginx::Headers_in.new
            h["X-Set"] = "new value"
            h.delete("X-Gone")
        ';
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- more_headers
X-Set: old value
X-Gone: bye
X-Keep: stays
--- response_body chomp
up: set="new value" gone=nil keep=stays


=== TEST 3: headers_in all
--- config
    location = /t {
        mruby_content_handler_code 'a = Nginx::Headers_in.new.all; Nginx.rputs [a["Host"], a["X-A"], a.class].join(",")';
    }
--- request
GET /t
--- more_headers
X-A: 1
--- response_body chomp
localhost,1,Hash


=== TEST 4: headers_out set, array, overwrite, read back
--- config
    location = /t {
        mruby_content_handler_code '
            h = Nginx::Headers_out.new
            h["X-Single"] = "one"
            h["X-List"] = ["a", "b"]
            h["X-Over"] = "first"
            h["X-Over"] = "second"
            Nginx.rputs [h["x-single"], h["X-List"].inspect, h["X-Over"]].join(" ")
        ';
    }
--- request
GET /t
--- raw_response_headers_like chomp
X-Single: one\r?\nX-List: a\r?\nX-List: b\r?\nX-Over: second
--- response_body chomp
one ["a", "b"] second


=== TEST 5: headers_out delete and nil remove the header
--- config
    location = /t {
        mruby_content_handler_code '
            h = Nginx::Headers_out.new
            h["X-A"] = "a"
            h["X-B"] = "b"
            h.delete("X-A")
            h["X-B"] = nil
            Nginx.rputs [h["X-A"].inspect, h["X-B"].inspect].join(" ")
        ';
    }
--- request
GET /t
--- response_headers
!X-A
!X-B
--- response_body chomp
nil nil


=== TEST 6: Server replaces nginx's own header, Content-Type sets the type
--- config
    location = /t {
        mruby_content_handler_code '
            h = Nginx::Headers_out.new
            h["Server"] = "my-server"
            h["Content-Type"] = "text/x-custom"
            Nginx.rputs h["Content-Type"]
        ';
    }
--- request
GET /t
--- response_headers
Server: my-server
Content-Type: text/x-custom
--- response_body chomp
text/x-custom


=== TEST 7: headers_out all; headers set in access survive into the content response
--- config
    location = /t {
        mruby_access_handler_code 'Nginx::Headers_out.new["X-From-Access"] = "yes"';
        mruby_content_handler_code 'a = Nginx::Headers_out.new.all; Nginx.rputs a["X-From-Access"]';
    }
--- request
GET /t
--- response_headers
X-From-Access: yes
--- response_body chomp
yes


=== TEST 8: headers_out set before an error status stay on the error page
--- config
    location = /t {
        mruby_content_handler_code 'Nginx::Headers_out.new["X-Reason"] = "quota"; Nginx.return 429';
    }
--- request
GET /t
--- error_code: 429
--- response_headers
X-Reason: quota


=== TEST 9: header names as symbols; empty name rejected
--- config
    location = /t {
        mruby_content_handler_code '
            h = Nginx::Headers_out.new
            h[:"X-Sym"] = "s"
            begin; h[""] = "x"; rescue ArgumentError => e; Nginx.echo e.message; end
            Nginx.echo h["X-Sym"]
        ';
    }
--- request
GET /t
--- response_headers
X-Sym: s
--- response_body
header name must not be empty
s
