# Nginx::Utils
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: escape and encode_parameters
--- config
    location = /t {
        mruby_content_handler_code '
            Nginx.echo Nginx::Utils.escape("a b&c=d/é~")
            Nginx.echo Nginx::Utils.encode_parameters({"q" => "x y", "n" => 1})
            Nginx.echo Nginx::Utils.encode_parameters({"a" => "1", "b" => "2"}, ";", %q("))
        ';
    }
--- request
GET /t
--- response_body
a%20b%26c%3Dd%2F%C3%A9~
q=x%20y&n=1
a="1";b="2"
