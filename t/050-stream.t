# The stream module: mruby_stream* directives, Nginx::Stream,
# Nginx::Stream::Connection and Nginx::Stream::Async on raw TCP connections.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use Time::HiRes qw(time);
use IO::Socket::INET;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: mruby_stream_code runs in the ACCESS phase; class methods give the addresses
--- stream_server_config
    mruby_stream_code '
        c = Nginx::Stream::Connection
        Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "addr: #{c.remote_ip} #{c.remote_addr} #{c.remote_port.class} #{c.remote_port > 0} #{c.local_ip} #{c.local_port} #{c.local_port.class} #{c.local_ip_port} status=#{c.stream_status}"
    ';
    return "hello\n";
--- stream_request
--- stream_response
hello
--- error_log
addr: 127.0.0.1 127.0.0.1 Integer true 127.0.0.1 $TEST_NGINX_STREAM_PORT Integer 127.0.0.1:$TEST_NGINX_STREAM_PORT status=-5
--- no_error_log
[error]


=== TEST 2: a TCP load balancer choosing its upstream in Ruby from Userdata set at init
--- stream_config
    mruby_stream_init_code 'Userdata.new.backends = ["127.0.0.1:$TEST_NGINX_RAND_PORT_1", "127.0.0.1:$TEST_NGINX_RAND_PORT_2"]';
    mruby_stream_init_worker_code 'Userdata.new.turn = 0';
    upstream backends {
        # never reached: every connection gets its server from Ruby
        server 127.0.0.1:1;
    }
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; return "backend one\n"; }
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2; return "backend two\n"; }
--- stream_server_config
    mruby_stream_code '
        u = Userdata.new
        c = Nginx::Stream::Connection.new "backends"
        before = c.upstream_server
        c.upstream_server = u.backends[u.turn % u.backends.size]
        u.turn += 1
        Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "lb: #{before} -> #{c.upstream_server} for #{c.remote_ip}:#{c.remote_port.class}"
    ';
    proxy_pass backends;
--- stream_request eval
["", "", "", ""]
--- stream_response eval
["backend one\n", "backend two\n", "backend one\n", "backend two\n"]
--- grep_error_log eval
qr/lb: \S+ -> \S+/
--- grep_error_log_out
lb: 127.0.0.1:1 -> 127.0.0.1:$TEST_NGINX_RAND_PORT_1
lb: 127.0.0.1:1 -> 127.0.0.1:$TEST_NGINX_RAND_PORT_2
lb: 127.0.0.1:1 -> 127.0.0.1:$TEST_NGINX_RAND_PORT_1
lb: 127.0.0.1:1 -> 127.0.0.1:$TEST_NGINX_RAND_PORT_2
--- no_error_log
[error]


=== TEST 3: a connection is aborted by stream_status = ABORT for a given remote address
--- stream_server_config
    mruby_stream_code '
        c = Nginx::Stream::Connection
        if c.remote_ip == "127.0.0.2"
          c.stream_status = Nginx::Stream::ABORT
          Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "refusing #{c.remote_ip}, status=#{c.stream_status}"
        end
    ';
    return "welcome $remote_addr\n";
--- init
my $refused = stream_exchange(data => '', local_addr => '127.0.0.2');
Test::More::is($refused->{raw}, '', "127.0.0.2 gets nothing: its connection is closed");
Test::More::ok(!$refused->{timed_out}, "... at once");
my $again = stream_exchange(data => '', local_addr => '127.0.0.3');
Test::More::is($again->{raw}, "welcome 127.0.0.3\n", "127.0.0.3 is served");
--- stream_request
--- stream_response
welcome 127.0.0.1
--- error_log
refusing 127.0.0.2, status=-6
--- no_error_log
[error]


=== TEST 4: stream_status = OK ends the access phase (skips deny); DECLINED lets it run
--- stream_server_config
    mruby_stream_code '
        c = Nginx::Stream::Connection.new("ignored_upstream")
        c.stream_status = Nginx::Stream::OK if c.remote_ip == "127.0.0.1"
    ';
    deny all;
    return "allowed\n";
