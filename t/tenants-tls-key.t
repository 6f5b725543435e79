# No runner's memory holds the server's TLS private key: runners are exec'd
# from the supervisor, a fresh program image, never forked from the master
# that read the key. The test reads the mapped memory of the runners (as
# root) and looks for the private scalar of the server's EC key; the same
# search on an nginx worker, which does hold the key, must find it.

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
plan skip_all => 'openssl(1) is needed' if system('command -v openssl >/dev/null') != 0;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
ensure_user('ngxt1');
make_site('t1', 'ngxt1');
write_site_file('t1', 'id.php', qq{<?php echo posix_getuid(), "\\n";\n}, owner => 'ngxt1', mode => 0600);
write_site_file('t1', 'id.cgi', qq{#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nid -u\n}, owner => 'ngxt1', mode => 0700);

my $ssl_port = port() + 3;
my $conf_dir = servroot() . '/conf';

# The key's private scalar, big-endian, from `openssl ec -text`.
sub private_scalar {
    my ($key) = @_;
    my $text = `openssl ec -in $key -noout -text 2>/dev/null`;
    my ($hex) = $text =~ /priv:\s*\n((?:\s+[0-9a-f:]+\n)+)/ or die "no priv in:\n$text";
    $hex =~ s/[\s:]//g;
    $hex =~ s/^00(?=[0-9a-f]{64}$)//;
    return pack 'H*', $hex;
}

# Whether the readable memory of `$pid` contains `$needle` (or its bytes
# reversed: OpenSSL keeps BIGNUMs as little-endian words).
sub memory_holds {
    my ($pid, $needle) = @_;
    no warnings 'portable';    # 64-bit addresses
    my $reversed = reverse $needle;
    open my $maps, '<', "/proc/$pid/maps" or die "maps of $pid: $!";
    open my $mem, '<:raw', "/proc/$pid/mem" or die "mem of $pid: $!";
    while (my $line = <$maps>) {
        my ($from, $to, $perms, $name) = $line =~ /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/ or next;
        next unless $perms =~ /^r/;
        next if $name =~ /^\[(vvar|vsyscall|vvar_vclock)\]$/;
        my ($start, $len) = (hex $from, hex($to) - hex($from));
        for (my $at = 0; $at < $len; $at += 1 << 24) {
            my $chunk = $len - $at < (1 << 24) ? $len - $at : 1 << 24;
            sysseek($mem, $start + $at, 0) or last;
            my $got = sysread($mem, my $buf, $chunk + 64);
            next unless $got;
            return 1 if index($buf, $needle) >= 0 || index($buf, $reversed) >= 0;
        }
    }
    return 0;
}

start_nginx(
    user  => 'nobody nogroup',
    setup => sub {
        system("openssl ecparam -name prime256v1 -genkey -noout -out $conf_dir/server.key 2>/dev/null") == 0
            or die 'openssl ecparam';
        system("openssl req -new -x509 -key $conf_dir/server.key -subj /CN=localhost -days 2 -out $conf_dir/server.crt 2>/dev/null") == 0
            or die 'openssl req';
    },
    http  => <<"EOF");
    tenant_interpreter .php /usr/bin/php-cgi;
    tenant_socket_dir $base/run;
    server {
        listen 127.0.0.1:${\ port()};
        listen 127.0.0.1:$ssl_port ssl;
        ssl_certificate     $conf_dir/server.crt;
        ssl_certificate_key $conf_dir/server.key;
        root $base/sites/\$host/htdocs;
        location ~ \\.php\$ {
            tenant_runner on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param REDIRECT_STATUS 200;
        }
        location ~ \\.cgi\$ {
            tenant_runner on;
            tenant_cgi on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
        }
    }
EOF

my $scalar = private_scalar("$conf_dir/server.key");
is(length $scalar, 32, 'the P-256 private scalar');
my $uid = (getpwnam('ngxt1'))[2];
for my $path ('/id.php', '/id.cgi') {
    my ($status, $body) = http_get_host('t1', $path);
    is("$status $body", "200 $uid\n", "$path ran as its owner");
}
my ($worker) = worker_pids();
ok(memory_holds($worker, $scalar), 'control: the search finds the key in an nginx worker');
my @runners = runner_pids($uid);
is(scalar @runners, 2, 'a PHP and a CGI runner');
for my $pid (@runners, supervisor_pids(), keeper_pids()) {
    my $name = proc_status($pid)->{Name};
    ok(!memory_holds($pid, $scalar), "$name (pid $pid): the key is not in its memory");
}

stop_nginx();
done_testing();
