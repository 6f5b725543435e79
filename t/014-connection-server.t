# Nginx::Connection and Nginx::Server
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: connection addresses and ports are Strings
--- config
    location = /t {
        mruby_content_handler_code '
            c = Nginx::Connection.new
            Nginx.echo c.remote_ip
            Nginx.echo c.local_ip
            Nginx.echo(c.local_port == Nginx::Var.new.server_port)
            Nginx.echo(c.remote_port.to_i > 0 ? "port" : "no")
            Nginx.echo c.remote_port.class
        ';
    }
--- request
GET /t
--- response_body
127.0.0.1
127.0.0.1
true
port
String


=== TEST 2: server document_root, path and realpath_root
--- config
    location = /t {
        root $TEST_NGINX_HTML_DIR;
        mruby_content_handler_code '
            s = Nginx::Server.new
            Nginx.echo s.document_root == Nginx::Var.new.document_root
            Nginx.echo s.document_root.end_with?("/html")
            Nginx.echo s.path == s.realpath_root
            Nginx.echo File.exist?(s.realpath_root + "/index.html")
        ';
    }
--- request
GET /t
--- response_body
true
true
true
true