--- stream_config
    upstream ignored_upstream { server 127.0.0.1:1; }
--- init
my $denied = stream_exchange(data => '', local_addr => '127.0.0.2');
Test::More::is($denied->{raw}, '', "127.0.0.2 falls through to deny all");
--- stream_request
--- stream_response
allowed
--- error_log eval
qr/access forbidden by rule.*, client: 127\.0\.0\.2,/


=== TEST 5: Nginx::Stream.add_listener in mruby_stream_server_context_code opens ports
--- skip_nginx: 3: < 1.25.5
--- stream_config
    server {
        mruby_stream_server_context_code '
            Nginx::Stream.add_listener({address: "127.0.0.1:$TEST_NGINX_RAND_PORT_1"})
            Nginx::Stream.add_listener({"address" => "$TEST_NGINX_RAND_PORT_2"})
        ';
        return "added $server_port\n";
    }
--- stream_server_config
    return "main\n";
--- init
for my $n (1, 2) {
    my $port = rand_port($n);
    my $st = stream_exchange(data => '', port => $port);
    Test::More::is($st->{raw}, "added $port\n", "the listener added from Ruby on port $port answers");
}
--- stream_request
--- stream_response
main


=== TEST 6: Async.sleep waits without blocking: another connection is served by the single worker meanwhile
--- stream_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        mruby_stream_code '
            t0 = Time.now
            Nginx::Stream::Async.sleep 500
            Nginx::Stream::Async.sleep 10
            Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "slept #{((Time.now - t0) * 1000).to_i >= 490}"
        ';
        return "slow done\n";
    }
--- stream_server_config
    mruby_stream_code 'Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "fast handler ran"';
    return "fast\n";
--- init
my $slow = IO::Socket::INET->new(PeerAddr => "127.0.0.1:" . rand_port(1)) or die "connect: $!";
my $t0 = time;
select(undef, undef, undef, 0.05);
my $fast = stream_exchange(data => '');
my $fast_elapsed = time - $t0;
my $slow_resp = do { local $/; <$slow> };
my $slow_elapsed = time - $t0;
Test::More::is($fast->{raw}, "fast\n", "the fast connection is answered");
Test::More::cmp_ok($fast_elapsed, '<', 0.3, "... while the slow one sleeps");
Test::More::is($slow_resp, "slow done\n", "the slow connection completes");
Test::More::cmp_ok($slow_elapsed, '>=', 0.45, "... after its 500 ms sleep");
--- stream_request
--- stream_response
fast
--- error_log
slept true
--- no_error_log
[error]


=== TEST 7: a raising script aborts its connection with one error line; the worker lives on
--- stream_config
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; return "alive\n"; }
--- stream_server_config
    mruby_stream $TEST_NGINX_HTML_DIR/raise.rb;
    return "never\n";
--- user_files
>>> raise.rb
def check(port)
  raise ArgumentError, "bad client #{port.class}"
end
check(Nginx::Stream::Connection.remote_port)
--- init
my @before = worker_pids();
my $st = stream_exchange(data => '');
Test::More::is($st->{raw}, '', "the raising connection gets nothing");
my $alive = stream_exchange(data => '', port => rand_port(1));
Test::More::is($alive->{raw}, "alive\n", "the worker serves the next connection");
Test::More::is_deeply([worker_pids()], \@before, "... and is the same process");
--- stream_request
--- stream_response
--- grep_error_log eval
qr/\[error\].*/
--- grep_error_log_out eval
qr/\A(?:[^\n]*mruby_stream: [^\n]*\/raise\.rb:2: bad client Integer \(ArgumentError\), backtrace: \[[^\n]*raise\.rb:2[^\n]*raise\.rb:4[^\n]*\] while running mruby_stream, client: 127\.0\.0\.1, server: 127\.0\.0\.1:\d+\n){2}\z/
--- no_error_log
[alert]


