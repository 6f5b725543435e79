# The VM lifecycle: per-request globals, init-time state, hot reload of
# edited scripts, exception cleanup between runs.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a global set in access is read by content in the same request, gone in the next, init globals stay
--- http_config
    mruby_init_code '$site = "init-global"';
--- config
    location = /t {
        mruby_access_handler_code '
            $seen_before = $user.inspect
            $user = Nginx::Request.new.args
        ';
        mruby_content_handler_code 'Nginx.rputs "#{$user} prev=#{$seen_before} site=#{$site}\n"';
    }
--- pipelined_requests eval
["GET /t?alice", "GET /t?bob", "GET /t?carol"]
--- response_body eval
["alice prev=nil site=init-global\n", "bob prev=nil site=init-global\n", "carol prev=nil site=init-global\n"]
--- no_error_log
[error]


=== TEST 2: globals from mruby_init_worker persist; globals from requests do not appear in global_variables later
--- http_config
    mruby_init_worker_code '$counter_base = 100';
--- config
    location = /t {
        mruby_content_handler_code '
            names = global_variables.map(&:to_s).select { |n| n.start_with?("$req_") }
            $req_a = 1
            $req_b = 2
            Nginx.rputs "#{names.size} #{$counter_base}\n"
        ';
    }
--- pipelined_requests eval
["GET /t", "GET /t", "GET /t"]
--- response_body eval
["0 100\n", "0 100\n", "0 100\n"]


=== TEST 3: an init-time global modified by a request keeps its new value (shared state)
--- http_config
    mruby_init_code '$hits = 0';
--- config
    location = /t { mruby_content_handler_code '$hits += 1; Nginx.rputs "#{$hits}\n"'; }
--- pipelined_requests eval
["GET /t", "GET /t", "GET /t"]
--- response_body eval
["1\n", "2\n", "3\n"]


=== TEST 4: globals are removed even when the request ends with an error
--- config
    location = /fail { mruby_content_handler_code '$leak = "x"; raise "boom"'; }
    location = /check { mruby_content_handler_code 'Nginx.rputs "leak=#{$leak.inspect}"'; }
--- request eval
["GET /fail", "GET /check"]
--- error_code eval
[500, 200]
--- response_body_like eval
["500 Internal Server Error", "^leak=nil\$"]


=== TEST 5: Nginx.remove_global_variable removes an init-time global
--- http_config
    mruby_init_code '$temp = "t"';
--- config
    location = /t {
        mruby_content_handler_code '
            before = global_variables.include?(:$temp)
            Nginx.remove_global_variable :$temp
            Nginx.rputs "#{before} #{global_variables.include?(:$temp)} #{$temp.inspect}"
        ';
    }
--- request
GET /t
--- response_body chomp
true false nil


=== TEST 6: a file script edited on disk changes the next response without reload
--- config
    location = /run { mruby_content_handler $TEST_NGINX_HTML_DIR/live.rb; }
    location = /edit {
        mruby_content_handler_code '
            File.open(Nginx::Var.new.document_root + "/live.rb", "w") { |f| f.write "Nginx.rputs %q(after the edit)" }
            Nginx.rputs "edited"
        ';
    }
--- user_files
>>> live.rb
Nginx.rputs "before"
--- pipelined_requests eval
["GET /run", "GET /run", "GET /edit", "GET /run", "GET /run"]
--- response_body eval
["before", "before", "edited", "after the edit", "after the edit"]
--- no_error_log
[error]


=== TEST 7: a cached file script ignores edits
--- config
    location = /run { mruby_content_handler $TEST_NGINX_HTML_DIR/fixed.rb cache; }
    location = /edit {
        mruby_content_handler_code '
            File.open(Nginx::Var.new.document_root + "/fixed.rb", "w") { |f| f.write "Nginx.rputs %q(changed)" }
            Nginx.rputs "edited"
        ';
    }
--- user_files
>>> fixed.rb
Nginx.rputs "compiled at load"
--- pipelined_requests eval
["GET /run", "GET /edit", "GET /run"]
--- response_body eval
["compiled at load", "edited", "compiled at load"]


=== TEST 8: an edit that breaks the script gives 500 and a log line, a fix brings it back
--- config
    location = /run { mruby_content_handler $TEST_NGINX_HTML_DIR/s.rb; }
    location = /break {
        mruby_content_handler_code 'File.open(Nginx::Var.new.document_root + "/s.rb", "w") { |f| f.write "def (" }; Nginx.rputs "broken"';
    }
    location = /fix {
        mruby_content_handler_code 'File.open(Nginx::Var.new.document_root + "/s.rb", "w") { |f| f.write "Nginx.rputs %q(fixed!)" }; Nginx.rputs "fixed"';
    }
