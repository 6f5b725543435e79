# The vlimit ledger of workers (who holds which counts) with real
# processes:
# * the cache manager and cache loader (proxy_cache_path) run neither
#   mruby_init_worker nor join the ledger: only workers do;
# * a registered worker pid that now belongs to another user's process
#   (the pid was recycled; kill(pid, 0) says EPERM) is a dead worker: the
#   next worker to start gives its counts back.
# Runs itself in a new pid namespace (unshare) so that it can hand a dead
# worker's pid to a process of another user (via ns_last_pid).
use strict;
use warnings;

use FindBin;
use POSIX ();

BEGIN {
    unless ($ENV{VLIMIT_LEDGER_IN_PIDNS}) {
        $ENV{VLIMIT_LEDGER_IN_PIDNS} = 1;
        { exec('unshare', '--pid', '--fork', '--mount-proc', $^X, $0, @ARGV) }
        print "Bail out! cannot run in a new pid namespace: unshare: $!\n";
        exit 1;
    }
}

use lib "$FindBin::Bin/lib";
use Test::More;
use VlimitTest;

nginx_available() or BAIL_OUT('nginx or the module is not built');
$$ == 1 or BAIL_OUT("not in a new pid namespace (pid $$)");

# The children of the master by their title: { worker => [pids], 'cache manager' => [...], ... }.
sub children {
    my $master = do { open my $fh, '<', servroot() . '/logs/nginx.pid' or return {}; <$fh> };
    chomp $master;
    my %kinds;
    for (`ps -o pid=,args= --ppid $master`) {
        my ($pid, $title) = /^\s*(\d+)\s+nginx: (.*?) process/ or next;
        next if /shutting down/;
        push @{ $kinds{$title} }, $pid + 0;
    }
    $_ = [sort { $a <=> $b } @$_] for values %kinds;
    return \%kinds;
}

sub log_text { error_log_since(0) }

my $silent = silent_backend();
my $http = <<"EOF";
    vlimit_zone vl 64k;
    upstream silent { server 127.0.0.1:@{[ backend_port() ]}; }
    server {
        listen 127.0.0.1:@{[ port() ]};
        location /slow/ { vlimit ip 5 zone=vl; proxy_pass http://silent; proxy_read_timeout 60s; }
        location = /stats { vlimit_stats; }
    }
EOF

# --- the cache manager and loader are not workers ---------------------------
start_nginx(workers => 2, http => <<"EOF");
    proxy_cache_path @{[ servroot() ]}/cache keys_zone=cache:1m;
    mruby_init_worker_code 'Nginx.log Nginx::LOG_NOTICE, "init_worker ran in pid #{Process.pid}"';
$http
EOF
ok(wait_until(sub { my $c = children(); @{ $c->{worker} // [] } == 2 && $c->{'cache manager'} && $c->{'cache loader'} }),
    'two workers, a cache manager and a cache loader are running');
my $kids = children();
my @workers = @{ $kids->{worker} };
my @helpers = (@{ $kids->{'cache manager'} }, @{ $kids->{'cache loader'} });
ok(wait_until(sub { (() = log_text() =~ /init_worker ran in pid/g) >= 2 }), 'mruby_init_worker ran');
sleep 0.3;    # a helper's init line, if it ran one, would be there by now
my @ran_in = sort { $a <=> $b } log_text() =~ /init_worker ran in pid (\d+)/g;
is("@ran_in", "@workers", 'mruby_init_worker ran once in each worker and nowhere else');
my @registered = sort { $a <=> $b } @{ stats()->{vl}{workers} };
is("@registered", "@workers", 'the ledger lists the workers only');
ok(!(grep { my $h = $_; grep { $_ == $h } @registered } @helpers), 'no cache manager or loader in the ledger');

# --- a recycled pid of another user is a dead worker ------------------------
start_nginx(workers => 1, user => 'nobody nogroup', http => $http);
# (the master listens before it forks its worker: wait for the worker too)
wait_until(sub { @{ children()->{worker} // [] } == 1 });
my ($first) = @{ children()->{worker} // [] };
my $held = open_request('/slow/1');
ok(wait_until(sub { key_count('vl', '127.0.0.1') == 1 }), 'a request held by the worker is counted');

# A reload: a new worker registers while the old one drains its request.
kill 'HUP', do { open my $fh, '<', servroot() . '/logs/nginx.pid'; my $p = <$fh>; chomp $p; $p };
ok(wait_until(sub { my ($w) = @{ children()->{worker} // [] }; $w && $w != $first }), 'reloaded: a new worker');
my ($second) = @{ children()->{worker} };
sleep 0.3;
is(key_count('vl', '127.0.0.1'), 1, 'the new worker leaves a live worker of its own user alone');

# The old worker dies holding the count, and its pid goes to a process of
# another user (daemon).
kill 'KILL', $first;
ok(wait_until(sub { !kill 0, $first }), 'the old worker is gone');
my $impostor;
for (1 .. 5) {
    open my $fh, '>', '/proc/sys/kernel/ns_last_pid' or BAIL_OUT("ns_last_pid: $!");
    print $fh $first - 1;
    close $fh;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        POSIX::setgid(1);
        POSIX::setuid(1);
        { exec 'sleep', '60' }
        POSIX::_exit(127);
    }
    if ($pid == $first) { $impostor = $pid; last }
    kill 'KILL', $pid;
    waitpid $pid, 0;
}
ok($impostor, "a process of user daemon now has the dead worker's pid $first");
ok(wait_until(sub { ((stat "/proc/$first")[4] // -1) == 1 }), '... owned by daemon (uid 1) once it has changed user');
is(key_count('vl', '127.0.0.1'), 1, 'the dead worker\'s count is still held');

# The next worker to start checks the ledger: kill(pid, 0) = EPERM.
kill 'KILL', $second;
ok(wait_until(sub { my ($w) = @{ children()->{worker} // [] }; $w && $w != $second }), 'the master starts a new worker');
ok(wait_until(sub { key_count('vl', '127.0.0.1') == 0 }), 'the new worker gave the count back');
like(log_text(), qr/vlimit: zone "vl": gave back 1 counts held by dead worker $first\b/, 'and said so');
my ($third) = @{ children()->{worker} };
my @now = @{ stats()->{vl}{workers} };
is("@now", "$third", 'the ledger lists only the running worker');
my ($status) = http_get('/stats');
is($status, 200, 'the new worker serves');

kill 'KILL', $impostor;
waitpid $impostor, 0;
close $held;
done_testing();
