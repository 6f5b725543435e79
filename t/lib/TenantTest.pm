package TenantTest;

# Helpers for the tenant-runner tests (needs root: real users, real
# sandboxes). Sites live under /tmp/ngx-tenants-<port>/sites/<host>/htdocs
# (outside the repository, so the `nobody` workers and the tenants can
# reach them wherever the repository is checked out); runner sockets under
# /tmp/ngx-tenants-<port>/run.

use strict;
use warnings;

use Exporter 'import';
use File::Basename ();
use File::Path ();
use POSIX ();
use IO::Select;
use IO::Socket::IP;
use IO::Socket::UNIX;
use Time::HiRes qw(sleep time);

use VlimitTest qw(port servroot wait_until);

our @EXPORT = qw(
    tenant_base tenant_users ensure_user site_dir write_site_file make_site
    processes_under runner_pids supervisor_pids keeper_pids proc_status
    tenants_skip_reason as_user_connect supervisor_socket http_get_host uid_processes
    tenant_cgroup_name cgroup_check send_as_worker
);

my $Base = '/tmp/ngx-tenants-' . port();

sub tenant_base { $Base }

# The sites and sockets of this run go once its nginx has stopped (this END
# runs before VlimitTest's, which would stop it too late).
my $LoadedBy = $$;    # not a forked child's exit
END {
    if ($$ == $LoadedBy && !$ENV{TEST_NGINX_NO_CLEAN}) {
        VlimitTest::stop_nginx();
        wait_until(sub { !%{ processes_under("$Base/") } }, 5);
        File::Path::remove_tree($Base);
    }
}

# Why the tenant tests cannot run here (undef when they can).
sub tenants_skip_reason {
    return 'needs root (real users and runners)' if $> != 0;
    return 'php-cgi is not installed (make setup)' unless -x '/usr/bin/php-cgi';
    return 'useradd is not installed' if system('command -v useradd >/dev/null') != 0;
    return 'setpriv is not installed' if system('command -v setpriv >/dev/null') != 0;
    my $lsm = do { open my $fh, '<', '/sys/kernel/security/lsm' or return undef; local $/; <$fh> } // '';
    return 'the kernel has no Landlock' if $lsm ne '' && $lsm !~ /landlock/;
    return undef;
}

# The tenant_cgroup path of this test run (relative: below the test's own group).
sub tenant_cgroup_name { 'ngx-tenants-test-' . port() }

# What the supervisor program says about a tenant_cgroup path here:
# (1, the path's directory in each hierarchy) or (0, why it cannot work).
sub cgroup_check {
    my ($supervisor, $path) = @_;
    open my $fh, '-|', $supervisor, 'check-cgroup', $path or return (0, "cannot run $supervisor: $!");
    local $/;
    my $out = <$fh> // '';
    close $fh;
    chomp $out;
    return (0, $out) if $? != 0;
    my ($dirs) = $out =~ /\): (.*)$/;
    return (1, split ' ', $dirs // '');
}

# Creates (once) a system user and group `$name`; returns (uid, gid).
sub ensure_user {
    my ($name) = @_;
    my @pw = getpwnam($name);
    unless (@pw) {
        system('useradd', '-M', '-U', '-K', 'UID_MIN=2000', '-K', 'GID_MIN=2000', '-s', '/usr/sbin/nologin',
            '-d', '/nonexistent', $name) == 0 or die "useradd $name failed";
        @pw = getpwnam($name) or die "no user $name after useradd";
    }
    return ($pw[2], $pw[3]);
}

# The five tenants: name => [uid, gid].
sub tenant_users {
    my %users;
    for my $n (1 .. 5) {
        my $name = "ngxt$n";
        $users{$name} = [ensure_user($name)];
    }
    return %users;
}

sub site_dir { "$Base/sites/$_[0]/htdocs" }

# write_site_file($host, $name, $content, owner => 'ngxt1', mode => 0600)
sub write_site_file {
    my ($host, $name, $content, %opt) = @_;
    my $path = site_dir($host) . "/$name";
    File::Path::make_path(File::Basename::dirname($path));
    open my $fh, '>', $path or die "$path: $!";
    print $fh $content;
    close $fh;
    my ($uid, $gid) = (getpwnam($opt{owner}))[2, 3];
    chown $uid, $gid, $path or die "chown $path: $!";
    chmod $opt{mode} // 0600, $path or die "chmod $path: $!";
    return $path;
}

# A document root owned by `$owner`, traversable (not readable) by others.
sub make_site {
    my ($host, $owner, %opt) = @_;
    my $dir = site_dir($host);
    File::Path::make_path($dir);
    chmod 0755, "$Base", "$Base/sites", "$Base/sites/$host";
    my ($uid, $gid) = (getpwnam($owner))[2, 3];
    chown $uid, $gid, $dir or die "chown $dir: $!";
    chmod $opt{mode} // 0711, $dir;
    return $dir;
}

# pid => {uid, comm, args} of every process whose command line mentions `$needle`.
sub processes_under {
    my ($needle) = @_;
    my %found;
    opendir my $dh, '/proc' or return {};
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$pid/cmdline" or next;
        my $cmd = do { local $/; <$fh> } // '';
        next unless index($cmd, $needle) >= 0;
        my $status = proc_status($pid) or next;
        next if ($status->{State} // '') =~ /^Z/;
        $cmd =~ s/\0/ /g;
        $found{$pid} = { uid => (split ' ', $status->{Uid})[0], comm => $status->{Name}, args => $cmd };
    }
    return \%found;
}

