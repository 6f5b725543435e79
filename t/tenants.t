# Tenant runners (issue 9) with real users, real document roots, Debian's
# php-cgi and nginx workers running as nobody. Needs root (CI runs as root):
# skipped otherwise. Plain Perl (t/lib/TenantTest.pm, t/lib/VlimitTest.pm):
# many requests in flight, process tables, kill -9, reload.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use VlimitTest;
use TenantTest;

plan skip_all => 'nginx or the module is not built' unless nginx_available();
my $skip = tenants_skip_reason();
plan skip_all => $skip if $skip;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
my %users = tenant_users();
my ($bin_uid) = (getpwnam('bin'))[2];
my @tenants = map { "t$_" } 1 .. 5;
my %uid_of = map { ("t$_" => $users{"ngxt$_"}[0]) } 1 .. 5;

my %php = (
    'id.php'    => qq{<?php echo posix_getuid(), " ", posix_getgid(), "\\n";\n},
    'read.php'  => <<'PHP',
<?php
$c = @file_get_contents($_GET['f']);
if ($c === false) { $e = error_get_last(); echo "DENIED ", $e ? $e['message'] : '', "\n"; }
else { echo "READ ", $c; }
PHP
    'write.php' => qq{<?php echo \@file_put_contents(\$_GET['f'], "data") === false ? "DENIED\\n" : "WROTE\\n";\n},
    'priv.php'  => <<'PHP',
<?php
echo @posix_setuid(0) ? "SETUID OK\n" : "SETUID DENIED\n";
echo @posix_kill((int)$_GET['pid'], 9) ? "KILL OK\n" : "KILL DENIED " . posix_strerror(posix_get_last_error()) . "\n";
PHP
    'sleep.php' => qq{<?php usleep((int)\$_GET['ms'] * 1000); echo "slept ", posix_getuid(), "\\n";\n},
    'loop.php'  => qq{<?php while (true) {}\n},
    'stderr.php' => qq{<?php file_put_contents('php://stderr', "php says one\\nphp says two\\n"); echo "ok\\n";\n},
    # writes an unfinished line and dies: the line is logged once it is reaped
    'lastwords.php' => qq{<?php file_put_contents('php://stderr', "last words of php"); posix_kill(posix_getpid(), 9);\n},
);

# Ruby scripts (0600), run in the owner's own mruby VM.
my %ruby = (
    'id.rb'     => qq{Nginx.rputs "#{Process.uid} #{Process.euid}\\n"\n},
    'size.rb'   => qq{Nginx.rputs "abc".size.to_s\n},
    'evil.rb'   => qq{class String; def size; 42; end; end\nNginx.rputs "abc".size.to_s\n},
    'rack.rb'   => qq{run Proc.new { |env| [201, { 'Content-Type' => 'text/plain', 'X-Rack' => 'yes' }, ["rack \#{env['REQUEST_METHOD']} \#{env['QUERY_STRING']} \#{Process.uid}\\n"]] }\n},
    'api.rb'    => <<'RB',
r = Nginx::Request.new
Nginx::Headers_out.new['X-Api'] = 'set'
Nginx.rputs [r.method, r.args, r.uri, Nginx::Headers_in.new['X-Test'], Nginx::Var.new.request_method].join(',')
%w[headers_in var request].each do |what|
  begin
    case what
    when 'headers_in' then Nginx::Headers_in.new['X-Test'] = 'no'
    when 'var' then Nginx::Var.new.request_method = 'PUT'
    when 'request' then r.uri = '/elsewhere'
    end
  rescue NotImplementedError => e
    Nginx.rputs " #{what}:ro"
  end
end
RB
    'return.rb' => qq{Nginx.return Nginx::HTTP_FORBIDDEN\nNginx.rputs "no"\n},
    'error.rb'  => qq{raise "tenant script failed on purpose"\n},
    'loop.rb'   => qq{while true; end\n},
);

