# Nginx::Async.sleep and Nginx::Async::HTTP.sub_request: the script waits
# in a Fiber while the worker serves other requests.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use Time::HiRes qw(time);
use IO::Socket::INET;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: sleep in a content handler
--- config
    location = /t {
        mruby_content_handler_code '
            t0 = Time.now
            Nginx::Async.sleep 200
            Nginx.rputs "slept #{((Time.now - t0) * 1000).to_i >= 190}"
        ';
    }
--- request
GET /t
--- response_body chomp
slept true
--- no_error_log
[error]


=== TEST 2: several sleeps in one script, in rewrite and access too
--- config
    location = /t {
        mruby_rewrite_handler_code 'Nginx::Async.sleep 50; $steps = ["rewrite"]';
        mruby_access_handler_code 'Nginx::Async.sleep 50; $steps << "access"; Nginx::Async.sleep 20; $steps << "access2"';
        mruby_content_handler_code '3.times { |i| Nginx::Async.sleep 10; $steps << "c#{i}" }; Nginx.rputs $steps.join(",")';
    }
--- request
GET /t
--- response_body chomp
rewrite,access,access2,c0,c1,c2
--- no_error_log
[error]


=== TEST 3: while one request sleeps 500 ms the single worker answers another at once
--- config
    location = /slow {
        mruby_content_handler_code 'Nginx::Async.sleep 500; Nginx.rputs "slow done"';
    }
    location = /fast { mruby_content_handler_code 'Nginx.rputs "fast"'; }
--- init
# send /slow without waiting, then time /fast on a second connection
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my $slow = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $slow "GET /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
my $t0 = time;
my $fast = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $fast "GET /fast HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
my $fast_resp = do { local $/; <$fast> };
my $fast_elapsed = time - $t0;
my $slow_resp = do { local $/; <$slow> };
my $slow_elapsed = time - $t0;
Test::More::like($fast_resp, qr/\r\n\r\nfast\z/, "the fast request is answered");
Test::More::cmp_ok($fast_elapsed, '<', 0.3, "... at once, while the slow one sleeps");
Test::More::like($slow_resp, qr/slow done\z/, "the slow request completes");
Test::More::cmp_ok($slow_elapsed, '>=', 0.45, "... after its 500 ms sleep");
--- request
GET /fast
--- response_body chomp
fast