# Runners of this test's supervisors: php-cgi (its command line names the
# owner's temporary directory under our base) and CGI runners (the program
# itself, with the document root under our base); children of a supervisor
# (not a CGI runner's child between its fork and exec, which looks the same).
# Each is checked again once the scan of /proc is over: a runner killed
# while the scan ran (its replacement is only started once it is reaped)
# is not counted next to its replacement.
sub runner_pids {
    my ($uid) = @_;
    my $p = processes_under("$Base/");
    my %supervisor = map { $_ => 1 } grep { $p->{$_}{comm} eq 'tenant-supervis' } keys %$p;
    my @found = grep {
        $p->{$_}{comm} =~ /^(php-cgi|ngx-mruby-super)/ && (!defined $uid || $p->{$_}{uid} == $uid)
            && $supervisor{ (proc_status($_) // {})->{PPid} // 0 }
    } keys %$p;
    return sort { $a <=> $b } grep { ((proc_status($_) // {})->{State} // 'Z') !~ /^[ZX]/ } @found;
}

sub supervisor_pids {
    my $p = processes_under("$Base/run");
    return sort { $a <=> $b } grep { $p->{$_}{comm} eq 'tenant-supervis' } keys %$p;
}

sub keeper_pids {
    my $p = processes_under("$Base/run");
    return sort { $a <=> $b } grep { $p->{$_}{comm} eq 'tenant-keeper' } keys %$p;
}

# pids of every live process whose real uid is `$uid`.
sub uid_processes {
    my ($uid) = @_;
    opendir my $dh, '/proc' or return;
    return grep {
        my $s = proc_status($_);
        $s && ($s->{State} // '') !~ /^Z/ && (split ' ', $s->{Uid})[0] == $uid
    } grep { /^\d+$/ } readdir $dh;
}

# The fields of /proc/<pid>/status.
sub proc_status {
    my ($pid) = @_;
    return unless defined $pid;
    open my $fh, '<', "/proc/$pid/status" or return;
    my %f;
    while (my $line = <$fh>) { $f{$1} = $2 if $line =~ /^(\w+):\s*(.*?)\s*$/ }
    return \%f;
}

# The supervisor socket of the running generation.
sub supervisor_socket {
    my @socks = glob("$Base/run/*/sockets/supervisor.sock");
    return $socks[-1];
}

# Runs perl code as `$user` (setpriv), connecting to the supervisor socket,
# sending `@lines`, and printing what comes back; returns the output.
sub as_user_connect {
    my ($user, $group, $socket, @lines) = @_;
    my $payload = join '', map { "$_\n" } @lines;
    my $code = q{
        use IO::Socket::UNIX; use IO::Select;
        $SIG{PIPE} = 'IGNORE';    # a refused peer is closed before it has written
        my ($path, $payload) = @ARGV;
        my $s = IO::Socket::UNIX->new(Peer => $path) or do { print "CONNECT FAILED: $!\n"; exit 0 };
        print $s $payload;
        my $sel = IO::Select->new($s); my $out = '';
        while ($sel->can_read(2)) { my $n = sysread($s, my $buf, 4096); last unless $n; $out .= $buf }
        print $out eq '' ? "NO ANSWER\n" : $out;
    };
    my @cmd = ('setpriv', "--reuid=$user", "--regid=$group", '--clear-groups', $^X, '-e', $code, $socket, $payload);
    open my $fh, '-|', @cmd or die "setpriv: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}

# Writes `@lines` on a worker's own connection to the supervisor at
# `$socket`, as a compromised worker would: the test (root) takes a copy of
# the worker's descriptor with pidfd_getfd(2). The answers go to the worker,
# which drops them (unknown tags). Returns the worker's pid, or 0 when no
# worker has a connection.
sub send_as_worker {
    my ($socket, $workers, @lines) = @_;
    require Socket;
    for my $w (@$workers) {
        my $pidfd = syscall(434, $w + 0, 0);    # pidfd_open (numbers, not strings: syscall passes strings as pointers)
        next if $pidfd < 0;
        opendir my $dh, "/proc/$w/fd" or next;
        for my $n (grep { /^\d+$/ } readdir $dh) {
            next unless (readlink("/proc/$w/fd/$n") // '') =~ /^socket:/;
            my $fd = syscall(438, $pidfd, $n + 0, 0);    # pidfd_getfd
            next if $fd < 0;
            open my $fh, '+<&=', $fd or next;
            my $peer = getpeername($fh);
            my $path = $peer ? eval { Socket::unpack_sockaddr_un($peer) } // '' : '';
            if ($path eq $socket) {
                syswrite $fh, join '', map { "$_\n" } @lines;
                close $fh;
                POSIX::close($pidfd);
                return $w;
            }
            close $fh;
        }
        POSIX::close($pidfd);
    }
    return 0;
}

# GET (HTTP/1.0: no chunked body) with a Host header; returns (status, body, headers-text).
sub http_get_host {
    my ($host, $path, $timeout) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => port(), Timeout => 3) or die "connect: $!";
    $s->syswrite("GET $path HTTP/1.0\r\nHost: $host\r\n\r\n");
    my $data = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + ($timeout // 10);
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = $s->sysread(my $buf, 65536);
        last if !$n;
        $data .= $buf;
    }
    close $s;
    my ($head, $body) = split /\r\n\r\n/, $data, 2;
    my ($status) = ($head // '') =~ m{^HTTP/\d\.\d (\d{3})};
    return ($status // 0, $body // '', $head // '');
}

1;
