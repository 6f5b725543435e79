# Symbols are never freed, and mruby's own symbol table turns every lookup
# linear past ~65,000 symbols. A script that interns request data must not
# poison the worker: after 100,000 requests that each intern a distinct
# symbol, the hello request and a request that looks a name up cost what
# they cost before. Measured as worker CPU time, which a shared machine makes
# noisy (+-30% between runs on a loaded 2-core CI machine), so the bound is
# 3x: mruby's own table made that lookup about 20x slower (100 us against 5).
# Plain Perl (helpers in t/lib/VlimitTest.pm): 100,000 pipelined requests.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Socket::IP;
use POSIX ();
use Test::More;
use VlimitTest;

plan skip_all => 'nginx or the module is not built' unless nginx_available();

my $port = port();
my $http = <<"EOF";
    server {
        listen 127.0.0.1:$port;
        server_name localhost;
        keepalive_requests 1000000;
        location = /intern {
            mruby_content_handler_code '"tenant_key_#{Nginx::Request.new.args}".to_sym; Nginx.rputs "ok"';
        }
        location = /plain {
            mruby_content_handler_code 'Nginx.rputs "hello_world"';
        }
        location = /hello {
            mruby_content_handler_code 'Nginx.rputs "hello_world".to_sym.to_s';
        }
    }
EOF

start_nginx(workers => 1, http => $http);
my ($worker) = worker_pids();

# `$n` pipelined requests on one connection, `$make->($i)` the path of the i-th.
sub pipelined {
    my ($n, $make) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port) or die "connect: $!";
    my $req = join '', map { "GET " . $make->($_) . " HTTP/1.1\r\nHost: x\r\n" . ($_ == $n ? "Connection: close\r\n" : "") . "\r\n" } 1 .. $n;
    my $reader = fork // die;
    if (!$reader) { print {$s} $req; POSIX::_exit(0) }   # no END blocks in the child
    my $all = '';
    while (sysread($s, my $buf, 1 << 20)) { $all .= $buf }
    waitpid $reader, 0;
    my $ok = () = $all =~ m{HTTP/1\.1 200 }g;
    return $ok;
}

# worker CPU time in ns (schedstat: time spent running on a CPU)
sub worker_cpu {
    open my $fh, '<', "/proc/$worker/schedstat" or die "schedstat: $!";
    my ($ns) = split ' ', <$fh>;
    return $ns;
}

# Worker CPU ns per request of `/hello` (an answer after a symbol lookup)
# and `/plain` (the same answer without it), in alternating rounds of
# 20,000 requests, the smallest of 5 each.
sub costs {
    my %best;
    for (1 .. 5) {
        for my $path ('/hello', '/plain') {
            my $before = worker_cpu();
            my $ok = pipelined(20_000, sub { $path });
            die "$path failed ($ok of 20000)" unless $ok == 20_000;
            my $used = (worker_cpu() - $before) / 20_000;
            $best{$path} = $used if !defined $best{$path} || $used < $best{$path};
        }
    }
    return \%best;
}

pipelined(5_000, sub { '/hello' });    # warm up
my $before = costs();

my $interned = 0;
for my $batch (0 .. 9) {
    $interned += pipelined(10_000, sub { '/intern?' . ($batch * 10_000 + $_[0]) });
}
is($interned, 100_000, '100,000 requests each interned a distinct symbol');

my $after = costs();
for my $case (['/plain', 'the hello request', 3], ['/hello', 'a request that looks a name up', 3]) {
    my ($path, $what, $bound) = @$case;
    my $ratio = $after->{$path} / $before->{$path};
    cmp_ok($ratio, '<=', $bound, sprintf("%s costs the same after them (%.2f -> %.2f us of worker CPU, x%.2f)",
        $what, $before->{$path} / 1000, $after->{$path} / 1000, $ratio));
}
unlike(error_log_since(0), qr/\[(?:error|alert|crit)\]/, 'no errors');

done_testing();