=== TEST 8: globals a connection creates are removed when it ends; init globals persist
--- stream_config
    mruby_stream_init_code '$from_init = "init"';
--- stream_server_config
    mruby_stream_code '
        Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "seen: #{$from_init} #{$per_connection.inspect}"
        $per_connection = "leaked"
    ';
    return "ok\n";
--- stream_request eval
["", "", ""]
--- stream_response eval
["ok\n", "ok\n", "ok\n"]
--- grep_error_log eval
qr/seen: .*?(?= while running mruby_stream, client)/
--- grep_error_log_out
seen: init nil
seen: init nil
seen: init nil


=== TEST 9: interleaved sleeping connections keep their own globals
--- stream_server_config
    mruby_stream_code '
        me = Nginx::Stream::Connection.remote_ip
        $who = me
        Nginx::Stream::Async.sleep(me == "127.0.0.2" ? 400 : 50)
        Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "#{me} sees #{$who}"
    ';
    return "done\n";
--- init
my $first = IO::Socket::INET->new(PeerAddr => "127.0.0.1:" . stream_port(), LocalAddr => '127.0.0.2') or die "connect: $!";
select(undef, undef, undef, 0.05);
my $second = stream_exchange(data => '', local_addr => '127.0.0.3');
my $first_resp = do { local $/; <$first> };
Test::More::is($second->{raw}, "done\n", "the second connection is served");
Test::More::is($first_resp, "done\n", "the first connection is served after its sleep");
--- stream_request
--- stream_response
done
--- grep_error_log eval
qr/127\.0\.0\.\d sees \S+/
--- grep_error_log_out
127.0.0.3 sees 127.0.0.3
127.0.0.2 sees 127.0.0.2
127.0.0.1 sees 127.0.0.1


=== TEST 10: a client leaving while its script sleeps: the timer goes with the session
--- stream_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        mruby_stream_code 'Nginx::Stream::Async.sleep 300; Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "woke up"';
        proxy_pass 127.0.0.1:$TEST_NGINX_STREAM_PORT;
        proxy_timeout 100ms;
        preread_timeout 100ms;
    }
--- stream_server_config
    return "still here\n";
--- init
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:" . rand_port(1)) or die "connect: $!";
select(undef, undef, undef, 0.05);
close $s;
select(undef, undef, undef, 0.4);
--- stream_request
--- stream_response
still here
--- no_error_log
[alert]
[crit]
[error]


=== TEST 11: the file form is recompiled when the file changes, unless "cache"
--- stream_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        mruby_stream $TEST_NGINX_HTML_DIR/cached.rb cache;
        return "cached\n";
    }
--- stream_server_config
    mruby_stream $TEST_NGINX_HTML_DIR/live.rb;
    return "live\n";
--- user_files
>>> live.rb
Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "live version 1"
>>> cached.rb
Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "cached version 1"
--- init
my $dir = $ENV{TEST_NGINX_HTML_DIR};
my $port = rand_port(1);
stream_exchange(data => '') for 1;
stream_exchange(data => '', port => $port);
for my $f (qw(live cached)) {
    open my $fh, '>', "$dir/$f.rb" or die $!;
    print $fh qq{Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "$f version 2"\n};
    close $fh;
}
stream_exchange(data => '');
stream_exchange(data => '', port => $port);
--- stream_request
--- stream_response
live
--- grep_error_log eval
qr/(live|cached) version \d/
--- grep_error_log_out
live version 1
cached version 1
live version 2
cached version 1
live version 2


=== TEST 12: init_worker state reaches connections; a main-level mruby_stream applies to every server
--- stream_config
    mruby_stream_init_worker_code 'Userdata.new.worker = "set in init_worker"; $worker_global = "wg"';
    mruby_stream_code 'Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "main level: #{Userdata.new.worker} #{$worker_global}"';
--- stream_server_config
    return "inherited\n";
--- stream_request
--- stream_response
inherited
--- error_log
main level: set in init_worker wg