--- user_files
>>> s.rb
Nginx.rputs "ok"
--- request eval
["GET /run", "GET /break", "GET /run", "GET /fix", "GET /run"]
--- error_code eval
[200, 200, 500, 200, 200]
--- response_body_like eval
["^ok\$", "broken", "500 Internal", "fixed", "^fixed!\$"]
--- error_log eval
qr{mruby_content_handler: failed to recompile \S+/s\.rb:1: syntax error}


=== TEST 9: the exception of one run does not leak into the next
--- config
    location = /t {
        mruby_content_handler_code '
            raise "first fails" if Nginx::Request.new.args == "fail"
            Nginx.rputs "clean run"
        ';
    }
--- request eval
["GET /t?fail", "GET /t", "GET /t"]
--- error_code eval
[500, 200, 200]
--- response_body_like eval
["500", "^clean run\$", "^clean run\$"]


=== TEST 10: Userdata carries data between phases and across requests
--- config
    location = /t {
        mruby_access_handler_code 'u = Userdata.new; u.count = (u.count || 0) + 1';
        mruby_content_handler_code 'Nginx.rputs "count=#{Userdata.new.count}"';
    }
--- pipelined_requests eval
["GET /t", "GET /t"]
--- response_body eval
["count=1", "count=2"]


=== TEST 11: Userdata with a key, from mruby_init
--- http_config
    mruby_init_code 'Userdata.new("config").mode = "strict"';
--- config
    location = /t { mruby_content_handler_code 'Nginx.rputs Userdata.new("config").mode + " " + Userdata.new("other").mode.inspect'; }
--- request
GET /t
--- response_body chomp
strict nil


=== TEST 12: classes defined in a request persist (ngx_mruby behaviour)
--- config
    location = /t {
        mruby_content_handler_code '
            class Visit
              @n ||= 0
              def self.bump; @n += 1; end
            end
            Nginx.rputs Visit.bump.to_s
        ';
    }
--- pipelined_requests eval
["GET /t", "GET /t"]
--- response_body eval
["1", "2"]


=== TEST 13: match globals from mruby_init do not reach requests; a request's match does not reach the next
--- http_config
    mruby_init_code '"init-secret" =~ /(secret)/';
--- config
    location = /t {
        mruby_content_handler_code '
            before = [$~.inspect, $1.inspect]
            "req-#{Nginx::Request.new.args}" =~ /req-(\w+)/
            Nginx.rputs "#{before.join(",")} now=#{$1}"
        ';
    }
--- pipelined_requests eval
["GET /t?one", "GET /t?two"]
--- response_body eval
["nil,nil now=one", "nil,nil now=two"]


=== TEST 14: worker memory stays flat over requests that create globals and match regexps
--- config
    location = /t { mruby_content_handler_code '$zz = "x" * 100; "abc" =~ /b/; Nginx.rputs "ok"'; }
    location = /rss { mruby_content_handler_code 'Nginx.rputs File.read("/proc/self/status")[/VmRSS:\s+(\d+)/, 1]'; }
--- init
use IO::Socket::INET;
my $port = $ENV{TEST_NGINX_SERVER_PORT};
# n pipelined keep-alive requests on one connection; returns the last body
sub batch {
    my ($path, $n) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die $!;
    print $s join "", map { "GET $path HTTP/1.1\r\nHost: x\r\n" . ($_ == $n ? "Connection: close\r\n" : "") . "\r\n" } 1 .. $n;
    my $all = do { local $/; <$s> };
    my @bodies = $all =~ /\r\n\r\n([^H]*)/g;
    return $bodies[-1];
}
batch("/t", 500) for 1 .. 80;    # warm up (nginx and malloc settle): 40000 requests
# Three windows of 40000 requests: a leak of 4 bytes per request grows
# every window by 160 kB; malloc's heap settling grows in steps that do
# not repeat, so the quietest window is the one that tells.
my @rss = (batch("/rss", 1));
for (1 .. 3) {
    batch("/t", 500) for 1 .. 80;
    push @rss, batch("/rss", 1);
}
my @growth = map { $rss[$_] - $rss[$_ - 1] } 1 .. 3;
my ($least) = sort { $a <=> $b } @growth;
Test::More::cmp_ok($least, "<", 100, "RSS growth over 40000 requests under 100 kB in the quietest of three windows (@rss kB)");
--- request
GET /t
--- response_body chomp
ok