=== TEST 4: sub_request in a content handler (ngx_mruby #501)
--- config
    location = /t {
        mruby_content_handler_code '
            res = Nginx::Async::HTTP.sub_request "/backend", "a=1&b=2"
            Nginx.rputs "#{res.status} #{res.headers["X-Backend"]} [#{res.body}]"
        ';
    }
    location = /backend {
        mruby_content_handler_code '
            Nginx::Headers_out.new["X-Backend"] = "yes"
            Nginx.rputs "backend args=#{Nginx::Request.new.args}"
        ';
    }
--- request
GET /t
--- response_body chomp
200 yes [backend args=a=1&b=2]
--- no_error_log
[error]


=== TEST 5: sub_request with a Hash query, in rewrite and access handlers, and last_response
--- config
    location = /t {
        mruby_rewrite_handler_code '$r1 = Nginx::Async::HTTP.sub_request("/echo", {"x" => "a b"}).body';
        mruby_access_handler_code '
            Nginx::Async::HTTP.sub_request "/missing"
            $r2 = Nginx::Async::HTTP.last_response.status
        ';
        mruby_content_handler_code 'Nginx.rputs "#{$r1} #{$r2}"';
    }
    location = /echo { mruby_content_handler_code 'Nginx.rputs Nginx::Request.new.args'; }
    location = /missing { return 404; }
--- request
GET /t
--- response_body chomp
x=a%20b 404


=== TEST 6: a fan-out of several subrequests and sleeps
--- config
    location = /t {
        mruby_content_handler_code '
            parts = (1..5).map { |i| Nginx::Async::HTTP.sub_request("/part", "n=#{i}").body }
            Nginx::Async.sleep 10
            Nginx.rputs parts.join(",")
        ';
    }
    location = /part { mruby_content_handler_code 'Nginx.rputs((Nginx::Request.new.args.split("=")[1].to_i * 10).to_s)'; }
--- request
GET /t
--- response_body chomp
10,20,30,40,50


=== TEST 7: sleep rejects a non-positive time; Async where waiting is impossible raises
--- config
    location = /t {
        mruby_content_handler_code '
            begin
              Nginx::Async.sleep 0
            rescue ArgumentError => e
              Nginx.rputs e.message
            end
        ';
    }
    location = /filter {
        return 200 "body";
        mruby_output_body_filter_code 'Nginx::Async.sleep 10; Nginx::Filter.new.body = "x"';
    }
--- request eval
["GET /t", "GET /filter"]
--- error_code eval
[200, 500]
--- response_body_like eval
["sleep time must be a positive number of milliseconds", "500"]
--- error_log
Nginx::Async can only wait in


=== TEST 8: an exception after a sleep gives 500 and the usual log line
--- config
    location = /t {
        mruby_content_handler_code 'Nginx::Async.sleep 20; raise "after sleep"';
    }
--- request
GET /t
--- error_code: 500
--- error_log
after sleep (RuntimeError)


=== TEST 9: a client that disconnects while the script sleeps does not crash the worker
--- config
    location = /sleepy { mruby_content_handler_code 'Nginx::Async.sleep 300; Nginx.rputs "late"'; }
    location = /pid { mruby_content_handler_code 'Nginx.rputs Nginx::Var.new.pid'; }
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $s "GET /sleepy HTTP/1.1\r\nHost: localhost\r\n\r\n";
select(undef, undef, undef, 0.05);
close $s;
select(undef, undef, undef, 0.4);
--- request
GET /pid
--- response_body_like: ^\d+$
--- no_error_log
[alert]
[crit]


=== TEST 10: interleaved waiting requests keep their own globals
--- config
    location = /t {
        mruby_access_handler_code '$who = Nginx::Request.new.args; Nginx::Async.sleep(Nginx::Request.new.args == "first" ? 300 : 50)';
        mruby_content_handler_code 'Nginx.rputs "#{Nginx::Request.new.args} sees #{$who}"';
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
Test::More::like($second_resp, qr/second sees second\z/, "the second request keeps its global");
Test::More::like($first_resp, qr/first sees first\z/, "the first request keeps its global across the other's end");
--- request
GET /t?third
--- response_body chomp
third sees third


=== TEST 11: a subrequest that ends in nginx's error page gives its status and an empty body (as ngx_mruby)
--- config
    location = /t {
        mruby_content_handler_code '
            res = Nginx::Async::HTTP.sub_request "/files/missing.html"
            same = Nginx::Async::HTTP.last_response
            Nginx.rputs "#{res.status} [#{res.body}] #{res.headers.size} #{same.status} #{same.body.size}"
        ';
    }
    location = /custom {
        mruby_content_handler_code '
            res = Nginx::Async::HTTP.sub_request "/custom404"
            Nginx.rputs "#{res.status} [#{res.body}]"
        ';
    }
    location = /custom404 { mruby_content_handler_code 'Nginx.rputs "own page"; Nginx.return 404'; }
    location /files/ { root html; }
--- request eval
["GET /t", "GET /custom"]
--- response_body eval
["404 [] 0 404 0", "404 [own page]"]


=== TEST 12: a rewrite handler writing an error subrequest's body writes nothing and the request goes on to its 404
--- config
    location /files/ {
        root html;
        mruby_rewrite_handler_code '
            if Nginx::Request.new.uri == "/files/page.html"
              Nginx.rputs Nginx::Async::HTTP.sub_request("/files/gone.html").body
            end
        ';
    }
--- request
GET /files/page.html
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log
files/page.html" failed (2: No such file or directory)


=== TEST 13: Nginx::Async.sleep in mruby_set_code chooses the proxy_pass backend after waiting
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / { return 200 "backend says hi\n"; }
    }
--- config
    location = /t {
        mruby_set_code $backend '
            t0 = Time.now
            Nginx::Async.sleep 200
            Nginx.log Nginx::LOG_NOTICE, "set waited #{((Time.now - t0) * 1000).to_i >= 190}"
            "127.0.0.1:$TEST_NGINX_RAND_PORT_1"
        ';
        proxy_pass http://$backend;
    }
--- request
GET /t
--- response_body
backend says hi
--- error_log
set waited true
--- no_error_log
[error]


=== TEST 14: while mruby_set sleeps 500 ms the single worker answers another request
--- config
    location = /slow {
        mruby_set_code $v 'Nginx::Async.sleep 500; "slow done"';
        return 200 "$v";
    }
    location = /fast { return 200 "fast"; }
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my $slow = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $slow "GET /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
my $t0 = time;
select(undef, undef, undef, 0.05);
my $fast = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $fast "GET /fast HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
my $fast_resp = do { local $/; <$fast> };
my $fast_elapsed = time - $t0;
my $slow_resp = do { local $/; <$slow> };
my $slow_elapsed = time - $t0;
Test::More::like($fast_resp, qr/\r\n\r\nfast\z/, "the fast request is answered");
Test::More::cmp_ok($fast_elapsed, '<', 0.3, "... while mruby_set sleeps");
Test::More::like($slow_resp, qr/\r\n\r\nslow done\z/, "the waiting mruby_set gives its value");
Test::More::cmp_ok($slow_elapsed, '>=', 0.45, "... after its 500 ms sleep");
--- request
GET /fast
--- response_body chomp
fast


=== TEST 15: several waiting mruby_set in config order with set: each script runs once, values kept
--- config
    location = /t {
        set $before "b";
        mruby_set_code $one 'Nginx::Async.sleep 30; Nginx.log Nginx::LOG_NOTICE, "script one ran"; "one"';
        set $mid "$one-m";
        mruby_set_code $two 'Nginx::Async.sleep 30; Nginx.log Nginx::LOG_NOTICE, "script two ran"; Nginx::Var.new.mid + "-two"';
        mruby_set_code $three 'Nginx.log Nginx::LOG_NOTICE, "script three ran"; "three"';
        return 200 "$before $one $mid $two $three";
    }
--- request
GET /t
--- response_body chomp
b one one-m one-m-two three
--- grep_error_log eval
qr/script \w+ ran/
--- grep_error_log_out
script one ran
script two ran
script three ran


=== TEST 16: server-level mruby_set waits too; an exception after the wait gives 500 with one line
--- config
    mruby_set_code $srv 'Nginx::Async.sleep 20; "server " + Nginx::Request.new.uri';
    location = /t { return 200 "$srv"; }
    location = /raise {
        mruby_set_code $bad 'Nginx::Async.sleep 20; raise "broken after the wait"';
        return 200 "$bad";
    }
--- request eval
["GET /t", "GET /raise"]
--- error_code eval
[200, 500]
--- response_body_like eval
["^server /t\$", "500 Internal Server Error"]
--- grep_error_log eval
qr/\[error\].*/
--- grep_error_log_out eval
qr/\A[^\n]*mruby_set: [^\n]*broken after the wait \(RuntimeError\)[^\n]*\n\z/


=== TEST 17: a client leaving while mruby_set sleeps does not crash the worker
--- config
    location = /sleepy { mruby_set_code $v 'Nginx::Async.sleep 300; "late"'; return 200 "$v"; }
    location = /pid { mruby_content_handler_code 'Nginx.rputs Nginx::Var.new.pid'; }
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $s "GET /sleepy HTTP/1.1\r\nHost: localhost\r\n\r\n";
select(undef, undef, undef, 0.05);
close $s;
select(undef, undef, undef, 0.4);
--- request
GET /pid
--- response_body_like: ^\d+$
--- no_error_log
[alert]
[crit]


=== TEST 18: sub_request in mruby_set gives its response; globals of interleaved requests stay apart
--- config
    location = /t {
        mruby_set_code $v '
            $who = Nginx::Request.new.args
            res = Nginx::Async::HTTP.sub_request "/part", "n=#{$who}"
            Nginx::Async.sleep($who == "first" ? 300 : 20)
            "#{res.status}:#{res.body} #{$who}"
        ';
        return 200 "$v";
    }
    location = /part { return 200 "part$arg_n"; }
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my $first = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $first "GET /t?first HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
select(undef, undef, undef, 0.05);
my $second = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $second "GET /t?second HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
my $second_resp = do { local $/; <$second> };
my $first_resp = do { local $/; <$first> };
Test::More::like($second_resp, qr/\r\n\r\n200:partsecond second\z/, "the second request's mruby_set");
Test::More::like($first_resp, qr/\r\n\r\n200:partfirst first\z/, "the first request keeps its global across the other's");
--- request
GET /t?third
--- response_body chomp
200:partthird third
--- no_error_log
[error]