=== TEST 13: mruby_stream_exit_worker_code runs when the worker exits (seen by the next server)
--- stream_config
    mruby_stream_init_code 'File.delete("/tmp/ngx_mruby_rs_stream_exit.txt") if File.exist?("/tmp/ngx_mruby_rs_stream_exit.txt")';
    mruby_stream_exit_worker_code 'File.open("/tmp/ngx_mruby_rs_stream_exit.txt", "w") { |f| f.write "stream worker exited" }';
--- stream_server_config
    return "running\n";
--- stream_request
--- stream_response
running


=== TEST 14: ... the previous server's exit hook wrote its file; file forms of the init hooks
--- stream_config
    mruby_stream_init $TEST_NGINX_HTML_DIR/init.rb;
    mruby_stream_init_worker $TEST_NGINX_HTML_DIR/init_worker.rb;
    mruby_stream_exit_worker $TEST_NGINX_HTML_DIR/exit.rb;
--- user_files
>>> init.rb
Userdata.new.exit_file = File.read("/tmp/ngx_mruby_rs_stream_exit.txt")
>>> init_worker.rb
Userdata.new.pid = Process.pid
>>> exit.rb
Userdata.new.unused = true
--- stream_server_config
    mruby_stream_code 'Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "exit file: #{Userdata.new.exit_file}, pid set: #{Userdata.new.pid == Process.pid}"';
    return "ok\n";
--- stream_request
--- stream_response
ok
--- error_log
exit file: stream worker exited, pid set: true


=== TEST 15: Nginx::Stream API: constants, module_name, errlogger; the Ruby library is there
--- stream_server_config
    mruby_stream_code '
        s = Nginx::Stream
        consts = [s::OK, s::ERROR, s::AGAIN, s::BUSY, s::DONE, s::DECLINED, s::ABORT,
                  s::LOG_STDERR, s::LOG_EMERG, s::LOG_ALERT, s::LOG_CRIT, s::LOG_ERR, s::LOG_WARN,
                  s::LOG_NOTICE, s::LOG_INFO, s::LOG_DEBUG]
        s.errlogger s::LOG_NOTICE, "consts: #{consts.join(",")} name: #{s.module_name}"
        s.log s::LOG_NOTICE, "json: #{JSON.generate({"a" => [1, 2]})} #{JSON.parse(%q({"b": true}))["b"]}"
        s.log s::LOG_NOTICE, "regexp: #{"port-8080" =~ /(\d+)/ ? $1 : "none"} #{"a,b".split(/,/).size}"
        s.log s::LOG_NOTICE, "no http api here: #{Nginx.const_defined?(:Request)} #{Nginx.respond_to?(:rputs)}"
    ';
    return "ok\n";
--- stream_request
--- stream_response
ok
--- error_log
consts: 0,-1,-2,-3,-4,-5,-6,0,1,2,3,4,5,6,7,8 name: ngx_mruby-stream-module
json: {"a":[1,2]} true
regexp: 8080 2
no http api here: false false
--- no_error_log
[error]


=== TEST 16: misuse of every method raises (rescued in Ruby), never crashes
--- stream_config
    upstream known { server 127.0.0.1:1; }
--- stream_server_config
    mruby_stream_code '
        s = Nginx::Stream
        conn = Nginx::Stream::Connection
        c = conn.new("known")
        tries = {
          "log level String" => lambda { s.log "x", "y" },
          "log one arg" => lambda { s.log s::LOG_ERR },
          "log bad level" => lambda { s.log 99, "y" },
          "status String" => lambda { conn.stream_status = "x" },
          "status AGAIN" => lambda { conn.stream_status = s::AGAIN },
          "status DONE" => lambda { c.stream_status = s::DONE },
          "status huge" => lambda { conn.stream_status = 2**62 },
          "new Integer" => lambda { conn.new(1) },
          "new unknown" => lambda { conn.new("nope") },
          "new no arg" => lambda { conn.new },
          "server= Integer" => lambda { c.upstream_server = 42 },
          "server= garbage" => lambda { c.upstream_server = "no such host name really.invalid:x" },
          "server= empty" => lambda { c.upstream_server = "" },
          "sleep 0" => lambda { Nginx::Stream::Async.sleep 0 },
          "sleep String" => lambda { Nginx::Stream::Async.sleep "1" },
          "sleep huge" => lambda { Nginx::Stream::Async.sleep 2**62 },
          "add_listener at run time" => lambda { s.add_listener({address: "127.0.0.1:1"}) },
          "remote_ip arg" => lambda { conn.remote_ip 1 },
        }
        tries.each do |what, f|
          begin
            f.call
            s.log s::LOG_NOTICE, "misuse #{what}: no error"
          rescue => e
            s.log s::LOG_NOTICE, "misuse #{what}: #{e.class}"
          end
        end
        s.log s::LOG_NOTICE, "still default: #{conn.stream_status} #{c.upstream_server}"
    ';
    return "survived\n";
