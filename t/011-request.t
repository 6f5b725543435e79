# Nginx::Request: the request line, URI, args, method, protocol, helpers.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: readers
--- config
    location = /path {
        mruby_content_handler_code '
            r = Nginx::Request.new
            Nginx.echo r.uri
            Nginx.echo r.args
            Nginx.echo r.method
            Nginx.echo r.unparsed_uri
            Nginx.echo r.request_line
            Nginx.echo r.protocol
            Nginx.echo r.hostname
            Nginx.echo r.authority
            Nginx.echo r.scheme
            Nginx.echo r.sub_request?
        ';
    }
--- request
GET /path?a=1&b=two
--- more_headers
Host: Example.COM:8000
--- response_body
/path
a=1&b=two
GET
/path?a=1&b=two
GET /path?a=1&b=two HTTP/1.1
HTTP/1.1
example.com
Example.COM:8000
http
false


=== TEST 2: writers: uri=, args=, method=, unparsed_uri=, request_line=, protocol=
--- config
    location = /t {
        mruby_rewrite_handler_code '
            r = Nginx::Request.new
            r.args = "x=1"
            r.method = "POST"
            r.unparsed_uri = "/changed?x=1"
            r.request_line = "POST /changed?x=1 HTTP/1.1"
            r.protocol = "HTTP/1.0"
            r.uri = "/changed"
            r.uri = nil
        ';
        mruby_content_handler_code '
            r = Nginx::Request.new
            Nginx.rputs [r.uri, r.args, r.method, r.unparsed_uri, r.request_line, r.protocol].join("|")
        ';
    }
--- request
GET /t
--- response_body chomp
/changed|x=1|POST|/changed?x=1|POST /changed?x=1 HTTP/1.1|HTTP/1.0


=== TEST 3: content_type reader and writer; without one, default_type applies
--- config
    location = /typed { mruby_content_handler_code 'r = Nginx::Request.new; r.content_type = "application/json"; Nginx.rputs r.content_type'; }
    location = /untyped { mruby_content_handler_code 'Nginx.rputs "[" + Nginx::Request.new.content_type + "]"'; }
--- request eval
["GET /typed", "GET /untyped"]
--- response_headers eval
["Content-Type: application/json", "Content-Type: text/plain"]
--- response_body eval
["application/json", "[]"]


=== TEST 4: var, headers_in and headers_out are cached objects of the right class
--- config
    location = /t {
        mruby_content_handler_code '
            r = Nginx::Request.new
            Nginx.rputs [r.var.class, r.headers_in.class, r.headers_out.class, r.var.equal?(r.var)].join(" ")
        ';
    }
--- request
GET /t
--- response_body chomp
Nginx::Var Nginx::Headers_in Nginx::Headers_out true


=== TEST 5: filename, document_root, user
--- config
    location = /index.html {
        mruby_content_handler_code '
            r = Nginx::Request.new
            Nginx.rputs [r.filename.end_with?("/html/index.html"), r.document_root.end_with?("/html"), r.user.inspect].join(" ")
        ';
    }
--- request
GET /index.html
--- more_headers
Authorization: Basic dXNlcjE6cGFzcw==
--- response_body chomp
true true "user1"


=== TEST 6: uri_args parses the query; uri_args= writes it
--- config
    location = /t {
        mruby_content_handler_code '
            r = Nginx::Request.new
            a = r.uri_args
            Nginx.echo a.keys.sort.join(",")
            Nginx.echo [a["a"], a["b"], a["empty"].inspect, a["flag"].inspect].join(",")
            r.uri_args = {"x" => "1", "y" => "2"}
            Nginx.echo r.args
            begin; r.uri_args = "nope"; rescue ArgumentError; Nginx.echo "ArgumentError"; end
        ';
    }
--- request
GET /t?a=1&b=2&empty=&flag
--- response_body
a,b,empty,flag
1,2,"",nil
x=1&y=2
ArgumentError


=== TEST 7: sub_request? is false for the main request, true in a subrequest
--- config
    location = /main { ssi on; default_type text/html; mruby_content_handler_code 'Nginx.rputs "main:#{Nginx::Request.new.sub_request?} " + %q(<!--# include virtual="/sub" -->)'; }
    location = /sub { mruby_content_handler_code 'Nginx.rputs "sub:#{Nginx::Request.new.sub_request?}"'; }
--- request
GET /main
--- response_body chomp
main:false sub:true


=== TEST 8: Request methods outside a request raise RuntimeError
--- http_config
    mruby_init_code '
        begin
          Nginx::Request.new.uri
          $init_result = "no error"
        rescue RuntimeError => e
          $init_result = e.message
        end
    ';
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs $init_result'; }
--- request
GET /t
--- response_body chomp
can't use this method at this phase. only use at request phase
