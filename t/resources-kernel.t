# Resource classes on the real cgroup hierarchy, through the supervisor
# (issue 10, kernel side): the class groups and their limits exist after
# start, `tenant_resource_class` puts each owner's runners in a group of
# their own under the class with its limits, a runner cannot write its
# cgroup files, and `nginx -s stop` removes the sub-tree; after a keeper was
# killed by SIGKILL, the next start sweeps its generation. Needs root and a
# writable hierarchy (skipped otherwise, saying why).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use VlimitTest;
use TenantTest;

plan skip_all => 'nginx or the module is not built' unless nginx_available();
my $skip = tenants_skip_reason();
plan skip_all => $skip if $skip;

my $supervisor_bin = "$FindBin::Bin/../build/sbin/ngx-mruby-supervisor";
my $root_name = 'ngx-res-test-' . port();
my ($cgroup_ok, @roots) = cgroup_check($supervisor_bin, $root_name);
plan skip_all => "resource_cgroup_root: $roots[0]" unless $cgroup_ok;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
my %users = tenant_users();
my %uid_of = (k1 => $users{ngxt1}[0], k2 => $users{ngxt2}[0]);

my %cgi = (
    'id.cgi'      => qq{#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho "\$(id -u)"\n},
    # tries to write each file named in the body, and to make a group
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
);
for my $n (1, 2) {
    make_site("k$n", "ngxt$n");
    write_site_file("k$n", $_, $cgi{$_}, owner => "ngxt$n", mode => 0700) for sort keys %cgi;
}

# io_read= only where there is a blkio hierarchy (v2: the io controller is checked by nginx -t)
my $io = (grep { m{^/sys/fs/cgroup/blkio/} } @roots) ? ' io_read=2m' : '';
my $http = <<"EOF";
    tenant_socket_dir $base/run;
    resource_cgroup_root $root_name;
    resource_class heavy cpu=50 memory=64m pids=32;
    resource_class small cpu=25 pids=16$io;
    resource_class slow cpu=50 cpu_period=100ms;
    tenant_resource_class small;
    server {
        listen 127.0.0.1:${\ port()};
        server_name localhost;
        root $base/sites/\$host/htdocs;
        location ~ \\.cgi\$ {
            tenant_runner on;
            tenant_cgi on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param CONTENT_LENGTH \$content_length;
            fastcgi_read_timeout 5s;
            add_header X-Runner-Pid \$tenant_runner_pid always;
        }
    }
EOF

start_nginx(http => $http, user => 'nobody nogroup');

# The hierarchy (v1: one per controller) a root directory is in.
sub controllers_of { my ($dir) = @_; $dir =~ m{^/sys/fs/cgroup/([^/]+)/} ? $1 : '' }

# This generation's directory in each hierarchy (one generation runs).
sub generation_dirs { grep { -d } map { glob("$_/*") } @roots }

sub read_file { my ($path) = @_; open my $fh, '<', $path or return undef; local $/; my $t = <$fh> // q(); $t =~ s/\s+\z//; $t }

my $v1 = (grep { controllers_of($_) ne 'unified' && m{^/sys/fs/cgroup/[^/]+/} } @roots) == @roots && @roots > 1;

subtest 'the class groups exist with their limits after start' => sub {
    my @generations = generation_dirs();
    is(scalar @generations, scalar @roots, "one generation's group in each hierarchy (@roots)");
    for my $gen (@generations) {
        for my $class (qw(heavy small slow)) {
            ok(-f "$gen/$class/cgroup.procs", "$gen/$class is a group");
        }
        ok(-d "$gen/tenants.small", "$gen/tenants.small holds the owners' groups");
        next unless $v1;
        my $controllers = controllers_of($gen);
        my %expect = (
            # cpu=50: 5 ms per 10 ms (the default period); cpu=25: 2.5 ms per
            # 10 ms; cpu_period=100ms
            cpu    => { 'heavy/cpu.cfs_quota_us' => 5000, 'heavy/cpu.cfs_period_us' => 10000,
                        'small/cpu.cfs_quota_us' => 2500, 'small/cpu.cfs_period_us' => 10000,
                        'slow/cpu.cfs_quota_us' => 50000, 'slow/cpu.cfs_period_us' => 100000 },
            memory => { 'heavy/memory.limit_in_bytes' => 64 * 1024 * 1024 },
            pids   => { 'heavy/pids.max' => 32, 'small/pids.max' => 16 },
        );
        for my $file (sort keys %{ $expect{$controllers} // {} }) {
            is(read_file("$gen/$file"), $expect{$controllers}{$file}, "$controllers: $file");
        }
        is(read_file("$gen/tenants.small/cpu.cfs_quota_us"), -1, 'tenants.small itself has no cap (owners are capped separately)')
            if $controllers eq 'cpu';
    }
};

my %runner;
subtest 'each owner\'s runner is in its own group under the class, with its limits' => sub {
    for my $host (qw(k1 k2)) {
        my ($status, $body, $head) = http_get_host($host, '/id.cgi');
        is("$status $body", "200 $uid_of{$host}\n", "$host: served by its owner");
        ($runner{$host}) = $head =~ /^X-Runner-Pid:\s*(\d+)/mi;
        ok($runner{$host}, "$host: runner pid $runner{$host}");
        my $cgroup = read_file("/proc/$runner{$host}/cgroup") // '';
        my @lines = grep { m{/\Q$root_name\E/[^/]+/tenants\.small/$uid_of{$host}$} } split /\n/, $cgroup;
        is(scalar @lines, scalar @roots, "$host: /proc/<runner>/cgroup names tenants.small/$uid_of{$host} in every hierarchy")
            or diag $cgroup;
        for my $gen (generation_dirs()) {
            my $dir = "$gen/tenants.small/$uid_of{$host}";
            my @procs = split /\n/, read_file("$dir/cgroup.procs") // '';
            ok((grep { $_ == $runner{$host} } @procs), "$dir holds the runner");
            my @st = stat "$dir/cgroup.procs";
            is(sprintf('%d %o', $st[4], $st[2] & 022), '0 0', "$dir/cgroup.procs: root's, not writable by others");
            next unless $v1;
            my $controllers = controllers_of($gen);
            is(read_file("$dir/cpu.cfs_quota_us") . '/' . read_file("$dir/cpu.cfs_period_us"), '2500/10000',
                "$host: its own cpu=25 cap") if $controllers eq 'cpu';
            is(read_file("$dir/pids.max"), 16, "$host: its own pids=16 cap") if $controllers eq 'pids';
            if ($controllers eq 'blkio') {
                my @rates = split /\n/, read_file("$dir/blkio.throttle.read_bps_device") // '';
                ok(@rates && !grep({ !/^\d+:\d+ 2097152$/ } @rates), "$host: its own io_read=2m on each disk (@rates)");
            }
        }
    }
    isnt($runner{k1}, $runner{k2}, 'two owners, two runners');
};

subtest 'a runner cannot write its cgroup files, nor make groups' => sub {
    my @targets;
    for my $gen (generation_dirs()) {
        my $own = "$gen/tenants.small/$uid_of{k1}";
        push @targets, "$own/cgroup.procs", "$gen/heavy/cgroup.procs", "$gen/tenants.small/cgroup.procs";
        push @targets, "$own/cpu.cfs_quota_us" if -e "$own/cpu.cfs_quota_us";
        push @targets, "$own/pids.max" if -e "$own/pids.max";
        push @targets, "mkdir $gen/escape";
    }
    my $body = join "\n", @targets;
    my ($status, $out) = read_response(open_request('/cgwrite.cgi', host => 'k1', method => 'POST', body => $body,
        proto => 'HTTP/1.0', headers => ['Content-Length: ' . length $body]));
    is($status, 200, 'the CGI program ran');
    my @denied = $out =~ /^DENIED /mg;
    is(scalar @denied, scalar @targets, 'every write and mkdir denied (own group, the class group, the limits)')
        or diag $out;
    unlike($out, qr/^(WROTE|MADE) /m, 'nothing written');
    my $cgroup = read_file("/proc/$runner{k1}/cgroup") // '';
    unlike($cgroup, qr{/heavy$}m, 'the runner is still in its own group');
};

subtest 'nginx -s stop removes the whole sub-tree' => sub {
    stop_nginx();
    ok(wait_until(sub { !grep { -e $_ } @roots }, 10), "every group is removed (@roots)")
        or diag `find @roots -type d 2>&1`;
};

subtest 'a keeper killed by SIGKILL leaves its generation; the next start sweeps it (one [notice] each), not a live one' => sub {
    start_nginx(http => $http, user => 'nobody nogroup');
    my ($status) = http_get_host('k1', '/id.cgi');
    is($status, 200, 'a runner served (its owner\'s group exists)');
    my @keeper = keeper_pids();
    is(scalar @keeper, 1, 'one keeper') or return;
    my @stale = generation_dirs();
    is(scalar @stale, scalar @roots, "the generation's group in each hierarchy");
    my ($generation) = $stale[0] =~ m{/([^/]+)$};
    kill 'KILL', $keeper[0];
    ok(wait_until(sub { !kill 0, $keeper[0] }, 5), "keeper $keeper[0] killed");
    stop_nginx();
    # its supervisor (which outlives its keeper) ends with nginx's life pipe
    ok(wait_until(sub { !supervisor_pids() && !runner_pids() }, 10), 'no supervisor or runner left');
    my @left = grep { -d } @stale;
    is(scalar @left, scalar @stale, "with no keeper to remove it, generation $generation stays (@left)");

    # two more generations as another nginx sharing the root would leave
    # them: 4999998.7, whose keeper is gone, and 4999999.7, whose keeper
    # (a stand-in: a process with a keeper's command line naming it) runs
    # and has a process in its groups. (No pid is that high: not an nginx.)
    my @roots_of = map { my $d = $_; $d =~ s{/[^/]+$}{}; $d } @stale;
    for my $g ('4999998.7', '4999999.7') { mkdir "$_/$g" or die "mkdir $_/$g: $!" for @roots_of }
    my $fake_dir = servroot() . '/fake-keeper';
    mkdir $fake_dir;
    open my $fh, '>', "$fake_dir/keeper" or die $!;
    print $fh "sleep 60;\n";
    close $fh;
    my $fake = fork // die "fork: $!";
    if (!$fake) {
        chdir $fake_dir;
        exec { $^X } 'perl', 'keeper', '--dir', "$base/run/4999999.7";
        exit 1;
    }
    for my $r (@roots_of) {
        open my $procs, '>', "$r/4999999.7/cgroup.procs" or die "$r/4999999.7: $!";
        print $procs "$fake\n";
        close $procs or die "entering $r/4999999.7: $!";
    }

    start_nginx(http => $http, user => 'nobody nogroup');
    my $log = error_log_since(0);
    my @notices = $log =~ /^.*\[notice\].*removed the stale generation.*$/mg;
    is(scalar @notices, 2, 'one [notice] line per swept generation') or diag $log;
    like($log, qr/removed the stale generation 4999998\.7 \(no keeper, supervisor or nginx of it runs; 0 leftover/,
        'the generation whose keeper is gone is swept');
    unlike($log, qr/4999999\.7/, 'the one whose keeper runs is not');
    ok((grep { -d "$_/4999999.7" } @roots_of) == @roots_of, 'its groups are still there');
    ok(kill(0, $fake) && read_file("/proc/$fake/cgroup") =~ m{/4999999\.7$}m, 'and the process in them lives on');
    kill 'KILL', $fake;
    waitpid $fake, 0;
    ok(!(grep { -e "$_/4999998.7" } @roots_of), '4999998.7 is gone');
    @notices = grep { !/4999998\.7/ } @notices;
    like($notices[0] // '', qr/supervisor: resource_cgroup_root "\Q$root_name\E": removed the stale generation \Q$generation\E \(no keeper, supervisor or nginx of it runs; \d+ leftover process\(es\) killed\)/,
        'it names the root and the generation');
    ok(!(grep { -e } @stale), "generation $generation is gone from every hierarchy") or diag `find @stale -type d 2>&1`;
    my @now = grep { !m{/4999999\.7$} } generation_dirs();
    is(scalar @now, scalar @roots, 'besides 4999999.7 only the new generation is there');
    ok(!(grep { m{/\Q$generation\E$} } @now), 'and it is another one');
    my ($status2, $body) = http_get_host('k1', '/id.cgi');
    is("$status2 $body", "200 $uid_of{k1}\n", 'the new generation serves');
    unlike($log, qr/\[(error|warn)\].*stale/, 'no problem while sweeping');
    rmdir "$_/4999999.7" for @roots_of;
    stop_nginx();
    ok(wait_until(sub { !grep { -e $_ } @roots }, 10), 'a normal stop removes everything') or diag `find @roots -type d 2>&1`;
};

done_testing();