--- stream_request
--- stream_response
survived
--- grep_error_log eval
qr/(misuse [^:]+: \w+|still default: .*?(?= while))/
--- grep_error_log_out
misuse log level String: TypeError
misuse log one arg: ArgumentError
misuse log bad level: ArgumentError
misuse status String: TypeError
misuse status AGAIN: ArgumentError
misuse status DONE: ArgumentError
misuse status huge: ArgumentError
misuse new Integer: TypeError
misuse new unknown: ArgumentError
misuse new no arg: ArgumentError
misuse server= Integer: TypeError
misuse server= garbage: ArgumentError
misuse server= empty: ArgumentError
misuse sleep 0: ArgumentError
misuse sleep String: TypeError
misuse sleep huge: ArgumentError
misuse add_listener at run time: RuntimeError
misuse remote_ip arg: ArgumentError
still default: -5 127.0.0.1:1


=== TEST 17: Connection.new with an unknown upstream aborts the connection with one line
--- stream_server_config
    mruby_stream_code 'Nginx::Stream::Connection.new("missing_upstream").upstream_server = "127.0.0.1:1"';
    return "never\n";
--- stream_request
--- stream_response
--- error_log eval
qr/\[error\].*mruby_stream: mruby_stream_code@.*nginx\.conf:\d+:1: upstream "missing_upstream" not found \(ArgumentError\)/


=== TEST 18: the stream VM is not the http VM
--- http_config
    mruby_init_code '$http_global = "http"; class HttpOnly; end';
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs "#{$http_global} #{Object.const_defined?(:StreamOnly)}"'; }
--- stream_config
    mruby_stream_init_code '$stream_global = "stream"; class StreamOnly; end';
--- stream_server_config
    mruby_stream_code 'Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "stream vm: #{$stream_global} #{$http_global.inspect} #{Object.const_defined?(:HttpOnly)}"';
    return "ok\n";
--- request
GET /t
--- response_body chomp
http false
--- stream_request
--- stream_response
ok
--- error_log
stream vm: stream nil false


=== TEST 19: nginx -t: a syntax error in mruby_stream_code names the config line
--- stream_server_config
    mruby_stream_code 'if true then';
    return "x";
--- must_die
--- error_log eval
qr/\[emerg\].*mruby_stream_code failed: mruby_stream_code@.*nginx\.conf:\d+:\d+: syntax error/


=== TEST 20: nginx -t: a syntax error in a mruby_stream file names file and line
--- stream_server_config
    mruby_stream $TEST_NGINX_HTML_DIR/bad.rb;
    return "x";
--- user_files
>>> bad.rb
x = 1

