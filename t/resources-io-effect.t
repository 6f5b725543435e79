# `io_read=`/`io_write=` on the real cgroup hierarchy (issue 10): the
# class group's throttle files hold the rate for every whole disk of the
# machine (v1 blkio.throttle.read_bps_device / write_bps_device, v2
# io.max), and a CGI program run as a tenant user in the class, reading
# or writing with direct I/O (no page cache between it and the disk), is
# slowed to the rate, while the same program without a class is not.
# Needs root and a writable hierarchy with the blkio (v2: io) controller;
# the timing part needs the test's files on one of those disks and
# O_DIRECT there (each skipped otherwise, saying why).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use VlimitTest;
use TenantTest;
use ResourceTest;

plan skip_all => 'nginx or the module is not built' unless nginx_available();
my $skip = tenants_skip_reason();
plan skip_all => $skip if $skip;

my $supervisor_bin = "$FindBin::Bin/../build/sbin/ngx-mruby-supervisor";
my $root_name = 'ngx-res-io-' . port();
my ($cgroup_ok, @roots) = resource_roots($supervisor_bin, $root_name);
plan skip_all => "resource_cgroup_root: $roots[0]" unless $cgroup_ok;
my $v1 = !grep { !m{^/sys/fs/cgroup/(cpu|cpuacct|memory|pids|blkio)/} } @roots;
plan skip_all => 'the kernel offers no blkio controller here: io_read=/io_write= cannot be tested'
    if $v1 && !grep { m{^/sys/fs/cgroup/blkio/} } @roots;

# The whole disks the rates apply to: /sys/block less loop/ram/zram, hidden
# and empty devices and those without a queue: major:minor => name.
my %disks;
for my $dir (glob '/sys/block/*') {
    my ($name) = $dir =~ m{([^/]+)$};
    next if $name =~ /^(loop|ram|zram)/ || !-d "$dir/queue" || (slurp("$dir/hidden") // 0) eq '1';
    next if (slurp("$dir/size") // 0) eq '0';
    my $dev = slurp("$dir/dev") // next;
    $disks{$dev} = $name;
}
plan skip_all => 'this machine has no whole disk in /sys/block' unless %disks;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
my %users = tenant_users();
my ($uid, $gid) = @{ $users{ngxt4} };
make_site('io1', 'ngxt4');
# reads data/blob or writes data/out (2 MiB) with direct I/O; prints dd's summary
write_site_file('io1', 'dd.cgi', <<'SH', owner => 'ngxt4', mode => 0700);
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
case "$QUERY_STRING" in
    read*) dd if=data/blob of=/dev/null bs=256k iflag=direct 2>&1 | tail -n 1 ;;
    write*) dd if=/dev/zero of=data/out bs=256k count=8 oflag=direct conv=fsync 2>&1 | tail -n 1 ;;
esac
SH
my $data = site_dir('io1') . '/data';
mkdir $data or die "mkdir $data: $!";
chown $uid, $gid, $data;
chmod 0700, $data;
system("dd if=/dev/urandom of=$data/blob bs=1M count=2 2>/dev/null") == 0 or die 'blob';
chown $uid, $gid, "$data/blob";

my $rate = 1024 * 1024;
start_nginx(user => 'nobody nogroup', workers => 1, http => <<"EOF");
    tenant_socket_dir $base/run;
    tenant_writable data;
    resource_cgroup_root $root_name;
    resource_class slowio io_read=1m io_write=1m/s;
    server {
        listen 127.0.0.1:${\ port()};
        server_name localhost;
        root $base/sites/\$host/htdocs;
        resource_class_for \$arg_class;
        location ~ \\.cgi\$ {
            tenant_runner on;
            tenant_cgi on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param QUERY_STRING \$arg_op;
            fastcgi_read_timeout 20s;
        }
    }
EOF

subtest 'the class group holds the rates for every whole disk' => sub {
    my $dir = group_dir('blkio', 'slowio') // group_dir('io', 'slowio');
    ok($dir && -d $dir, "the class group ($dir)");
    if ($v1) {
        for my $file (qw(read_bps_device write_bps_device)) {
            my %held = map { split ' ' } split /\n/, slurp("$dir/blkio.throttle.$file") // '';
            is_deeply(\%held, { map { $_ => $rate } keys %disks },
                "blkio.throttle.$file: 1 MiB/s on " . join(', ', map { "$disks{$_} ($_)" } sort keys %disks));
        }
    } else {
        my %held = map { /^(\S+) rbps=(\d+) wbps=(\d+)/ ? ($1 => "$2 $3") : () } split /\n/, slurp("$dir/io.max") // '';
        is_deeply(\%held, { map { $_ => "$rate $rate" } keys %disks }, 'io.max: rbps and wbps on every disk');
    }
    like(error_log_since(0), qr/\[info\].*resource_class slowio: I\/O rates on each of /, 'the start says where');
};

# (status, seconds dd says it took, wall seconds) of one request.
sub dd_request {
    my ($query) = @_;
    my $t0 = time;
    my ($status, $body) = http_get_host('io1', "/dd.cgi?$query", 20);
    my ($secs) = $body =~ /copied, ([\d.]+) s/;
    return ($status, $secs, time - $t0, $body);
}

subtest 'direct I/O in the class is held to the rate, without a class it is not' => sub {
    my @st = stat $data;
    my ($dev_major, $dev_minor) = (($st[0] >> 8) & 0xfff, ($st[0] & 0xff) | (($st[0] >> 12) & 0xfff00));
    my $disk_of_data = grep { my ($maj) = split /:/; $maj == $dev_major } keys %disks;
    my ($status, $secs, undef, $body) = dd_request('op=read');
    if (!$disk_of_data || !defined $secs) {
        plan skip_all => $disk_of_data
            ? "direct I/O fails where the test's files are ($data): $body"
            : "the test's files ($data, device $dev_major:$dev_minor) are on none of the throttled disks";
    }
    is($status, 200, 'an unclassed direct read of 2 MiB');
    ok($secs < 1, "is not held: ${secs}s");
    my ($cstatus, $csecs, $cwall, $cbody) = dd_request('op=read&class=slowio');
    is($cstatus, 200, 'the same read in class slowio (io_read=1m)');
    ok(defined $csecs && $csecs >= 1.5 && $csecs <= 6, "takes about 2 s at 1 MiB/s: ${\ ($csecs // $cbody)}s");
    my ($wstatus, $wsecs, undef, $wbody) = dd_request('op=write');
    is($wstatus, 200, 'an unclassed direct write of 2 MiB');
    ok(defined $wsecs && $wsecs < 1, "is not held: ${\ ($wsecs // $wbody)}s");
    my ($cwstatus, $cwsecs, undef, $cwbody) = dd_request('op=write&class=slowio');
    is($cwstatus, 200, 'the same write in class slowio (io_write=1m/s)');
    ok(defined $cwsecs && $cwsecs >= 1.5 && $cwsecs <= 6, "takes about 2 s at 1 MiB/s: ${\ ($cwsecs // $cwbody)}s");
};

subtest 'nginx -s stop removes the sub-tree' => sub {
    stop_nginx();
    ok(wait_until(sub { !grep { -e $_ } @roots }, 10), "every group is removed (@roots)");
};

done_testing();
