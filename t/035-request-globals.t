# Request globals belong to their request (issue 8): in the VM only while
# one of its scripts runs, held by the request otherwise, gone when it
# ends. Init-time globals stay shared.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: A sets $secret and waits on a slow proxied upstream; B on the same worker sees nil; A's log handler sees its value
--- config
    location = /a {
        mruby_access_handler_code '$secret = "A-secret"';
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        mruby_log_handler_code 'Nginx.log Nginx::LOG_ERR, "A log handler sees #{$secret.inspect}"';
    }
    location = /b {
        mruby_content_handler_code 'Nginx.rputs "B sees #{$secret.inspect}"';
        mruby_log_handler_code 'Nginx.log Nginx::LOG_ERR, "B log handler sees #{$secret.inspect}"';
    }
--- init
use POSIX ();
# the slow upstream: a plain HTTP server (no Ruby) that answers after 600 ms
open my $conf, '<', "$ENV{TEST_NGINX_SERVER_ROOT}/conf/nginx.conf" or die "conf: $!";
my ($up_port) = do { local $/; <$conf> } =~ m{proxy_pass http://127\.0\.0\.1:(\d+)};
my $listen = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$up_port", Listen => 5, ReuseAddr => 1)
    or die "upstream listen: $!";
my $upstream = fork() // die "fork: $!";
if ($upstream == 0) {
    my $c = $listen->accept;
    while (my $line = <$c>) { last if $line =~ /^\r?\n\z/ }
    select(undef, undef, undef, 0.6);
    print $c "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nslow upstream";
    close $c;
    POSIX::_exit(0);
}
close $listen;
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my $a = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $a "GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
select(undef, undef, undef, 0.15);
my $b = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $b "GET /b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
my $b_resp = do { local $/; <$b> };
my $a_resp = do { local $/; <$a> };
waitpid($upstream, 0);
Test::More::like($b_resp, qr/B sees nil\z/, "B, while A waits upstream, does not see A's global");
Test::More::like($a_resp, qr/slow upstream\z/, "A got the upstream's response");
--- request
GET /b
--- response_body chomp
B sees nil
--- grep_error_log eval: qr/[AB] log handler sees \S+/
--- grep_error_log_out
B log handler sees nil
A log handler sees "A-secret"
B log handler sees nil


=== TEST 2: removing an init-time global and creating another does not keep the new one
--- http_config
    mruby_init_code '$shared = "init"; $other_init = 1';
--- config
    location = /swap {
        mruby_content_handler_code 'Nginx.remove_global_variable(:$other_init); $leak = "from swap"; Nginx.rputs "swapped"';
    }
    location = /read { mruby_content_handler_code 'Nginx.rputs "#{$leak.inspect} #{$shared} #{$other_init.inspect}"'; }
--- request eval
["GET /swap", "GET /read"]
--- response_body eval
["swapped", "nil init nil"]


=== TEST 3: the phases of one request share its globals, across an internal redirect; the next request does not see them
--- config
    location = /first {
        mruby_rewrite_handler_code '$seen = ["rewrite"]; Nginx.redirect "/second"';
    }
    location = /second {
        mruby_access_handler_code '$seen << "access"';
        mruby_content_handler_code 'Nginx.rputs $seen.join(",")';
        mruby_log_handler_code 'Nginx.log Nginx::LOG_ERR, "log sees #{$seen.join(",")}"';
    }
    location = /after { mruby_content_handler_code 'Nginx.rputs $seen.inspect'; }
--- request eval
["GET /first", "GET /after"]
--- response_body eval
["rewrite,access", "nil"]
--- error_log
log sees rewrite,access


=== TEST 4: init-time globals stay shared (a request's change is seen by the next)
--- http_config
    mruby_init_code '$hits = 0';
--- config
    location = /t { mruby_content_handler_code '$hits += 1; Nginx.rputs $hits'; }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- response_body eval
["1", "2", "3"]


=== TEST 5: a request's globals survive its own waits and mruby_set, and filters see them
--- config
    location = /t {
        mruby_set_code $from_set '$mine = "set"; "x"';
        mruby_access_handler_code 'Nginx::Async.sleep 30; $mine += "+access"';
        mruby_content_handler_code 'Nginx::Async.sleep 30; Nginx.rputs $mine';
        mruby_output_header_filter_code 'Nginx::Headers_out.new["X-Mine"] = $mine';
    }
--- request
GET /t
--- response_headers
X-Mine: set+access
--- response_body chomp
set+access


=== TEST 6: a subrequest is another request: it does not see its parent's globals, and its own do not reach the parent
--- config
    location = /parent {
        mruby_content_handler_code '
            $who = "parent"
            sub = Nginx::Async::HTTP.sub_request "/sub"
            Nginx.rputs "sub saw #{sub.body}; parent sees #{$who}, #{$sub_only.inspect}"
        ';
    }
    location = /sub {
        mruby_content_handler_code 'seen = $who.inspect; $who = "sub"; $sub_only = 1; Nginx.rputs seen';
    }
--- request
GET /parent
--- response_body chomp
sub saw nil; parent sees parent, nil


=== TEST 7: a header filter of another request sees none of a waiting request's globals
--- config
    location = /slow {
        mruby_access_handler_code '$mine = "slow"; Nginx::Async.sleep 300';
        mruby_content_handler_code 'Nginx.rputs $mine';
    }
    location = /fast {
        mruby_content_handler_code 'Nginx.rputs "fast"';
        mruby_output_header_filter_code 'Nginx::Headers_out.new["X-Seen"] = $mine.inspect';
    }
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my $slow = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $slow "GET /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
select(undef, undef, undef, 0.1);
my $fast = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
print $fast "GET /fast HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
my $fast_resp = do { local $/; <$fast> };
my $slow_resp = do { local $/; <$slow> };
Test::More::like($fast_resp, qr/X-Seen: nil\r\n/, "the other request's header filter sees nil");
Test::More::like($slow_resp, qr/\r\n\r\nslow\z/, "the waiting request still has its global");
--- request
GET /fast
--- response_headers
X-Seen: nil