def broken(
--- must_die
--- error_log eval
qr/\[emerg\].*mruby_stream failed: .*\/bad\.rb:\d+: syntax error/


=== TEST 21: nginx -t: a missing file
--- stream_server_config
    mruby_stream $TEST_NGINX_HTML_DIR/missing.rb;
    return "x";
--- must_die
--- error_log eval
qr/\[emerg\].*mruby_stream failed: .*\/missing\.rb: cannot open/


=== TEST 22: nginx -t: a second argument other than "cache"
--- stream_server_config
    mruby_stream $TEST_NGINX_HTML_DIR/ok.rb always;
    return "x";
--- user_files
>>> ok.rb
1
--- must_die
--- error_log
invalid parameter "always", valid parameter is only "cache"


=== TEST 23: nginx -t: a duplicated mruby_stream_code
--- stream_server_config
    mruby_stream_code '1';
    mruby_stream_code '2';
    return "x";
--- must_die
--- error_log
"mruby_stream_code" directive is duplicate


=== TEST 24: nginx -t: mruby_stream_init raising fails the start with the exception
--- stream_config
    mruby_stream_init_code 'raise "no config for you"';
--- stream_server_config
    return "x";
--- must_die
--- error_log eval
qr/\[emerg\].*mruby_stream_init failed: .*no config for you \(RuntimeError\)/


=== TEST 25: nginx -t: add_listener with a bad address
--- skip_nginx: 2: < 1.25.5
--- stream_config
    server {
        mruby_stream_server_context_code 'Nginx::Stream.add_listener({address: "127.0.0.1:99999"})';
        return "x";
    }
--- stream_server_config
    return "x";
--- must_die
--- error_log eval
qr/\[emerg\].*mruby_stream_server_context_code failed: .*add_listener: invalid port in "127\.0\.0\.1:99999" \(ArgumentError\)/


=== TEST 26: nginx -t: directives in the wrong context
--- stream_server_config
    mruby_stream_init_code '1';
    return "x";
--- must_die
--- error_log
"mruby_stream_init_code" directive is not allowed here


=== TEST 27: nginx -t: mruby_stream_server_context_code in stream main is not allowed
--- stream_config
    mruby_stream_server_context_code '1';
--- stream_server_config
    return "x";
--- must_die
--- error_log
"mruby_stream_server_context_code" directive is not allowed here


=== TEST 28: a chosen server that fails is tried once: the upstream's own servers are not used
--- stream_config
    upstream pool { server 127.0.0.1:$TEST_NGINX_RAND_PORT_1; }
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; return "fallback\n"; }
--- stream_server_config
    mruby_stream_code '
        c = Nginx::Stream::Connection.new("pool")
        c.upstream_server = "127.0.0.1:1" if c.remote_ip == "127.0.0.1"
    ';
    proxy_pass pool;
--- init
my $other = stream_exchange(data => '', local_addr => '127.0.0.2');
Test::More::is($other->{raw}, "fallback\n", "without a choice the upstream's server answers");
--- stream_request
--- stream_response
--- error_log eval
qr/connect\(\) failed \(111: Connection refused\) while connecting to upstream, client: 127\.0\.0\.1, server: \S+, upstream: "127\.0\.0\.1:1"/


=== TEST 29: the PROXY protocol address, and the instance methods
--- stream_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 proxy_protocol;
        mruby_stream_code '
            c = Nginx::Stream::Connection.new("unused")
            Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "pp: #{c.proxy_protocol_ip} #{c.proxy_protocol_addr} #{c.remote_ip} #{c.local_port == Nginx::Stream::Connection.local_port}"
        ';
        return "pp\n";
    }
    upstream unused { server 127.0.0.1:1; }
--- stream_server_config
    mruby_stream_code 'Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "no pp: #{Nginx::Stream::Connection.proxy_protocol_ip.inspect}"';
    return "plain\n";
--- init
my $st = stream_exchange(data => "PROXY TCP4 192.0.2.7 127.0.0.1 1111 2222\r\n", port => rand_port(1));
Test::More::is($st->{raw}, "pp\n", "the proxy_protocol listener answers");
--- stream_request
--- stream_response
plain
--- error_log
pp: 192.0.2.7 192.0.2.7 127.0.0.1 true
no pp: nil


=== TEST 30: UDP sessions run mruby_stream too
--- stream_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 udp;
        mruby_stream_code '
            c = Nginx::Stream::Connection
            c.stream_status = Nginx::Stream::ABORT if c.remote_port == 9
            Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "udp from #{c.remote_ip}"
        ';
        return "udp ok\n";
    }
