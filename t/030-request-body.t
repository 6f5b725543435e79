# mruby_enable_read_request_body, Request#read_body/get_body/body/post_args
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a small body in memory
--- config
    location = /t {
        mruby_enable_read_request_body on;
        mruby_content_handler_code '
            r = Nginx::Request.new
            Nginx.echo r.read_body == Nginx::OK
            Nginx.echo r.get_body
            Nginx.echo r.body.size
        ';
    }
--- request
POST /t
hello body
--- response_body
true
hello body
10
--- no_error_log
[error]


=== TEST 2: post_args parses a form body
--- config
    location = /t {
        mruby_enable_read_request_body on;
        mruby_content_handler_code 'a = Nginx::Request.new.post_args; Nginx.rputs "#{a["name"]}|#{a["age"]}"';
    }
--- request
POST /t
name=alice&age=30
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body chomp
alice|30


=== TEST 3: a 2 MB body read from a temp file, in the access phase
--- config
    client_body_buffer_size 16k;
    location = /t {
        mruby_enable_read_request_body on;
        mruby_access_handler_code '
            b = Nginx::Request.new.body
            $summary = "#{b.size} #{b[0, 3]} #{b[-3, 3]} #{b.count("x")}"
        ';
        mruby_content_handler_code 'Nginx.rputs $summary';
    }
--- request eval
"POST /t\n" . "abc" . ("x" x (2 * 1024 * 1024 - 6)) . "xyz"
--- response_body eval
"2097152 abc xyz " . (2 * 1024 * 1024 - 6 + 1)
--- error_log
a client request body is buffered to a temporary file


=== TEST 4: a body arriving after the header (slow client) is waited for
--- config
    location = /t {
        mruby_enable_read_request_body on;
        mruby_rewrite_handler_code '$got = Nginx::Request.new.body';
        mruby_content_handler_code 'Nginx.rputs "got [#{$got}]"';
    }
--- raw_request eval
["POST /t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 11\r\n\r\nhello", " world"]
--- raw_request_middle_delay: 0.3
--- response_body chomp
got [hello world]


=== TEST 5: a slow body in the content phase
--- config
    location = /t {
        mruby_enable_read_request_body on;
        mruby_content_handler_code 'Nginx.rputs "content got [#{Nginx::Request.new.body}]"';
    }
--- raw_request eval
["POST /t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 6\r\n\r\nab", "cdef"]
--- raw_request_middle_delay: 0.3
--- response_body chomp
content got [abcdef]


=== TEST 6: client_max_body_size is respected: 413 before Ruby runs
--- config
    location = /t {
        client_max_body_size 10;
        mruby_enable_read_request_body on;
        mruby_content_handler_code 'Nginx.rputs "ran"';
    }
--- request
POST /t
this body is longer than ten bytes
--- error_code: 413


=== TEST 7: without the directive a POST body is nil; a GET raises like ngx_mruby
--- config
    location = /post { mruby_content_handler_code 'Nginx.rputs Nginx::Request.new.body.inspect'; }
    location = /get {
        mruby_content_handler_code '
            begin
              Nginx::Request.new.body
            rescue RuntimeError => e
              Nginx.rputs e.message
            end
        ';
    }
--- request eval
["POST /post\nabc", "GET /get"]
--- response_body eval
["nil", "ngx_mrb_read_request_body can't read when r->method is neither POST nor PUT"]


=== TEST 8: an empty body
--- config
    location = /t {
        mruby_enable_read_request_body on;
        mruby_content_handler_code 'Nginx.rputs Nginx::Request.new.body.inspect';
    }
--- request
POST /t
--- response_body chomp
""


=== TEST 9: a client that goes away while the body is being read does not crash the worker
--- config
    location = /t {
        mruby_enable_read_request_body on;
        mruby_content_handler_code 'Nginx.rputs "unreachable"';
    }
    location = /alive { mruby_content_handler_code 'Nginx.rputs "alive"'; }
--- raw_request eval
"POST /t HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\npartial"
--- timeout: 0.5
--- abort
--- ignore_response
--- no_error_log
[alert]