# CGI programs (0700: only the owner may even read them).
my %cgi = (
    'id.cgi'      => qq{#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho "\$(id -u) \$(id -g)"\n},
    'suid.cgi'    => qq{#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho "euid \$(./suid-id -u) ruid \$(./suid-id -ru)"\n},
    'ptrace.cgi'  => <<'PL',
#!/usr/bin/perl
print "Content-Type: text/plain\r\n\r\n";
my $r = syscall(101, 16, $ENV{QUERY_STRING} + 0, 0, 0);    # PTRACE_ATTACH
print $r == -1 ? "PTRACE DENIED $!\n" : "PTRACE OK\n";
PL
    'loop.cgi'    => qq{#!/bin/sh\nwhile :; do :; done\n},
    # the main shell forks once, before the bomb exists, and then execs its
    # sleep, which holds the output open until fastcgi_read_timeout (504).
    # (Called from the main shell, `b | b &` makes dash fork each side of
    # the pipe itself: the second fork raced the first side's children for
    # RLIMIT_NPROC, the main shell died of "Cannot fork", and once the bomb's
    # short-lived shells had all failed too the output ended: 502.)
    'bomb.cgi'    => qq{#!/bin/sh\nb() { b | b & }\n(b) &\nexec sleep 60\n},
    'memhog.cgi'  => qq{#!/usr/bin/perl\nmy \$x = "x" x (1024 * 1024 * 1024);\nprint "Content-Type: text/plain\\r\\n\\r\\nallocated\\n";\n},
    'env.cgi'     => qq{#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho "\$REQUEST_METHOD \$QUERY_STRING"\ncat\n},
    'stderr.cgi'  => qq{#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\nprintf 'cgi says one\\ncgi says two\\n' >&2\n},
    # 2,000 stderr lines at once: more than an owner's burst (200)
    'flood.cgi'   => qq{#!/usr/bin/perl\nprint STDERR "flood line \$_\\n" for 1 .. 2000;\nprint "Content-Type: text/plain\\r\\n\\r\\nflooded\\n";\n},
    # tries to write each file named in the body (its own cgroup's), and to make a group
    'cgwrite.cgi' => <<'PL',
#!/usr/bin/perl
print "Content-Type: text/plain\r\n\r\n";
local $/; my $body = <STDIN>;
for my $path (split /\n/, $body) {
    if ($path =~ s/^mkdir //) { print mkdir($path) ? "MADE $path\n" : "DENIED $path: $!\n"; next }
    my $ok = open(my $fh, '>', $path) && print($fh "$$\n") && close($fh);
    print $ok ? "WROTE $path\n" : "DENIED $path: $!\n";
}
PL
    # a child that leaves the runner's session (and so its kill) behind
    # (it answers only once the child has its own session: the runner kills
    # the program's process group as soon as the program exits)
    'daemon.cgi'  => <<'PL',
#!/usr/bin/perl
use POSIX ();
pipe(my $r, my $w) or die "pipe: $!";
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    close $r;
    POSIX::setsid();
    open STDIN, '<', '/dev/null'; open STDOUT, '>', '/dev/null'; open STDERR, '>', '/dev/null';
    syswrite $w, 'x';
    close $w;
    exec '/usr/bin/sleep', '300';
    POSIX::_exit(1);
}
close $w;
sysread $r, my $byte, 1;
print "Content-Type: text/plain\r\n\r\nstarted\n";
PL
);

# Five sites, each owned by its tenant; scripts 0600 (the nobody workers
# cannot read them, only their owner's runner can) or 0640.
for my $n (1 .. 5) {
    my $host = "t$n";
    make_site($host, "ngxt$n");
    for my $name (sort keys %php) {
        write_site_file($host, $name, $php{$name}, owner => "ngxt$n", mode => $name eq 'id.php' ? 0600 : 0640);
    }
    write_site_file($host, 'static.txt', "static $host\n", owner => "ngxt$n", mode => 0644);
    for my $name (sort keys %cgi) {
        write_site_file($host, $name, $cgi{$name}, owner => "ngxt$n", mode => 0700);
    }
    for my $name (sort keys %ruby) {
        write_site_file($host, $name, $ruby{$name}, owner => "ngxt$n", mode => 0600);
    }
    # mruby_add_handler: the requested file is the script, whatever its name
    for my $name (qw(id.rb size.rb evil.rb)) {
        (my $bare = $name) =~ s/\.rb$//;
        write_site_file($host, "handler/$bare", $ruby{$name}, owner => "ngxt$n", mode => 0600);
    }
    chown $users{"ngxt$n"}[0], $users{"ngxt$n"}[1], site_dir($host) . '/handler';
    chmod 0711, site_dir($host) . '/handler';
}
# a setuid-root copy of id(1) that t1's CGI program runs
system('cp', '/usr/bin/id', site_dir('t1') . '/suid-id') == 0 or die 'cp id';
chmod 04755, site_dir('t1') . '/suid-id';
write_site_file('t2', 'secret.txt', "t2 secret\n", owner => 'ngxt2', mode => 0600);
write_site_file('t2', 'public.txt', "t2 public\n", owner => 'ngxt2', mode => 0644);
write_site_file('t1', 'notwritable.txt', "", owner => 'ngxt1', mode => 0644);
mkdir site_dir('t1') . '/tmp';
chown $users{ngxt1}[0], $users{ngxt1}[1], site_dir('t1') . '/tmp';
chmod 0700, site_dir('t1') . '/tmp';
# owner-check cases
write_site_file('t1', 'root.php', $php{'id.php'}, owner => 'root', mode => 0644);
write_site_file('t1', 'ww.php', $php{'id.php'}, owner => 'ngxt1', mode => 0666);
write_site_file('t1', 'other.php', $php{'id.php'}, owner => 'ngxt2', mode => 0644);
write_site_file('t1', 'wwdir/x.php', $php{'id.php'}, owner => 'ngxt1', mode => 0600);
chown $users{ngxt1}[0], $users{ngxt1}[1], site_dir('t1') . '/wwdir';
chmod 0777, site_dir('t1') . '/wwdir';
symlink site_dir('t2') . '/id.php', site_dir('t1') . '/link.php' or die "symlink: $!";
system('chown', '-h', 'ngxt1:ngxt1', site_dir('t1') . '/link.php') == 0 or die 'chown -h';
# gid-only mismatch, a directory owned like its file but not like the root, a gid below the minimum
write_site_file('t1', 'gidonly.php', $php{'id.php'}, owner => 'ngxt1', mode => 0644);
chown $users{ngxt1}[0], $users{ngxt2}[1], site_dir('t1') . '/gidonly.php';
write_site_file('t1', 'otherdir/x.php', $php{'id.php'}, owner => 'ngxt2', mode => 0644);
chown $users{ngxt2}[0], $users{ngxt2}[1], site_dir('t1') . '/otherdir';
chmod 0755, site_dir('t1') . '/otherdir';
write_site_file('t1', 'lowgid.php', $php{'id.php'}, owner => 'ngxt1', mode => 0644);
chown $users{ngxt1}[0], scalar((getgrnam('bin'))[2]), site_dir('t1') . '/lowgid.php';
make_site('low', 'bin');
write_site_file('low', 'id.php', $php{'id.php'}, owner => 'bin', mode => 0644);

sub http_conf {
    my (%o) = @_;
    my $extra = $o{extra} // '';
    return <<"EOF";
    tenant_interpreter .php /usr/bin/php-cgi;
    tenant_socket_dir $base/run;
    tenant_writable tmp;
    tenant_max_processes 32;
    tenant_max_memory 256m;
$extra
    log_format tenant '\$host \$status \$tenant_uid \$tenant_runner_pid \$tenant_spawn';
    server {
        listen 127.0.0.1:${\ port()};
        server_name localhost;
        root $base/sites/\$host/htdocs;
        access_log logs/tenant.log tenant;
        location ~ \\.php\$ {
            tenant_runner on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param SCRIPT_NAME \$fastcgi_script_name;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param REDIRECT_STATUS 200;
            fastcgi_read_timeout 2s;
            add_header X-Tenant-Uid \$tenant_uid always;
            add_header X-Runner-Pid \$tenant_runner_pid always;
            add_header X-Spawn \$tenant_spawn always;
        }
        location ~ \\.rb\$ {
            tenant_runner on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param DOCUMENT_URI \$document_uri;
            fastcgi_read_timeout 2s;
        }
        location ^~ /handler/ {
            tenant_runner on;
            mruby_add_handler on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_read_timeout 2s;
            add_header X-Runner-Pid \$tenant_runner_pid always;
            if (\$arg_skip) {
                set \$skipped 1;
            }
        }
        location ~ \\.cgi\$ {
            tenant_runner on;
            tenant_cgi on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param CONTENT_LENGTH \$content_length;
            fastcgi_read_timeout 2s;
            add_header X-Tenant-Uid \$tenant_uid always;
            add_header X-Runner-Pid \$tenant_runner_pid always;
        }
    }
EOF
}

# tenant_cgroup when this machine lets us make groups (skipped otherwise).
# (the supervisor nginx itself uses: next to the nginx binary under test)
my $supervisor_bin = ($ENV{TEST_NGINX_BINARY} || "$FindBin::Bin/../build/sbin/nginx") =~ s{[^/]+$}{ngx-mruby-supervisor}r;
my $cgroup_name = tenant_cgroup_name();
my ($cgroup_ok, @cgroup_roots) = cgroup_check($supervisor_bin, $cgroup_name);
diag("tenant_cgroup not tested: $cgroup_roots[0]") unless $cgroup_ok;
my $cgroup_conf = $cgroup_ok ? "    tenant_cgroup $cgroup_name;\n" : '';

# The group directories of owner `$uid`, one per hierarchy (this generation's).
sub owner_groups {
    my ($uid) = @_;
    return map { glob("$_/*/$uid") } @cgroup_roots;
}

sub header_of {
    my ($head, $name) = @_;
    return $head =~ /^\Q$name\E:\s*(.*?)\r?$/mi ? $1 : '';
}

sub log_has {
    my ($from, $re) = @_;
    return wait_until(sub { error_log_since($from) =~ $re }, 5);
}

# ---------------------------------------------------------------------------
# Main configuration: defaults, workers as nobody.
# ---------------------------------------------------------------------------

start_nginx(http => http_conf(extra => "    tenant_queue_timeout 20s;\n    tenant_max_runners 32;\n$cgroup_conf"),
            user => 'nobody nogroup');

subtest 'each tenant runs as its owner; spawned, then hit' => sub {
    for my $host (@tenants) {
        my ($status, $body, $head) = http_get_host($host, '/id.php');
        is($status, 200, "$host: 200");
        like($body, qr/^$uid_of{$host} \d+$/, "$host: posix_getuid() is the owner's uid");
        is(header_of($head, 'X-Tenant-Uid'), $uid_of{$host}, "$host: \$tenant_uid");
        is(header_of($head, 'X-Spawn'), 'spawned', "$host: first request spawned a runner");
        my ($status2, undef, $head2) = http_get_host($host, '/id.php');
        is(header_of($head2, 'X-Spawn'), 'hit', "$host: second request reused it");
        is(header_of($head2, 'X-Runner-Pid'), header_of($head, 'X-Runner-Pid'), "$host: same runner pid");
    }
    my ($status, $body) = http_get_host('t1', '/static.txt');
    is("$status $body", "200 static t1\n", 'static files still served by the worker');
};

subtest 'CGI programs run as their owner, with the request' => sub {
    for my $host (@tenants) {
        my ($status, $body) = http_get_host($host, '/id.cgi');
        is("$status $body", "200 $uid_of{$host} $users{\"ngx$host\"}[1]\n", "$host: id -u of its CGI program");
    }
    my ($status, $body) = read_response(open_request('/env.cgi?a=1', host => 't3', method => 'POST', body => 'posted',
        proto => 'HTTP/1.0', headers => ['Content-Length: 6']));
    is("$status $body", "200 POST a=1\nposted", 'CGI gets the method, the query and the body on stdin');
};

subtest 'Ruby runs as its owner, in a VM of its own' => sub {
    for my $host (@tenants) {
        my ($status, $body) = http_get_host($host, '/id.rb');
        is("$status $body", "200 $uid_of{$host} $uid_of{$host}\n", "$host: Process.uid and euid are the owner's");
    }
    my ($status, $body) = http_get_host('t1', '/evil.rb');
    is($body, '42', 't1 redefines String#size in its VM');
    ($status, $body) = http_get_host('t2', '/size.rb');
    is($body, '3', "t2's next request sees the real String#size");
    ($status, $body) = http_get_host('t1', '/size.rb');
    is($body, '42', "t1's own VM keeps its redefinition (one owner, one VM)");
    my $head;
    ($status, $body, $head) = http_get_host('t3', '/rack.rb?x=1');
    is("$status $body", "201 rack GET x=1 $uid_of{t3}\n", 'Rack: run app, env from the FastCGI parameters');
    like($head, qr/^X-Rack: yes\r?$/m, 'Rack headers');
    my $sock = open_request('/api.rb?a=b', host => 't4', proto => 'HTTP/1.0', headers => ['X-Test: hello']);
    ($status, $body) = read_response($sock);
    is("$status $body", '200 GET,a=b,/api.rb,hello,GET headers_in:ro var:ro request:ro',
        'read-only Nginx::Request, Nginx::Var, Nginx::Headers_in; writes raise NotImplementedError');
    ($status) = http_get_host('t4', '/return.rb');
    is($status, 403, 'Nginx.return sets the status');
    my $from = error_log_size();
    ($status) = http_get_host('t5', '/error.rb');
    is($status, 500, 'an exception: 500');
    ok(log_has($from, qr/runner pid \d+ uid $uid_of{t5}: ruby runner: .*error\.rb.*tenant script failed on purpose/),
        'and one error line tagged with the owner');
};

subtest 'mruby_add_handler under tenant_runner: the requested file runs in its owner\'s Ruby runner' => sub {
    my %pid_of;
    for my $host (@tenants) {
        my ($status, $body, $head) = http_get_host($host, '/handler/id');
        is("$status $body", "200 $uid_of{$host} $uid_of{$host}\n", "$host: Process.uid and euid are the owner's");
        $pid_of{$host} = header_of($head, 'X-Runner-Pid');
        ok((proc_status($pid_of{$host}) // {})->{Uid} =~ /^$uid_of{$host}\t/, "$host: \$tenant_runner_pid is the owner's runner")
            or diag "pid $pid_of{$host}";
    }
    my @workers = worker_pids();
    ok(!grep({ my $w = $_; grep { $_ == $w } values %pid_of } @workers), 'never a worker');
    my ($status, $body) = http_get_host('t1', '/handler/evil');
    is("$status $body", '200 42', 't1 redefines String#size in its VM');
    ($status, $body) = http_get_host('t2', '/handler/size');
    is("$status $body", '200 3', "t2's next request sees the real String#size");
    ($status, $body) = http_get_host('t2', '/handler/size?skip=1');
    is("$status $body", '200 3', 'an if block inside the location passes to the runner too');
    ($status, $body) = http_get_host('t1', '/handler/size');
    is("$status $body", '200 42', "t1's own VM keeps it");
};

subtest '200 concurrent requests over 5 tenants, PHP, CGI and Ruby: never a wrong uid' => sub {
    my @order = map { $tenants[$_ % 5] } 0 .. 199;
    my $i = 0;
    my @kinds = ('/id.php', '/id.cgi', '/id.rb');
    my @socks = map { [$_, open_request($kinds[$i++ % 3], host => $_, proto => 'HTTP/1.0')] } @order;
    my $max_per_owner = 0;
    my %wrong;
    my $ok = 0;
    for my $pair (@socks) {
        my ($host, $sock) = @$pair;
        for my $t (@tenants) {
            my $n = () = runner_pids($uid_of{$t});
            $max_per_owner = $n if $n > $max_per_owner;
        }
        my ($status, $body) = read_response($sock, 30);
        if ($status == 200 && $body =~ /^(\d+) /) {
            $ok++;
            $wrong{"$host got $1"}++ if $1 != $uid_of{$host};
        } else {
            $wrong{"$host: status $status"}++;
        }
    }
    is($ok, 200, 'all 200 answered 200');
    is_deeply(\%wrong, {}, 'no request ran as another uid');
    cmp_ok($max_per_owner, '<=', 4, 'never more than tenant_max_runners_per_owner (4) runners per owner');
};

subtest 'capabilities and identities read from /proc' => sub {
    my @workers = worker_pids();
    ok(@workers >= 2, 'workers found');
    for my $w (@workers) {
        my $s = proc_status($w);
        is((split ' ', $s->{Uid})[0], (getpwnam('nobody'))[2], "worker $w runs as nobody");
        is("$s->{CapPrm} $s->{CapEff} $s->{CapAmb}", '0000000000000000 0000000000000000 0000000000000000',
            "worker $w: CapPrm, CapEff, CapAmb all 0");
        is($s->{NoNewPrivs}, 1, "worker $w: no_new_privs");
    }
    my @sup = supervisor_pids();
    is(scalar @sup, 1, 'one supervisor');
    my $s = proc_status($sup[0]);
    # CHOWN DAC_READ_SEARCH KILL SETGID SETUID SETPCAP
    is("$s->{CapEff} $s->{CapPrm} $s->{CapBnd} $s->{CapInh} $s->{CapAmb}",
        '00000000000001e5 00000000000001e5 00000000000001e5 0000000000000000 0000000000000000',
        'supervisor keeps CHOWN, DAC_READ_SEARCH, KILL, SETGID, SETUID, SETPCAP and nothing else');
    my @keeper = keeper_pids();
    is(scalar @keeper, 1, 'one keeper');
    $s = proc_status($keeper[0]);
    # with tenant_cgroup also DAC_OVERRIDE (the supervisor, which workers talk to, drops it)
    my $keeper_caps = $cgroup_ok ? '00000000000001e7' : '00000000000001e5';
    is("$s->{CapEff} $s->{CapBnd}", "$keeper_caps $keeper_caps", 'the keeper: the same, plus DAC_OVERRIDE with tenant_cgroup');
    for my $host (@tenants) {
        my ($pid) = runner_pids($uid_of{$host});
        ok($pid, "$host has a runner") or next;
        my $r = proc_status($pid);
        my $uid = $uid_of{$host};
        my $gid = $users{ "ngx$host" }[1];
        is($r->{Uid}, "$uid\t$uid\t$uid\t$uid", "$host runner: real, effective, saved uid are the owner's");
        is($r->{Gid}, "$gid\t$gid\t$gid\t$gid", "$host runner: gids are the owner's");
        is($r->{Groups} // '', '', "$host runner: no supplementary groups");
        is(join(' ', map { $r->{$_} } qw(CapInh CapPrm CapEff CapBnd CapAmb)), join(' ', ('0000000000000000') x 5),
            "$host runner: every capability set empty, bounding set included");
        is($r->{NoNewPrivs}, 1, "$host runner: no_new_privs");
        opendir my $dh, "/proc/$pid/fd";
        my @sockets = grep { (readlink "/proc/$pid/fd/$_" // '') =~ /^socket:/ } grep { /^\d+$/ } readdir $dh;
        is("@sockets", '0', "$host runner: its only socket is the listening one on fd 0");
    }
};

subtest 'cgroups: each runner is in its owner\'s group, which it cannot change' => sub {
    plan skip_all => "tenant_cgroup: $cgroup_roots[0]" unless $cgroup_ok;
    for my $host (@tenants) {
        http_get_host($host, '/id.cgi');
        my $uid = $uid_of{$host};
        my @groups = owner_groups($uid);
        is(scalar @groups, scalar @cgroup_roots, "$host: one group per hierarchy (@cgroup_roots)");
        my @runners = runner_pids($uid);
        ok(@runners, "$host has runners") or next;
        for my $pid (@runners) {
            open my $fh, '<', "/proc/$pid/cgroup" or next;
            my @lines = grep { m{/\Q$cgroup_name\E/[^/]+/$uid$} } <$fh>;
            is(scalar @lines, scalar @cgroup_roots, "$host runner $pid: /proc/$pid/cgroup names its owner's group in every hierarchy")
                or diag `cat /proc/$pid/cgroup`;
        }
        for my $dir (@groups) {
            my @procs = do { open my $fh, '<', "$dir/cgroup.procs"; map { 0 + $_ } <$fh> };
            my %in = map { $_ => 1 } @procs;
            ok(!grep({ !$in{$_} } @runners), "$dir holds every runner of $host");
            my @st = stat $dir;
            is(sprintf('%d %o', $st[4], $st[2] & 07777), '0 755', "$dir: root's, 0755");
            @st = stat "$dir/cgroup.procs";
            is(sprintf('%d %o', $st[4], $st[2] & 022), '0 0', "$dir/cgroup.procs: root's, not writable by others");
        }
    }
    # t1's CGI program tries to move itself, to raise its limits, to make a group
    my @t1 = owner_groups($uid_of{t1});
    my @targets;
    for my $dir (@t1) {
        opendir my $dh, $dir or next;
        push @targets, map { "$dir/$_" } sort grep { -f "$dir/$_" && ((stat "$dir/$_")[2] & 0200) } readdir $dh;
        (my $generation = $dir) =~ s{/[^/]+$}{};
        push @targets, "$generation/cgroup.procs", "mkdir $dir/escape";
    }
    ok(scalar(grep { m{/cgroup\.procs$} } @targets) >= 2 * @t1, 'targets include cgroup.procs of its own and the parent group');
    # the limits (not the counters, which move as the runners run)
    my $limit_re = qr{/(cpu\.cfs_quota_us|cpu\.cfs_period_us|cpu\.shares|cpu\.max|cpu\.weight|memory\.limit_in_bytes|memory\.soft_limit_in_bytes|memory\.max|memory\.high|pids\.max|blkio\.weight|io\.max)$};
    my $settings = sub { join '', map { do { open my $fh, '<', $_ or return ''; local $/; "$_=" . (<$fh> // '') } }
        grep { $_ =~ $limit_re } @targets };
    my $before = $settings->();
    my $sock = open_request('/cgwrite.cgi', host => 't1', method => 'POST', body => join("\n", @targets),
        proto => 'HTTP/1.0', headers => ['Content-Length: ' . length(join "\n", @targets)]);
    my ($status, $body) = read_response($sock, 10);
    is($status, 200, 'the CGI ran');
    my @lines = split /\n/, $body;
    is(scalar @lines, scalar @targets, 'it tried every target');
    is_deeply([grep { !/^DENIED .*: (Permission denied|Operation not permitted)$/ } @lines], [],
        'every write and mkdir denied (cgroup.procs, tasks, limits, the parent group)');
    ok(!grep({ -e "$_/escape" } @t1), 'no group was made');
    isnt($before, '', 'limit files were read');
    is($settings->(), $before, 'limits unchanged');
};

subtest 'cgroups: a process that left its runner\'s session dies with the owner\'s last runner' => sub {
    plan skip_all => "tenant_cgroup: $cgroup_roots[0]" unless $cgroup_ok;
    my $uid = $uid_of{t5};
    my ($status, $body) = http_get_host('t5', '/daemon.cgi');
    is("$status $body", "200 started\n", 'the CGI started a daemon');
    my $daemon = sub { grep { ((proc_status($_) // {})->{Name} // '') eq 'sleep' } uid_processes($uid) };
    ok(wait_until(sub { $daemon->() }, 2), 'the daemon outlives its request') or return;
    my ($pid) = $daemon->();
    my $sid = (split ' ', (do { open my $fh, '<', "/proc/$pid/stat"; <$fh> } =~ s/^.*\) //r))[3];
    ok(!grep({ my $r = $_; (split ' ', (do { open my $fh, '<', "/proc/$r/stat"; <$fh> // '' } =~ s/^.*\) //r))[3] == $sid } runner_pids($uid)),
        'in a session of its own');
    my $from = error_log_size();
    kill 'KILL', runner_pids($uid);
    ok(wait_until(sub { !$daemon->() }, 5), 'killed once t5 has no runner left');
    ok(log_has($from, qr/killed 1 process\(es\) of uid $uid left in its cgroup outside any runner/), 'logged');
    ok(wait_until(sub { !owner_groups($uid) }, 3), "t5's groups are removed");
    ($status) = http_get_host('t5', '/id.php');
    is($status, 200, 't5 is served again');
    is(scalar(owner_groups($uid)), scalar @cgroup_roots, 'in new groups');
};

subtest 'sandbox: what a tenant script cannot do' => sub {
    my $t2 = site_dir('t2');
    my ($st, $body) = http_get_host('t1', "/read.php?f=$t2/secret.txt");
    like($body, qr/^DENIED .*(Permission denied|Operation not permitted)/, "t1 cannot read t2's 0600 file");
    ($st, $body) = http_get_host('t1', "/read.php?f=$t2/public.txt");
    like($body, qr/^DENIED .*(Permission denied|Operation not permitted)/,
        "t1 cannot read t2's world-readable file (Landlock: outside its document root)");
    ($st, $body) = http_get_host('t2', "/read.php?f=$t2/public.txt");
    is($body, "READ t2 public\n", 't2 reads its own file');
    ($st, $body) = http_get_host('t1', '/read.php?f=/etc/passwd');
    like($body, qr/^DENIED /, 't1 cannot read /etc/passwd');
    my $t1 = site_dir('t1');
    ok(-u "$t1/suid-id" && (stat "$t1/suid-id")[4] == 0, 'suid-id is setuid root');
    ($st, $body) = http_get_host('t1', '/suid.cgi');
    is($body, "euid $uid_of{t1} ruid $uid_of{t1}\n", 'a setuid-root binary run from a CGI program gains nothing');
    my ($t2_runner) = runner_pids($uid_of{t2});
    ($st, $body) = http_get_host('t1', "/ptrace.cgi?$t2_runner");
    like($body, qr/^PTRACE DENIED (Operation not permitted|Permission denied)/, "ptrace of t2's runner: denied");
    my ($own_php) = grep { processes_under("$base/")->{$_}{comm} =~ /php/ } runner_pids($uid_of{t1});
    ($st, $body) = http_get_host('t1', "/ptrace.cgi?$own_php");
    like($body, qr/^PTRACE DENIED /, "ptrace of the same owner's other runner: denied (Landlock domains)");
    ($st, $body) = http_get_host('t1', "/write.php?f=$t1/tmp/out.txt");
    is($body, "WROTE\n", 't1 writes where tenant_writable says');
    ($st, $body) = http_get_host('t1', "/write.php?f=$t1/notwritable.txt");
    is($body, "DENIED\n", 't1 cannot write its own file outside tenant_writable');
    ($st, $body) = http_get_host('t1', '/write.php?f=/tmp/ngx-tenant-escape');
    is($body, "DENIED\n", 't1 cannot write /tmp');
    ok(!-e '/tmp/ngx-tenant-escape', 'nothing was written to /tmp');
    my ($sup) = supervisor_pids();
    my ($worker) = worker_pids();
    my ($other) = runner_pids($uid_of{t2});
    for my $victim (["supervisor", $sup], ["worker", $worker], ["t2's runner", $other]) {
        ok($victim->[1] && $victim->[1] > 1, "the $victim->[0] found") or next;
        ($st, $body) = http_get_host('t1', "/priv.php?pid=$victim->[1]");
        like($body, qr/^SETUID DENIED\nKILL DENIED /, "t1: setuid(0) denied, kill of the $victim->[0] denied");
        ok(kill(0, $victim->[1]), "the $victim->[0] is alive");
    }
};

subtest 'owner checks: 403 and the rule in the error log' => sub {
    my @cases = (
        ['t1', '/root.php', qr/refused "[^"]*root\.php": file is owned by root/],
        ['t1', '/ww.php', qr/refused "[^"]*ww\.php": file is world-writable/],
        ['t1', '/wwdir/x.php', qr/refused "[^"]*x\.php": directory is world-writable/],
        ['t1', '/other.php', qr/refused "[^"]*other\.php": owner mismatch: file $uid_of{t2}:\d+, directory $uid_of{t1}:/],
        ['t1', '/link.php', qr/refused "[^"]*link\.php": symlink owned by $uid_of{t1}:\d+ points to a file owned by $uid_of{t2}:/],
        ['low', '/id.php', qr/refused "[^"]*id\.php": owner $bin_uid:\d+ is below tenant_min_uid\/tenant_min_gid 1000:1000/],
        ['t1', '/gidonly.php', qr/refused "[^"]*gidonly\.php": owner mismatch: file $uid_of{t1}:$users{ngxt2}[1], directory $uid_of{t1}:$users{ngxt1}[1]/],
        ['t1', '/otherdir/x.php', qr/refused "[^"]*x\.php": owner mismatch: file $uid_of{t2}:\d+, document root $uid_of{t1}:/],
        ['t1', '/lowgid.php', qr/refused "[^"]*lowgid\.php": owner $uid_of{t1}:\d+ is below tenant_min_uid\/tenant_min_gid 1000:1000/],
    );
    for my $case (@cases) {
        my ($host, $path, $re) = @$case;
        my $from = error_log_size();
        my ($status) = http_get_host($host, $path);
        is($status, 403, "$host$path: 403");
        ok(log_has($from, qr/\[error\].*tenant_runner: $re/), "$host$path: the rule is logged")
            or diag error_log_since($from);
    }
    my ($status) = http_get_host('t1', '/missing.php');
    is($status, 404, 'a missing script is 404');
};

subtest 'forged and malformed requests from a (compromised) worker are refused and logged' => sub {
    my $socket = supervisor_socket();
    ok($socket, 'supervisor socket found') or return;
    my $t2 = site_dir('t2');
    my $low = site_dir('low');
    my $from = error_log_size();
    # tags no request of the worker uses
    my $worker = send_as_worker($socket, [worker_pids()],
        "A 4000000001 .php $uid_of{t1} $users{ngxt1}[1] $t2",
        "A 4000000002 .php $bin_uid $bin_uid $low",
        "A 4000000003 .exe $uid_of{t2} $users{ngxt2}[1] $t2",
        "A 4000000004 .php $uid_of{t2} $users{ngxt2}[1] $t2/../../t1/htdocs",
        "hello supervisor");
    ok($worker, "written on worker $worker\'s own connection") or return;
    ok(log_has($from, qr/refused a runner for uid:gid $uid_of{t1}:\d+ document root "\Q$t2\E" asked by worker pid $worker: document root is owned by $uid_of{t2}/),
        'a document root the named owner does not own: refused and logged');
    ok(log_has($from, qr/refused a runner for uid:gid $bin_uid:$bin_uid .*asked by worker pid $worker.*below tenant_min_uid/),
        'a uid below the minimum: refused and logged');
    ok(log_has($from, qr/refused a runner of unknown kind "\.exe" asked by worker pid $worker/), 'an unknown kind: refused and logged');
    ok(log_has($from, qr/refused a malformed request from worker pid $worker: document root is not a normalised path/),
        'a non-normalised document root: refused as malformed');
    ok(log_has($from, qr/refused a malformed request from worker pid $worker: unknown verb: "hello supervisor"/),
        'garbage logged');
    unlike(error_log_since($from), qr/runner pid \d+ started for uid $uid_of{t1} document root "\Q$t2\E"/, 'no runner was started');
    my ($status) = http_get_host('t1', '/id.php');
    is($status, 200, 'the worker still serves tenants');
};

subtest 'only this nginx\'s workers may connect: not the worker user elsewhere, not tenants, not root' => sub {
    my $socket = supervisor_socket();
    ok($socket, 'supervisor socket found') or return;
    my $t2 = site_dir('t2');
    my ($master) = VlimitTest::pid_of_master();
    my $from = error_log_size();
    my $out = as_user_connect('nobody', 'nogroup', $socket, "A 1 .php $uid_of{t2} $users{ngxt2}[1] $t2");
    like($out, qr/^NO ANSWER$/, 'a process running as the worker user, not a child of the master: no answer');
    ok(log_has($from, qr/refused a connection from pid \d+ uid \d+ gid \d+: not an nginx worker \(its parent is pid \d+, not this nginx's master pid $master\)/),
        'refused at connect and logged') or diag error_log_since($from);
    unlike(error_log_since($from), qr/runner pid \d+ started for uid $uid_of{t2}/, 'no runner was started');
    my $out2 = as_user_connect('ngxt1', 'ngxt1', $socket, "A 5 .php $uid_of{t2} $users{ngxt2}[1] $t2");
    $out = $out2;
    like($out, qr/^CONNECT FAILED: Permission denied/, 'a tenant cannot even reach the socket directory');
    $from = error_log_size();
    $out = as_user_connect('root', 'root', $socket, "A 6 .php $uid_of{t2} $users{ngxt2}[1] $t2");
    unlike($out, qr/^OK/m, 'a peer that is not the worker user gets no runner');
    ok(log_has($from, qr/refused a connection from pid \d+ uid 0 gid 0: not an nginx worker \(not the worker user/), 'and is logged');
};

subtest 'runner stderr: one error line per message line, tagged with the runner and its owner' => sub {
    my $from = error_log_size();
    my ($status, $body) = http_get_host('t2', '/stderr.cgi');
    is("$status $body", "200 ok\n", 'the CGI program answered');
    ok(log_has($from, qr/runner pid \d+ uid $uid_of{t2}: cgi says one\n.*runner pid \d+ uid $uid_of{t2}: cgi says two/s),
        "a CGI program's two stderr lines, each tagged");
    ($status, $body) = http_get_host('t3', '/stderr.php');
    is("$status $body", "200 ok\n", 'the PHP script answered');
    ok(log_has($from, qr/runner pid \d+ uid $uid_of{t3}: php says one\n.*runner pid \d+ uid $uid_of{t3}: php says two/s),
        "php-cgi's two stderr lines, each tagged");
    ($status) = http_get_host('t4', '/lastwords.php');
    is($status, 502, 'a runner that kills itself: 502');
    ok(log_has($from, qr/runner pid [1-9]\d* uid $uid_of{t4}: last words of php/), 'its last line, read after it was reaped, keeps its tag');
    unlike(error_log_since($from), qr/runner pid 0 uid 0/, 'never an untagged line');
};

subtest 'runner stderr is rate-limited per owner: a flood is cut, counted, and others still log' => sub {
    my $from = error_log_size();
    my ($status, $body) = http_get_host('t5', '/flood.cgi');
    is("$status $body", "200 flooded\n", 'the flooding CGI program answered');
    ok(log_has($from, qr/runner pid \d+ uid $uid_of{t5}: (\d+) stderr line\(s\) of uid $uid_of{t5} not logged: over 50 lines per second \(burst 200\)/),
        'one line says how many were not logged');
    my @logged = error_log_since($from) =~ /uid $uid_of{t5}: flood line \d+/g;
    my $dropped = 0;
    $dropped += $_ for error_log_since($from) =~ /(\d+) stderr line\(s\) of uid $uid_of{t5} not logged/g;
    cmp_ok(scalar @logged, '>=', 200, 'the burst was logged (' . scalar(@logged) . ' lines)');
    cmp_ok(scalar @logged, '<', 400, 'most of the 2,000 lines were not');
    is(scalar(@logged) + $dropped, 2000, 'logged + counted as not logged = 2,000');
    ($status, $body) = http_get_host('t2', '/stderr.cgi');
    is("$status $body", "200 ok\n", 'another owner answers');
    ok(log_has($from, qr/runner pid \d+ uid $uid_of{t2}: cgi says one/), "another owner's stderr is still logged");
};

subtest 'nginx -s reopen: the keeper, the supervisor and the runners log into the new error log' => sub {
    my $log = servroot() . '/logs/error.log';
    my $rotated = "$log.rotated";
    unlink $rotated;
    rename $log, $rotated or die "rename: $!";
    my $master = VlimitTest::pid_of_master();
    kill 'USR1', $master;
    ok(wait_until(sub { -e $log }, 5), 'nginx made a new error log');
    my $slurp = sub { open my $fh, '<', $_[0] or return ''; local $/; <$fh> // '' };
    ok(wait_until(sub { $slurp->($log) =~ /tenants: supervisor: reopened the error log \Q$log\E/ }, 5),
        'the supervisor reopened it (and says so there)');
    ok(wait_until(sub { $slurp->($log) =~ /tenants: keeper: reopened the error log \Q$log\E/ }, 5), 'the keeper too');
    my $size_rotated = -s $rotated;
    my $socket = supervisor_socket();
    as_user_connect('nobody', 'nogroup', $socket, 'A 1 .php 1 1 /x');
    ok(wait_until(sub { $slurp->($log) =~ /supervisor: refused a connection from pid \d+ uid \d+ gid \d+: not an nginx worker/ }, 5),
        "the supervisor's own lines go to the new file");
    my ($status) = http_get_host('t5', '/error.rb');
    is($status, 500, 'a Ruby exception');
    ok(wait_until(sub { $slurp->($log) =~ /runner pid \d+ uid $uid_of{t5}: ruby runner: .*tenant script failed on purpose/ }, 5),
        "a runner's stderr, relayed by the supervisor, too");
    is(-s $rotated, $size_rotated, 'nothing more went to the rotated file');
    unlike($slurp->($rotated), qr/reopened the error log/, 'not even the notice');
};

# Only the tenant whose script misbehaves suffers: the others and static
# files keep answering meanwhile; the runner is discarded (killed with
# everything it started).
sub others_fine {
    my ($what, @hosts) = @_;
    for my $host (@hosts) {
        my ($status, $body) = http_get_host($host, '/id.php', 3);
        is("$status $body" =~ s/ \d+\n$//r, "200 $uid_of{$host}", "during $what: $host answers");
    }
    my ($status, $body) = http_get_host('t5', '/static.txt', 3);
    is("$status $body", "200 static t5\n", "during $what: static files answer");
}

subtest 'runaway scripts (PHP, CGI, Ruby): 504 after fastcgi_read_timeout, runner discarded, others unaffected' => sub {
    for my $case (['t1', '/loop.php'], ['t1', '/loop.cgi'], ['t1', '/loop.rb']) {
        my ($host, $path) = @$case;
        my $from = error_log_size();
        my $t0 = time;
        my $sock = open_request($path, host => $host, proto => 'HTTP/1.0');
        sleep 0.3;
        others_fine("$host$path", 't2', 't3');
        my ($status, undef) = read_response($sock, 10);
        is($status, 504, "$host$path: 504");
        ok(time - $t0 < 5, "$host$path: after about fastcgi_read_timeout");
        ok(log_has($from, qr/discarding runner pid \d+ of uid $uid_of{$host}: its request failed or timed out/),
            "$host$path: runner discarded");
        ok(wait_until(sub { !grep { ((proc_status($_) // {})->{State} // '') =~ /^R/ } uid_processes($uid_of{$host}) }, 5),
            "$host$path: nothing of $host left spinning");
        my ($st2) = http_get_host($host, '/id.php');
        is($st2, 200, "$host: next request fine");
    }
};

subtest 'a fork bomb: RLIMIT_NPROC holds it, only its owner suffers, all of it is killed' => sub {
    my $from = error_log_size();
    my $sock = open_request('/bomb.cgi', host => 't2', proto => 'HTTP/1.0');
    sleep 0.8;
    my @bomb = uid_processes($uid_of{t2});
    cmp_ok(scalar @bomb, '<=', 32, 'never more than tenant_max_processes (32) processes of t2');
    ok((grep { ((proc_status($_) // {})->{Name} // '') eq 'sleep' } @bomb),
        'the script itself outlived its bomb (its sleep holds the output open)');
    others_fine('the fork bomb', 't1', 't3');
    my ($status) = read_response($sock, 10);
    is($status, 504, 'the bomb request: 504');
    my $bomb_left = sub { grep { ((proc_status($_) // {})->{Name} // '') =~ /^(bomb\.cgi|sleep)$/ } uid_processes($uid_of{t2}) };
    ok(wait_until(sub { !$bomb_left->() }, 5), 'every process of the bomb is gone')
        or diag join ' ', $bomb_left->();
    my ($st2, $body) = http_get_host('t2', '/id.php');
    is($st2, 200, 't2 is served again');
};

subtest 'a memory hog: RLIMIT_AS stops it, only its owner suffers' => sub {
    my $sock = open_request('/memhog.cgi', host => 't4', proto => 'HTTP/1.0');
    others_fine('the memory hog', 't1', 't5');
    my ($status, $body) = read_response($sock, 10);
    isnt($body, "allocated\n", 'the 1 GB allocation failed under tenant_max_memory 256m');
    like($status, qr/^50[24]$/, "the hog's request fails ($status)");
};

subtest 'nginx -s reload completes while a runaway script runs' => sub {
    my $sock = open_request('/loop.php', host => 't3', proto => 'HTTP/1.0');
    sleep 0.3;
    my $t0 = time;
    reload_nginx();
    ok(time - $t0 < 5, 'new workers are up');
    my ($status) = read_response($sock, 10);
    is($status, 504, 'the runaway request ends with 504 on the old worker');
    my ($st2, $body) = http_get_host('t3', '/id.php');
    is($st2, 200, 'the new generation serves t3');
};

subtest 'kill -9 of a runner mid-request: 502, the next request is fine' => sub {
    my ($status, $body, $head) = http_get_host('t3', '/id.php');
    my $pid = header_of($head, 'X-Runner-Pid');
    my $from = error_log_size();
    my $sock = open_request('/sleep.php?ms=3000', host => 't3', proto => 'HTTP/1.0');
    ok(wait_until(sub { my $p = processes_under("$base/run"); grep { $_ == $pid } keys %$p }, 2), 'runner alive');
    sleep 0.3;
    kill 'KILL', $pid;
    ($status) = read_response($sock, 10);
    is($status, 502, 'the request in flight gets 502');
    ok(log_has($from, qr/runner pid $pid of uid $uid_of{t3} .* killed by SIGKILL while serving a request/),
        'the supervisor logs the death');
    ($status, $body, $head) = http_get_host('t3', '/id.php');
    is($status, 200, 'next request: 200');
    isnt(header_of($head, 'X-Runner-Pid'), $pid, 'from a fresh runner');
};

subtest 'a runner kept idle by a worker dies: the next request gets a fresh one, not a 502' => sub {
    my ($status, $body, $head) = http_get_host('t3', '/id.php');
    my $pid = header_of($head, 'X-Runner-Pid');
    my $from = error_log_size();
    kill 'KILL', $pid;
    # the supervisor tells the worker keeping it (G), which drops it
    ok(log_has($from, qr/runner pid $pid of uid $uid_of{t3} .* killed by SIGKILL/), 'the supervisor saw it die');
    for my $i (1 .. 4) {
        ($status, $body, $head) = http_get_host('t3', '/id.php');
        is($status, 200, "request $i after the kill: 200");
        isnt(header_of($head, 'X-Runner-Pid'), $pid, "request $i: another runner");
    }
};

subtest 'a worker keeps its runner between requests: one runner per owner when sequential' => sub {
    # sequential requests over separate connections land on either worker;
    # a runner kept idle by one worker is given back (G/R) to the other
    http_get_host('t2', '/id.php');
    my (%pids, %spawn, $ok);
    for my $i (1 .. 12) {
        my ($status, $body, $head) = http_get_host('t2', '/id.php');
        $ok++ if $status == 200;
        $pids{ header_of($head, 'X-Runner-Pid') }++;
        $spawn{ header_of($head, 'X-Spawn') }++;
    }
    is($ok, 12, 'all served');
    is(scalar keys %pids, 1, 'one runner served all twelve') or diag explain \%pids;
    is(join(',', sort keys %spawn), 'hit', 'each a hit') or diag explain \%spawn;
};

subtest 'kill -9 of a worker holding a runner: the runner is killed, not reused' => sub {
    my $sock = open_request('/sleep.php?ms=5000', host => 't4', proto => 'HTTP/1.0');
    ok(wait_until(sub { my @r = runner_pids($uid_of{t4}); @r }, 2), 't4 has a runner');
    sleep 0.3;
    my $holders = holder_pids();
    my ($worker) = keys %$holders;
    ok($worker, 'found the worker holding the request') or return;
    my $from = error_log_size();
    kill 'KILL', $worker;
    ok(log_has($from, qr/worker pid $worker went away holding runner pid \d+ of uid $uid_of{t4}, killing it/),
        'the supervisor kills the runners that worker held');
    close $sock;
    ok(wait_until(sub { my @w = worker_pids(); @w >= 2 }, 5), 'master replaced the worker');
    my ($status, $body) = http_get_host('t4', '/id.php');
    is($status, 200, 't4 served again');
};

subtest 'kill -9 of the supervisor: 503 for tenants until it is back, static files unaffected' => sub {
    my ($sup) = supervisor_pids();
    my @runners_before = runner_pids();
    ok(@runners_before, 'runners before');
    my $from = error_log_size();
    kill 'KILL', $sup;
    ok(wait_until(sub { !runner_pids() }, 3), 'its runners died with it (no orphan)');
    my ($status) = http_get_host('t1', '/id.php');
    is($status, 503, 'tenant request: 503 while the supervisor is down');
    ok(log_has($from, qr/\[error\].*tenant_runner: (lost the connection to the supervisor|no runner for)/),
        'the worker logs it');
    my ($st2, $body) = http_get_host('t1', '/static.txt');
    is("$st2 $body", "200 static t1\n", 'static file: unaffected');
    ok(log_has($from, qr/supervisor pid $sup was killed by SIGKILL; starting a new one/), 'the keeper logs it');
    ok(wait_until(sub { (http_get_host('t1', '/id.php'))[0] == 200 }, 5), 'tenant requests work again');
    my @sup = supervisor_pids();
    is(scalar @sup, 1, 'one (new) supervisor');
    isnt($sup[0], $sup, 'a new process');
};

subtest 'reload with runners alive: the old generation ends with the old workers' => sub {
    for my $host (@tenants) { http_get_host($host, '/id.php') }
    my @old_runners = runner_pids();
    my @old_sup = supervisor_pids();
    ok(@old_runners >= 5, 'runners alive before reload');
    my $from = error_log_size();
    reload_nginx();
    ok(wait_until(sub { my %old = map { $_ => 1 } @old_runners; !grep { $old{$_} } runner_pids() }, 10),
        'old runners are gone once the old workers exit');
    ok(wait_until(sub { !grep { my $o = $_; grep { $_ == $o } supervisor_pids() } @old_sup }, 10),
        'the old supervisor is gone');
    unlike(error_log_since($from), qr/went away holding runner/, 'exiting workers gave back the runners they kept');
    my ($status, $body) = http_get_host('t2', '/id.php');
    like("$status $body", qr/^200 $uid_of{t2} /, 'the new generation serves');
    # the old keeper exits after its supervisor, on its own schedule
    ok(wait_until(sub { my @k = keeper_pids(); @k == 1 }, 10), 'one keeper')
        or diag('keepers: ' . join(' ', keeper_pids()));
};

subtest 'stop with runners alive: no process left behind' => sub {
    for my $host (@tenants) { http_get_host($host, $_) for '/id.php', '/id.cgi', '/id.rb' }
    my @alive = runner_pids();
    ok(@alive >= 5, 'runners alive');
    # CGI and Ruby runners name the document root ($base/sites), php-cgi and the keeper $base/run
    my $p = processes_under("$base/");
    ok(scalar(grep { $p->{$_}{args} =~ /cgi-runner/ } keys %$p), 'CGI runners among them');
    ok(scalar(grep { $p->{$_}{args} =~ /ruby-runner/ } keys %$p), 'Ruby runners among them');
    stop_nginx();
    ok(wait_until(sub { !%{ processes_under("$base/") } }, 10),
        'no keeper, supervisor or runner (PHP, CGI, Ruby) left in the process table')
        or diag explain processes_under("$base/");
    ok(wait_until(sub { !glob("$base/run/*") }, 5), 'the generation directory is removed');
    if ($cgroup_ok) {
        ok(wait_until(sub { !grep { -e $_ } @cgroup_roots }, 5), "tenant_cgroup: every group is removed (@cgroup_roots)")
            or diag `find @cgroup_roots -type d`;
    }
};

# ---------------------------------------------------------------------------
# Small caps: LRU reaping, recycling, queueing, idle reaping.
# ---------------------------------------------------------------------------

start_nginx(http => http_conf(extra => <<'EOF'), user => 'nobody nogroup');
    tenant_max_runners 2;
    tenant_max_runners_per_owner 1;
    tenant_max_requests 3;
    tenant_idle_timeout 3s;
    tenant_queue_timeout 1s;
EOF

subtest 'more owners than tenant_max_runners: LRU reaping, never above the cap' => sub {
    my $from = error_log_size();
    my $max = 0;
    my $ok = 0;
    for my $round (1 .. 2) {
        for my $host (@tenants) {
            my ($status, $body) = http_get_host($host, '/id.php');
            $ok++ if $status == 200 && $body =~ /^$uid_of{$host} /;
            my $n = () = runner_pids();
            $max = $n if $n > $max;
        }
    }
    is($ok, 10, 'every request served by its owner');
    cmp_ok($max, '<=', 2, 'runner count never above tenant_max_runners');
    ok(log_has($from, qr/reaping idle runner pid \d+ of uid \d+ to make room for uid \d+/), 'reaping logged');
};

subtest 'more owners than tenant_max_runners, all at once: a sampler never sees more than the cap' => sub {
    # a child process samples the runner count every 10 ms while the requests run
    my $samples = servroot() . '/runner-samples';
    unlink $samples;
    my $sampler = fork // die "fork: $!";
    if ($sampler == 0) {
        open my $fh, '>', $samples or POSIX::_exit(1);
        $fh->autoflush(1);
        while (1) { my $n = () = runner_pids(); print $fh "$n\n"; sleep 0.01 }
    }
    my @socks = map { my $host = $tenants[$_ % 5]; [$host, open_request('/id.php', host => $host, proto => 'HTTP/1.0')] } 0 .. 9;
    my (%status, $wrong);
    for my $pair (@socks) {
        my ($host, $sock) = @$pair;
        my ($status, $body) = read_response($sock, 10);
        $status{$status}++;
        $wrong++ if $status == 200 && $body !~ /^$uid_of{$host} /;
    }
    sleep 0.2;
    kill 'KILL', $sampler;
    waitpid $sampler, 0;
    my @counts = do { open my $fh, '<', $samples or die "$samples: $!"; map { 0 + $_ } <$fh> };
    cmp_ok(scalar @counts, '>=', 10, scalar(@counts) . ' samples taken');
    my $max = (sort { $b <=> $a } @counts)[0] // 0;
    cmp_ok($max, '<=', 2, "runner count never above tenant_max_runners 2 (max $max)");
    ok(!$wrong, 'no request answered by another owner');
    cmp_ok($status{200} // 0, '>=', 5, 'most answered (the rest 503 after tenant_queue_timeout)')
        or diag explain \%status;
    is(join(',', grep { $_ != 200 && $_ != 503 } keys %status), '', 'nothing but 200 and 503');
};

subtest 'tenant_max_requests recycles a runner' => sub {
    my $from = error_log_size();
    my @pids = map { header_of((http_get_host('t5', '/id.php'))[2], 'X-Runner-Pid') } 1 .. 8;
    my @runs = (1);
    for my $i (1 .. $#pids) {
        if ($pids[$i] eq $pids[$i - 1]) { $runs[-1]++ } else { push @runs, 1 }
    }
    # the first runner may have served requests before this test
    is(join(' ', @runs[1 .. $#runs - 1]), join(' ', (3) x ($#runs - 1)), 'each runner serves 3 requests, then a new one')
        or diag "@pids";
    cmp_ok(scalar @runs, '>=', 3, 'runners were replaced');
    ok(log_has($from, qr/recycling runner pid $pids[0] of uid $uid_of{t5} after 3 requests/), 'recycling logged');
};

subtest 'queueing: queued while one is busy; 503 after tenant_queue_timeout' => sub {
    http_get_host('t1', '/id.php');
    my $long = open_request('/sleep.php?ms=400', host => 't1', proto => 'HTTP/1.0');
    sleep 0.1;
    my ($status, $body, $head) = http_get_host('t1', '/id.php');
    is($status, 200, 'second request of the owner waits for the busy runner');
    is(header_of($head, 'X-Spawn'), 'queued', '$tenant_spawn is queued');
    read_response($long);
    my $from = error_log_size();
    $long = open_request('/sleep.php?ms=1800', host => 't1', proto => 'HTTP/1.0');
    sleep 0.1;
    my $t0 = time;
    ($status) = http_get_host('t1', '/id.php');
    my $waited = time - $t0;
    is($status, 503, 'no runner free within the queue timeout: 503');
    ok($waited >= 0.8 && $waited < 3, "after about 1 s ($waited)");
    ok(log_has($from, qr/no runner free for uid $uid_of{t1} .* within tenant_queue_timeout/), 'logged');
    ($status) = http_get_host('t2', '/id.php');
    is($status, 200, 'another owner is not affected');
    is((read_response($long))[0], 200, 'the long request completes');
};

subtest 'tenant_idle_timeout reaps idle runners' => sub {
    http_get_host('t3', '/id.php');
    my @alive = runner_pids($uid_of{t3});
    ok(@alive, 'runner alive');
    my $from = error_log_size();
    ok(wait_until(sub { !runner_pids($uid_of{t3}) }, 6), 'reaped after the idle timeout');
    ok(log_has($from, qr/reaping runner pid \d+ of uid $uid_of{t3} after tenant_idle_timeout/), 'logged');
};

stop_nginx();
ok(wait_until(sub { !%{ processes_under("$base/") } }, 10), 'second configuration: nothing left behind');

# ---------------------------------------------------------------------------
# Configuration errors, caught by nginx -t.
# ---------------------------------------------------------------------------

my $nginx = $ENV{TEST_NGINX_BINARY} || "$FindBin::Bin/../build/sbin/nginx";
# one load_module line per module (make test-debian loads Debian's stream module first)
my $load_modules = join '', map { "load_module $_;\n" }
    split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || "$FindBin::Bin/../build/modules/ngx_http_mruby_module.so");
for my $case (
    ['tenant_interpreter php /usr/bin/php-cgi;', qr/tenant_interpreter: invalid extension "php"/],
    ['tenant_interpreter .php /nonexistent/php-cgi; server { location / { tenant_runner on; } }',
        qr/tenant_interpreter \.php: "\/nonexistent\/php-cgi" is not an executable file/],
    ['tenant_writable ../up;', qr/tenant_writable: invalid path "\.\.\/up"/],
    ['tenant_cgroup ../up; server { location / { tenant_runner on; } }',
        qr/tenant_cgroup "\.\.\/up": invalid path "\.\.\/up": a cgroup path/],
    ["tenant_cgroup no-such-parent-$$/x; server { location / { tenant_runner on; } }",
        qr/tenant_cgroup "no-such-parent-$$\/x": (the parent group \S+no-such-parent-$$ of "[^"]+" does not exist|no cgroup hierarchy)/],
    ['tenant_cgroup a; tenant_cgroup b;', qr/"tenant_cgroup" directive is duplicate/],
    ['tenant_max_runners 0;', qr/invalid value "0" in "tenant_max_runners" directive/],
    ['tenant_queue_timeout soon;', qr/invalid value "soon" in "tenant_queue_timeout" directive/],
    ['tenant_supervisor /nonexistent/sup; server { location / { tenant_runner on; } }',
        qr/the supervisor program "\/nonexistent\/sup" is not an executable file/],
    ['server { location /rb/ { tenant_runner on; mruby_add_handler on; } }',
        qr/"mruby_add_handler on" with "tenant_runner on" in location "\/rb\/" runs the script in its owner's Ruby runner, which needs "fastcgi_pass unix:\$tenant_socket;" there/],
    ['server { tenant_runner on; mruby_add_handler on; location /rb/ { fastcgi_pass unix:/tmp/x.sock; } }',
        qr/"mruby_add_handler on" with "tenant_runner on" in a server\{\} block \(outside any location\) runs the script/],
    ['server { location /rb/ { tenant_runner on; tenant_cgi on; mruby_add_handler on; fastcgi_pass unix:/tmp/x.sock; } }',
        qr/"mruby_add_handler on" and "tenant_cgi on" both apply in location "\/rb\/"/],
) {
    my ($http, $re) = @$case;
    my $conf = servroot() . '/conf/bad.conf';
    open my $fh, '>', $conf or die;
    print $fh "${load_modules}events {}\nhttp { $http }\n";
    close $fh;
    my $out = `$nginx -t -p ${\ servroot()}/ -c conf/bad.conf 2>&1`;
    like($out, $re, "nginx -t: $http");
}

done_testing();