--- stream_server_config
    return "tcp\n";
--- init
my $udp = IO::Socket::INET->new(PeerAddr => "127.0.0.1:" . rand_port(1), Proto => 'udp') or die "udp socket: $!";
$udp->send("ping") or die "send: $!";
my $sel = IO::Select->new($udp);
my $reply = '';
$udp->recv($reply, 100) if $sel->can_read(3);
Test::More::is($reply, "udp ok\n", "the UDP session is answered after its script ran");
--- stream_request
--- stream_response
tcp
--- error_log eval
qr/udp from 127\.0\.0\.1 while running mruby_stream, udp client: 127\.0\.0\.1/


=== TEST 31: outside a connection (init hooks) the connection API raises RuntimeError
--- stream_config
    mruby_stream_init_code '
        %w(remote_ip stream_status).each do |m|
          begin
            Nginx::Stream::Connection.send(m)
          rescue => e
            Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "init #{m}: #{e.class}: #{e.message}"
          end
        end
        begin
          Nginx::Stream::Async.sleep 10
        rescue => e
          Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "init sleep: #{e.class}"
        end
    ';
--- stream_server_config
    return "ok\n";
--- stream_request
--- stream_response
ok
--- error_log
init remote_ip: RuntimeError: Nginx::Stream::Connection can only be used in mruby_stream or mruby_stream_code
init stream_status: RuntimeError
init sleep: RuntimeError


=== TEST 32: Async.sleep from a Fiber of the script's own raises FiberError, nothing stays armed
--- stream_server_config
    mruby_stream_code '
        begin
          Fiber.new { Nginx::Stream::Async.sleep 10 }.resume
        rescue FiberError => e
          Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "own fiber: #{e.class}"
        end
        Nginx::Stream::Async.sleep 20
        Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "then slept in the script Fiber"
    ';
    return "ok\n";
--- stream_request
--- stream_response
ok
--- error_log
own fiber: FiberError
then slept in the script Fiber
--- no_error_log
[error]


=== TEST 33: every kind of stream directive in one configuration
--- skip_nginx: 6: < 1.25.5
--- stream_config
    mruby_stream_init_code 'Userdata.new.port = "$TEST_NGINX_RAND_PORT_1"';
    mruby_stream_init_worker $TEST_NGINX_HTML_DIR/init_worker.rb;
    mruby_stream_exit_worker_code 'Userdata.new.worker_ready = false';
    mruby_stream_code 'Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "main-level code ran"';
    upstream all_backends { server 127.0.0.1:1; }
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; return "backend\n"; }
    server {
        mruby_stream_server_context_code 'Nginx::Stream.add_listener({address: "127.0.0.1:$TEST_NGINX_RAND_PORT_2"})';
        mruby_stream $TEST_NGINX_HTML_DIR/pick.rb cache;
        proxy_pass all_backends;
    }
--- user_files
>>> init_worker.rb
Userdata.new.worker_ready = true
>>> pick.rb
u = Userdata.new
c = Nginx::Stream::Connection.new("all_backends")
c.upstream_server = "127.0.0.1:#{u.port}" if u.worker_ready
Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "pick.rb chose #{c.upstream_server}"
--- stream_server_config
    mruby_stream_code '
        Nginx::Stream::Async.sleep 10
        Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "server code ran"
    ';
    return "front\n";
--- init
my $st = stream_exchange(data => '', port => rand_port(2));
Test::More::is($st->{raw}, "backend\n", "the add_listener port proxies to the server chosen by pick.rb");
--- stream_request
--- stream_response
front
--- error_log eval
[qr/pick\.rb chose 127\.0\.0\.1:\d+/, "server code ran", "main-level code ran"]
--- no_error_log
[error]


=== TEST 34: $status of a session: 403 after ABORT, 500 after an exception or ERROR, 200 otherwise
--- stream_config
    log_format st 'stream-status $remote_addr $status';
    access_log $TEST_NGINX_SERVER_ROOT/logs/access.log st;
