# mruby_cpu_limit: runaway scripts are stopped for real. One worker; each
# runaway request must answer 500 within the budget plus a margin, leave
# exactly one log line with the script:line and the CPU time used (a header
# filter too: its response becomes a 500; an SSI include after the page's
# header went out: the 500 page in place of the include), and the
# same worker must answer the next request. Then reload and stop complete
# promptly while a runaway script is running, and a runaway
# mruby_init_worker is stopped and logged while the worker serves.
# Plain Perl (helpers in t/lib/VlimitTest.pm): the timing and the
# reload/stop need control Test::Nginx::Socket does not give.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use IO::Select;
use VlimitTest;

plan skip_all => 'nginx or the module is not built' unless nginx_available();

my $port = port();
my $budget_ms = 300;
# wall-clock allowance: the budget is CPU time, and CI machines are shared
my $max_seconds = 3;

my $http = <<"EOF";
    mruby_cpu_limit ${budget_ms}ms;
    mruby_init_worker_code 'x = 0
loop { x += 1 }';
    server {
        listen 127.0.0.1:$port;
        server_name localhost;
        location = /pid { mruby_content_handler_code 'Nginx.rputs Process.pid.to_s'; }
        location = /loop { mruby_content_handler_code 'loop { }'; }
        location = /while { mruby_content_handler_code 'x = 0
while true; x += 1; end'; }
        location = /while-true { mruby_content_handler_code 'while true; end'; }
        # the page's header goes out before its include runs away
        location = /ssi {
            ssi on;
            default_type text/html;
            return 200 'before <!--# include virtual="/loop" --> after';
        }
        location = /rescue {
            mruby_content_handler_code '
                begin
                  loop { }
                rescue Exception
                  retry
                ensure
                  loop { }
                end';
        }
        location = /set {
            mruby_set_code \$spin 'loop { }';
            return 200 "never \$spin";
        }
        location = /async { mruby_content_handler_code 'Nginx::Async.sleep 10; loop { }'; }
        location = /blocks { mruby_content_handler_code '[1, 2].each { 3.times.map { loop { } } }'; }
        location = /body-filter {
            mruby_output_body_filter_code 'loop { }';
            return 200 "body";
        }
        location = /header-filter {
            mruby_output_header_filter_code 'loop { }';
            return 200 "body";
        }
        location = /header-filter-short {
            mruby_cpu_limit 100ms;
            mruby_content_handler_code 'Nginx.rputs "body"';
            mruby_output_header_filter_code 'x = 0
loop { x += 1 }';
        }
        location = /short {
            mruby_cpu_limit 100ms;
            mruby_content_handler_code 'loop { }';
        }
        location = /unlimited {
            mruby_cpu_limit off;
            mruby_content_handler_code 'x = 0; 2_000_000.times { x += 1 }; Nginx.rputs x.to_s';
        }
    }
EOF

start_nginx(workers => 1, http => $http);
my ($status, $pid) = http_get('/pid');
is($status, 200, 'the worker serves although its mruby_init_worker ran away');
like(error_log_since(0), qr/\[alert\].*mruby_init_worker failed: mruby_init_worker_code\@\S+:2: CPU time limit exceeded: (\d+) ms used, limit $budget_ms ms \(Nginx::CPULimitExceeded\)/,
    'the runaway mruby_init_worker is stopped and logged with its line and the CPU time');

# One runaway request: 500 in time, one log line naming the script line and
# the CPU used, and the same worker answers next.
sub runaway_ok {
    my ($path, $line_re, $limit_ms) = @_;
    $limit_ms //= $budget_ms;
    my $from = error_log_size();
    my $t0 = time;
    my ($st) = http_get($path);
    my $elapsed = time - $t0;
    is($st, 500, "$path: 500");
    cmp_ok($elapsed, '<', $max_seconds, sprintf("$path: answered in %.2f s", $elapsed));
    my @lines = grep { /CPU time limit exceeded/ } split /\n/, error_log_since($from);
    is(scalar @lines, 1, "$path: exactly one log line") or diag join "\n", @lines;
    my ($used) = ($lines[0] // '') =~ /(\d+) ms used, limit $limit_ms ms/;
    like($lines[0] // '', qr/\[error\] .*$line_re: CPU time limit exceeded: \d+ ms used, limit $limit_ms ms \(Nginx::CPULimitExceeded\), backtrace: \[/,
        "$path: the line names the script:line and the exception");
    ok(defined $used && $used >= $limit_ms && $used <= $limit_ms * 1.3 + 20, "$path: CPU used ${\($used // '?')} ms, at least the limit and little more");
    my ($next, $next_pid) = http_get('/pid');
    is($next, 200, "$path: the next request is answered");
    is($next_pid, $pid, "$path: by the same worker");
}

runaway_ok('/loop', qr/mruby_content_handler: mruby_content_handler_code\@\S+:\d+:1/);
runaway_ok('/while', qr/mruby_content_handler_code\@\S+:\d+:2/);
runaway_ok('/while-true', qr/mruby_content_handler_code\@\S+:\d+:1/);
runaway_ok('/rescue', qr/mruby_content_handler_code\@\S+:\d+:3/);
runaway_ok('/set', qr/mruby_set: mruby_set_code\@\S+:\d+:1/);
runaway_ok('/async', qr/mruby_content_handler_code\@\S+:\d+:1/);
runaway_ok('/blocks', qr/mruby_content_handler_code\@\S+:\d+:1/);
runaway_ok('/body-filter', qr/mruby_output_body_filter: mruby_output_body_filter_code\@\S+:\d+:1/);
# the header is not sent yet: the response becomes a 500
runaway_ok('/header-filter', qr/mruby_output_header_filter: mruby_output_header_filter_code\@\S+:\d+:1/);
runaway_ok('/header-filter-short', qr/mruby_output_header_filter_code\@\S+:\d+:2/, 100);
runaway_ok('/short', qr/mruby_content_handler_code\@\S+:\d+:1/, 100);

# A runaway include after the page's header went out: no script can send a
# header before it ends (there is no streaming API), so this is how a
# stopped script meets a sent header. nginx answers a failed subrequest
# with its error page in place of the include: the response stays whole
# (chunked, terminated), one log line, and the worker serves on.
{
    my $from = error_log_size();
    my $t0 = time;
    my $s = open_request('/ssi');
    my $raw = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(10)) {
        my $n = $s->sysread(my $buf, 65536);
        last unless $n;
        $raw .= $buf;
    }
    close $s;
    cmp_ok(time - $t0, '<', $max_seconds, 'ssi: answered in time');
    like($raw, qr{\AHTTP/1\.1 200 OK\r\n}, 'ssi: the page header was sent (200) before the include ran away');
    like($raw, qr{\r\n\r\n7\r\nbefore \r\n}, 'ssi: the text before the include went out');
    like($raw, qr{500 Internal Server Error.*\r\n6\r\n after\r\n0\r\n\r\n\z}s,
        'ssi: the include became the 500 page, the rest of the page and the last chunk follow');
    my @lines = grep { /CPU time limit exceeded/ } split /\n/, error_log_since($from);
    is(scalar @lines, 1, 'ssi: exactly one log line') or diag join "\n", @lines;
    like($lines[0] // '', qr/\[error\] .*mruby_content_handler_code\@\S+:\d+:1: CPU time limit exceeded: .*subrequest: "\/loop"/,
        'ssi: naming the script line and the subrequest');
    my ($next, $next_pid) = http_get('/pid');
    is($next, 200, 'ssi: the next request is answered');
    is($next_pid, $pid, 'ssi: by the same worker');
}
($status, my $body) = http_get('/unlimited');
is($status, 200, 'mruby_cpu_limit off lets a long script finish');
is($body, '2000000', 'with its result');

# Reload while a runaway script runs: the old worker stops it and exits,
# the new one serves.
my $servroot = servroot();
my $in_flight = open_request('/loop');
sleep 0.05;
my $t0 = time;
kill 'HUP', do { open my $f, '<', "$servroot/logs/nginx.pid" or die; my $p = <$f>; chomp $p; $p };
ok(wait_until(sub { !kill 0, $pid }, 10), 'after HUP the old worker exits');
my $reload_seconds = time - $t0;
cmp_ok($reload_seconds, '<', $max_seconds, sprintf('promptly (%.2f s) although a script was running away', $reload_seconds));
my ($in_flight_status) = read_response($in_flight);
is($in_flight_status, 500, 'the runaway request got its 500');
ok(wait_until(sub { my ($s) = http_get('/pid'); $s == 200 }, 5), 'the new worker serves');

# Stop while a runaway script runs.
my $master = do { open my $f, '<', "$servroot/logs/nginx.pid" or die; my $p = <$f>; chomp $p; $p };
$in_flight = open_request('/loop');
sleep 0.05;
$t0 = time;
kill 'TERM', $master;
ok(wait_until(sub { !kill 0, $master }, 10), 'stop completes');
my $stop_seconds = time - $t0;
cmp_ok($stop_seconds, '<', $max_seconds + 2, sprintf('promptly (%.2f s) although a script was running away', $stop_seconds));
unlink "$servroot/logs/nginx.pid";

unlike(error_log_since(0), qr/signal \d+ \((?:SIGSEGV|SIGABRT|SIGBUS)\)|exited on signal/, 'no worker crashed');

# nginx -t rejects bad values
sub config_test {
    my ($directive) = @_;
    my $conf = "$servroot/conf/bad.conf";
    open my $fh, '>', $conf or die $!;
    my $modules = join '', map { "load_module $_;\n" } split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || "$FindBin::Bin/../build/modules/ngx_http_mruby_module.so");
    print $fh "$modules\nevents {}\nhttp { $directive server { listen 127.0.0.1:$port; } }\n";
    close $fh;
    my $binary = $ENV{TEST_NGINX_BINARY} || "$FindBin::Bin/../build/sbin/nginx";
    my $out = `$binary -p $servroot/ -c conf/bad.conf -t 2>&1`;
    return ($? >> 8, $out);
}
my ($code, $out) = config_test('mruby_cpu_limit fast;');
isnt($code, 0, 'nginx -t fails for mruby_cpu_limit fast');
like($out, qr/invalid value "fast" in "mruby_cpu_limit" directive, it must be a time \(500ms, 5s\) or "off"/, 'naming the value') or diag $out;
($code, $out) = config_test('mruby_cpu_limit 0;');
isnt($code, 0, 'nginx -t fails for mruby_cpu_limit 0');
($code, $out) = config_test('mruby_cpu_limit 1s; mruby_cpu_limit 2s;');
like($out, qr/"mruby_cpu_limit" directive is duplicate/, 'a duplicate is an error');
($code, $out) = config_test('mruby_cpu_limit 750ms;');
is($code, 0, 'nginx -t accepts 750ms') or diag $out;

done_testing();
