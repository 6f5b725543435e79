# Which class a request runs in ($resource_class, Nginx::Request#resource_class):
# resource_class_for (static, $variable, off, if), then a script's
# resource_class= before content, which wins over the configuration.
# (Auto-confinement, which wins over both, needs recorded usage: see
# t/resources-usage.t for what is not driven yet.)
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->http_config) {
        $block->set_value('http_config', "    resource_cgroup_root ngx-mruby-test;\n    resource_class slow cpu=10;\n    resource_class fast cpu=100;\n");
    }
});
run_tests();

__DATA__

=== TEST 1: static, variable, off, if, inherited from the server
--- config
    resource_class_for slow;
    location = /inherit { return 200 "[$resource_class]\n"; }
    location = /var { resource_class_for $arg_c; return 200 "[$resource_class]\n"; }
    location = /off { resource_class_for off; return 200 "[$resource_class]\n"; }
    location = /if { resource_class_for off; if ($arg_x) { resource_class_for fast; } return 200 "[$resource_class]\n"; }
--- request eval
["GET /inherit", "GET /var?c=fast", "GET /var?c=", "GET /off", "GET /if", "GET /if?x=1"]
--- response_body eval
["[slow]\n", "[fast]\n", "[]\n", "[]\n", "[]\n", "[fast]\n"]
--- no_error_log
[error]


=== TEST 2: a $variable naming no class: no class, one [warn] with the name
--- config
    location = /var { resource_class_for "x$arg_c"; return 200 "[$resource_class]\n"; }
--- request
GET /var?c=nope
--- response_body
[]
--- error_log
resource_class_for: unknown class "xnope", the request runs without a class


=== TEST 3: a script before content chooses the class; it wins over resource_class_for; "" and nil mean none
--- config
    resource_class_for slow;
    location = /t {
        mruby_rewrite_handler_code '
            r = Nginx::Request.new
            r.resource_class = r.var.arg_c == "nil" ? nil : r.var.arg_c.to_s
        ';
        mruby_content_handler_code 'Nginx.echo "[#{Nginx::Request.new.resource_class.inspect}]"';
    }
    location = /none {
        mruby_content_handler_code 'Nginx.echo "[#{Nginx::Request.new.resource_class.inspect}]"';
    }
--- request eval
["GET /t?c=fast", "GET /t?c=", "GET /t?c=nil", "GET /none"]
--- response_body eval
["[\"fast\"]\n", "[nil]\n", "[nil]\n", "[\"slow\"]\n"]
--- no_error_log
[error]


=== TEST 4: access phase choice, seen by the content phase
--- config
    location = /t {
        mruby_access_handler_code 'Nginx::Request.new.resource_class = "fast"';
        mruby_content_handler_code 'Nginx.echo Nginx::Request.new.resource_class';
    }
--- request
GET /t
--- response_body
fast


=== TEST 5: wrong type, unknown class, wrong arity, huge name raise; the request goes on without a class
--- config
    location = /t {
        mruby_rewrite_handler_code '
            r = Nginx::Request.new
            out = []
            [42, :fast, ["fast"], "nope", "x" * 1_000_000].each do |v|
              begin
                r.resource_class = v
                out << "no error"
              rescue TypeError, ArgumentError => e
                out << "#{e.class}: #{e.message}"
              end
            end
            begin; r.send(:resource_class=); rescue ArgumentError => e; out << e.class.to_s; end
            begin; r.send(:resource_class=, "fast", "slow"); rescue ArgumentError => e; out << e.class.to_s; end
            begin; r.resource_class(1); rescue ArgumentError => e; out << e.class.to_s; end
            Nginx.errlogger Nginx::LOG_NOTICE, "errors: " + out.join("|")
        ';
        mruby_content_handler_code 'Nginx.echo Nginx::Request.new.resource_class.inspect';
    }
--- request
GET /t
--- response_body
nil
--- error_log
errors: TypeError: resource class must be a String, not Integer|TypeError: resource class must be a String, not Symbol|TypeError: resource class must be a String, not Array|ArgumentError: unknown resource class "nope" (no resource_class declares it)|ArgumentError: resource class name is 1000000 bytes long, at most 32|ArgumentError|ArgumentError|ArgumentError


=== TEST 6: from content, a filter or the log phase it raises (the class is applied before content)
--- config
    location = /t {
        mruby_content_handler_code '
            begin
              Nginx::Request.new.resource_class = "fast"
              Nginx.echo "no error"
            rescue RuntimeError => e
              Nginx.echo e.message
            end
        ';
        mruby_log_handler_code '
            begin
              Nginx::Request.new.resource_class = "fast"
            rescue RuntimeError => e
              Nginx.errlogger Nginx::LOG_NOTICE, "log phase: #{e.message}"
            end
        ';
    }
--- request
GET /t
--- response_body
resource_class= is not allowed in mruby_content_handler (only before content: the class applies when the request is passed on)
--- error_log
log phase: resource_class= is not allowed in mruby_log_handler


=== TEST 7: from mruby_init there is no request: RuntimeError
--- http_config
    resource_cgroup_root ngx-mruby-test;
    resource_class slow cpu=10;
    mruby_init_code '
        begin
          Nginx::Request.new.resource_class = "slow"
        rescue => e
          Nginx.errlogger Nginx::LOG_NOTICE, "init: #{e.class}"
        end
    ';
--- config
    location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- error_log
init: RuntimeError


=== TEST 8: without any class, $resource_class is empty and the setter raises for a name
--- http_config
--- config
    location = /t {
        mruby_rewrite_handler_code '
            begin; Nginx::Request.new.resource_class = "slow"; rescue ArgumentError => e; Nginx.errlogger Nginx::LOG_NOTICE, "no class: #{e.message}"; end
        ';
        mruby_content_handler_code 'Nginx.echo "[#{Nginx::Request.new.var.resource_class}]"';
    }
--- request
GET /t
--- response_body
[]
--- error_log
no class: unknown resource class "slow" (no resource_class declares it)


=== TEST 9: interleaved requests on one worker keep their own class (one waits in access while the other runs)
--- config
    resource_class_for slow;
    location = /t {
        mruby_access_handler_code '
            r = Nginx::Request.new
            r.resource_class = r.args == "first" ? "fast" : ""
            Nginx::Async.sleep(r.args == "first" ? 300 : 50)
        ';
        mruby_content_handler_code 'r = Nginx::Request.new; Nginx.rputs "#{r.args} runs in #{r.resource_class.inspect} [#{r.var.resource_class}]"';
    }
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my $first = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $first "GET /t?first HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
select(undef, undef, undef, 0.05);
my $second = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $second "GET /t?second HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
my $second_resp = do { local $/; <$second> };
my $first_resp = do { local $/; <$first> };
Test::More::like($second_resp, qr/second runs in nil \[\]\z/, "the second request chose no class while the first waited");
Test::More::like($first_resp, qr/first runs in "fast" \[fast\]\z/, "the first request keeps its class across the other's");
--- request
GET /t?third
--- response_body chomp
third runs in nil []
