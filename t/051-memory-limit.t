# mruby_memory_limit: a script that allocates past the VM's cap gets
# NoMemoryError (500 and one log line naming the script line), the worker
# gives the memory back (RSS under the cap plus what it used before) and
# serves the next request. Plain Perl (helpers in t/lib/VlimitTest.pm): the
# RSS before and after must come from the same worker.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use VlimitTest;

plan skip_all => 'nginx or the module is not built' unless nginx_available();

my $port = port();
my $http = <<"EOF";
    mruby_memory_limit 64m;
    server {
        listen 127.0.0.1:$port;
        server_name localhost;
        location = /rss {
            mruby_content_handler_code 'Nginx.rputs File.read("/proc/self/status")[/VmRSS:\\s+(\\d+)/, 1]';
        }
        location = /hog {
            mruby_content_handler_code 'a = []
loop { a << "x" * 1_000_000 }';
        }
        location = /huge { mruby_content_handler_code 's = "x" * 2_000_000_000'; }
        location = /rescued {
            mruby_cpu_limit 2s;
            mruby_content_handler_code '
                a = []
                begin
                  loop { a << "x" * 1_000_000 }
                rescue NoMemoryError
                  a = nil
                end
                Nginx.rputs "recovered"';
        }
        location = /hello { mruby_content_handler_code 'Nginx.rputs "hello"'; }
    }
EOF

start_nginx(workers => 1, http => $http);
my ($status, $before) = http_get('/rss');
is($status, 200, 'RSS before');
my $cap_kb = 64 * 1024;

for my $round (1 .. 3) {
    my $from = error_log_size();
    ($status) = http_get('/hog');
    is($status, 500, "round $round: the memory hog gets 500");
    my @lines = grep { /memory limit exceeded/ } split /\n/, error_log_since($from);
    is(scalar @lines, 1, "round $round: one log line");
    like($lines[0] // '', qr/\[error\] .*mruby_content_handler: mruby_content_handler_code\@\S+:\d+:2: memory limit exceeded: the VM may hold 64 MB \(mruby_memory_limit\) \(NoMemoryError\)/,
        "round $round: naming the script line and the limit");
    my ($st, $after) = http_get('/rss');
    is($st, 200, "round $round: the next request is served");
    cmp_ok($after, '<', $before + $cap_kb, "round $round: worker RSS ${after} kB is under the cap plus the ${before} kB before");
    cmp_ok($after, '<', $before + $cap_kb / 4, "round $round: and the memory went back (within 16 MB of before)");
}

my $from = error_log_size();
($status) = http_get('/huge');
is($status, 500, 'a single 2 GB allocation gets 500');
like(error_log_since($from), qr/mruby_content_handler_code\@\S+:\d+:1: memory limit exceeded/, 'logged with its line');

my $body;
($status, $body) = http_get('/rescued');
is($status, 200, 'a script may rescue NoMemoryError');
is($body, 'recovered', 'and go on once it dropped what it held');

($status, $body) = http_get('/hello');
is($body, 'hello', 'the worker serves normally afterwards');
unlike(error_log_since(0), qr/signal \d+ \((?:SIGSEGV|SIGABRT|SIGBUS)\)|exited on signal/, 'no worker crashed');

# nginx -t
my $servroot = servroot();
sub config_test {
    my ($directive, $where) = @_;
    my $conf = "$servroot/conf/bad.conf";
    open my $fh, '>', $conf or die $!;
    my $modules = join '', map { "load_module $_;\n" } split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || "$FindBin::Bin/../build/modules/ngx_http_mruby_module.so");
    my $server = $where && $where eq 'server' ? "server { $directive listen 127.0.0.1:$port; }" : "$directive server { listen 127.0.0.1:$port; }";
    print $fh "$modules\nevents {}\nhttp { $server }\n";
    close $fh;
    my $binary = $ENV{TEST_NGINX_BINARY} || "$FindBin::Bin/../build/sbin/nginx";
    my $out = `$binary -p $servroot/ -c conf/bad.conf -t 2>&1`;
    return ($? >> 8, $out);
}
my ($code, $out) = config_test('mruby_memory_limit lots;');
isnt($code, 0, 'nginx -t fails for mruby_memory_limit lots');
like($out, qr/invalid value "lots" in "mruby_memory_limit" directive, it must be a size of at least 1m/, 'naming the value') or diag $out;
($code, $out) = config_test('mruby_memory_limit 64m;', 'server');
like($out, qr/"mruby_memory_limit" directive is not allowed here/, 'http level only') or diag $out;
($code, $out) = config_test('mruby_memory_limit off;');
is($code, 0, 'off is accepted') or diag $out;

done_testing();
