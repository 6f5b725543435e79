# Nginx::Var: nginx variables from Ruby.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: reading built-in variables by method name; unknown is nil
--- config
    location = /t {
        mruby_content_handler_code '
            v = Nginx::Var.new
            Nginx.echo v.request_method
            Nginx.echo v.arg_x
            Nginx.echo v.http_x_test
            Nginx.echo v.uri
            Nginx.echo v.no_such_variable.inspect
        ';
    }
--- request
GET /t?x=42
--- more_headers
X-Test: header value
--- response_body
GET
42
header value
/t
nil


=== TEST 2: assigning a variable defined by set, read back by nginx
--- config
    set $color "red";
    location = /t {
        mruby_rewrite_handler_code 'v = Nginx::Var.new; v.color = "blue"';
        return 200 "color=$color\n";
    }
--- request
GET /t
--- response_body
color=blue


=== TEST 3: set(name, value) and exist?
--- config
    location = /t {
        set $shape "";
        mruby_content_handler_code '
            v = Nginx::Var.new
            r = v.set("shape", 7)
            Nginx.echo [r, v.shape, v.exist?("shape"), v.exist?("nothing_here"), v.exist?(:uri)].inspect
        ';
    }
--- request
GET /t
--- response_body
["7", "7", true, false, true]


=== TEST 4: assigning a read-only or unknown variable returns nil and logs, without raising
--- config
    location = /t {
        mruby_content_handler_code '
            v = Nginx::Var.new
            Nginx.echo v.set("uri", "/x").inspect
            Nginx.echo v.send(:not_defined_anywhere=, "y").inspect
        ';
    }
--- request
GET /t
--- response_body
nil
nil
--- error_log
Nginx::Var: uri is not changeable
Nginx::Var: not_defined_anywhere is not found


=== TEST 5: a Ruby rewrite handler runs before the location's rewrite directives (ngx_mruby order)
--- config
    set $stage "none";
    location = /t {
        mruby_set_code $out 'Nginx::Var.new.stage + "!"';
        mruby_rewrite_handler_code 'Nginx::Var.new.stage = "rewritten"';
        mruby_content_handler_code 'v = Nginx::Var.new; Nginx.rputs "#{v.stage} #{v.out}"';
    }
--- request
GET /t
--- response_body chomp
rewritten rewritten!
