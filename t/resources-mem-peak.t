# $request_mem_peak_kb is this request's peak, not the runner's lifetime
# one (issue 10): a PHP runner (php-cgi, the process that does the work)
# that served a request allocating 48 MB reports about 48 MB for it, and
# the cheap request it serves next reports its own small figure, not the
# heavy one. The figures are the kernel's (/proc/<pid>/status read by the
# worker), never the runner's. Needs root and php-cgi (skipped otherwise).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use VlimitTest;
use TenantTest;
use ResourceTest;

plan skip_all => 'nginx or the module is not built' unless nginx_available();
my $skip = tenants_skip_reason();
plan skip_all => $skip if $skip;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
my %users = tenant_users();
make_site('p1', 'ngxt5');
write_site_file('p1', 'alloc.php', qq{<?php \$s = str_repeat("x", (int)\$_GET['mb'] << 20); echo strlen(\$s) >> 20, " MB\\n";\n},
    owner => 'ngxt5', mode => 0600);

start_nginx(user => 'nobody nogroup', workers => 1, http => <<"EOF");
    tenant_interpreter .php /usr/bin/php-cgi;
    tenant_socket_dir $base/run;
    log_format peak '\$request_uri \$tenant_runner_pid \$request_mem_peak_kb';
    server {
        access_log logs/peak.log peak;
        listen 127.0.0.1:${\ port()};
        server_name localhost;
        root $base/sites/\$host/htdocs;
        location ~ \\.php\$ {
            tenant_runner on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param REDIRECT_STATUS 200;
            fastcgi_read_timeout 10s;
        }
    }
EOF

# uri => [runner pid, $request_mem_peak_kb] from the access log.
sub peaks {
    my %by;
    for (split /\n/, slurp(servroot() . '/logs/peak.log') // '') { $by{$1} = [$2, $3] if /^(\S+) (\d+) (\d+)$/ }
    return \%by;
}

subtest 'a cheap request after a heavy one on the same runner reports its own peak' => sub {
    my @order = ('/alloc.php?mb=1&a', '/alloc.php?mb=48', '/alloc.php?mb=1&b');
    for my $uri (@order) {
        my ($status, $body) = http_get_host('p1', $uri, 10);
        my ($mb) = $uri =~ /mb=(\d+)/;
        is("$status $body", "200 $mb MB\n", "$uri served");
    }
    ok(wait_until(sub { keys %{ peaks() } == 3 }, 5), 'three access log lines') or diag explain peaks();
    my $p = peaks();
    my ($first, $heavy, $cheap) = map { $p->{$_} // [0, 0] } @order;
    is(scalar(keys %{ { map { $_->[0] => 1 } $first, $heavy, $cheap } }), 1, "one runner served all three (pid $heavy->[0])");
    ok($heavy->[1] >= 48 * 1024, "the heavy request: $heavy->[1] kB, at least its 48 MB");
    ok($cheap->[1] < $heavy->[1] - 32 * 1024,
        "the cheap one after it: $cheap->[1] kB, its own figure, not the heavy request's $heavy->[1] kB");
    ok($cheap->[1] > 0 && $cheap->[1] < 2 * $first->[1] + 8 * 1024,
        "about what the same cheap request reported before the heavy one ($first->[1] kB)");
};

done_testing();