--- stream_server_config
    mruby_stream_code '
        c = Nginx::Stream::Connection
        case c.remote_ip
        when "127.0.0.2" then c.stream_status = Nginx::Stream::ABORT
        when "127.0.0.3" then raise "boom"
        when "127.0.0.4" then c.stream_status = Nginx::Stream::ERROR
        end
    ';
    return "ok\n";
--- init
for my $addr (qw(127.0.0.2 127.0.0.3 127.0.0.4)) {
    my $st = stream_exchange(data => '', local_addr => $addr);
    Test::More::is($st->{raw}, '', "$addr gets nothing");
}
--- stream_request
--- stream_response
ok
--- access_log
stream-status 127.0.0.2 403
stream-status 127.0.0.3 500
stream-status 127.0.0.4 500
stream-status 127.0.0.1 200


=== TEST 35: built for an nginx before 1.25.5 (no stream listen API): add_listener says what it needs
--- skip_nginx: 2: >= 1.25.5
--- stream_config
    server {
        mruby_stream_server_context_code 'Nginx::Stream.add_listener({address: "127.0.0.1:$TEST_NGINX_RAND_PORT_1"})';
        return "x";
    }
--- stream_server_config
    return "x";
--- must_die
--- error_log eval
qr/\[emerg\].*mruby_stream_server_context_code failed: .*Nginx::Stream\.add_listener needs nginx 1\.25\.5 or newer \(the module was built for an older nginx\) \(RuntimeError\)/


=== TEST 36: upstream_server= address forms: a.b.c.d:port is parsed by hand, anything else goes to nginx's parser (no DNS)
# nginx's parser (ngx_inet_addr) reads an empty octet as 0, as it does for
# `server 1..3.4:80;` in an upstream block: those two forms connect.
--- stream_config
    upstream known { server 127.0.0.1:1; }
--- stream_server_config
    mruby_stream_code '
        s = Nginx::Stream
        c = s::Connection.new("known")
        ["127.0.0.1:8080", "255.255.255.255:65535", "010.0.0.1:00080", "0.0.0.0:1", "[::1]:80",
         "", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:123456",
         "256.0.0.1:80", "1.2.3:80", "1.2.3.4.5:80", "1..3.4:80", ".1.2.3:80", "1234.0.0.1:80",
         "1.2.3.4:80:90", "1.2.3.4:-1", "1.2.3.4 :80", "localhost:80"].each do |addr|
          result = begin
            c.upstream_server = addr
            "-> #{c.upstream_server}"
          rescue => e
            e.class.to_s
          end
          s.log s::LOG_NOTICE, "addr [#{addr}] #{result}"
        end
    ';
    return "ok\n";
--- stream_request
--- stream_response
ok
--- grep_error_log eval
qr/addr \[[^\]]*\]?[^ ]* [^ ,]+( \S+)?(?= while)/
--- grep_error_log_out
addr [127.0.0.1:8080] -> 127.0.0.1:8080
addr [255.255.255.255:65535] -> 255.255.255.255:65535
addr [010.0.0.1:00080] -> 010.0.0.1:00080
addr [0.0.0.0:1] -> 0.0.0.0:1
addr [[::1]:80] -> [::1]:80
addr [] ArgumentError
addr [127.0.0.1] ArgumentError
addr [127.0.0.1:] ArgumentError
addr [127.0.0.1:0] ArgumentError
addr [127.0.0.1:65536] ArgumentError
addr [127.0.0.1:123456] ArgumentError
addr [256.0.0.1:80] ArgumentError
addr [1.2.3:80] ArgumentError
addr [1.2.3.4.5:80] ArgumentError
addr [1..3.4:80] -> 1..3.4:80
addr [.1.2.3:80] -> .1.2.3:80
addr [1234.0.0.1:80] ArgumentError
addr [1.2.3.4:80:90] ArgumentError
addr [1.2.3.4:-1] ArgumentError
addr [1.2.3.4 :80] ArgumentError
addr [localhost:80] ArgumentError
--- no_error_log
[error]
