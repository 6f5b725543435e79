# When the worker measures a request's runner: only when something reads
# the figures (a resource directive in http{}, or a $request_cpu_* /
# $request_mem_peak_kb variable referenced by the configuration). Reading
# /proc for every tenant request costs a PHP hello request about a quarter
# of its CPU time, so a configuration that uses neither does not pay it.
# Needs root and real users (skipped otherwise).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use VlimitTest;
use TenantTest;
use ResourceTest qw(cpu_burn_cgi);

plan skip_all => 'nginx or the module is not built' unless nginx_available();
my $skip = tenants_skip_reason();
plan skip_all => $skip if $skip;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
my %users = tenant_users();

make_site('g1', 'ngxt3');
# burns the CPU time (user) in the query, in ms, then answers
write_site_file('g1', 'burn.cgi', cpu_burn_cgi(), owner => 'ngxt3', mode => 0700);

sub read_file { my ($path) = @_; open my $fh, '<', $path or return undef; local $/; my $t = <$fh> // ''; $t }

# The server: a CGI location; $log_vars decides whether the access log
# references the figure variables. A Ruby log handler reads them by name.
sub start_with {
    my ($log_vars) = @_;
    my $format = $log_vars
        ? q{log_format usage '$request_uri cpu_user=$request_cpu_user_ms';}
        : q{log_format usage '$request_uri';};
    start_nginx(user => 'nobody nogroup', workers => 1, http => <<"EOF");
    tenant_socket_dir $base/run;
    $format
    server {
        access_log logs/usage.log usage;
        listen 127.0.0.1:${\ port()};
        server_name localhost;
        root $base/sites/\$host/htdocs;
        location / {
            tenant_runner on;
            tenant_cgi on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_read_timeout 20s;
            mruby_log_handler_code 'Nginx.log Nginx::LOG_NOTICE, "ruby sees cpu_user=[#{Nginx::Var.new.request_cpu_user_ms}]"';
        }
    }
EOF
}

subtest 'a figure variable in a log format turns the measurement on' => sub {
    start_with(1);
    my ($status, $body) = http_get_host('g1', '/burn.cgi?400');
    is("$status $body", "200 burnt\n", 'the burner answers');
    ok(wait_until(sub { (read_file(servroot() . '/logs/usage.log') // '') =~ m{^/burn\.cgi\?400 cpu_user=}m }, 5),
        'its access log line is written');
    my ($user) = (read_file(servroot() . '/logs/usage.log') // '') =~ m{^/burn\.cgi\?400 cpu_user=(\S+)}m;
    ok(defined $user && $user =~ /^\d+$/ && $user >= 300, "\$request_cpu_user_ms is measured: $user");
    like(read_file(servroot() . '/logs/error.log') // '', qr/ruby sees cpu_user=\[\d+\]/,
        'a Ruby log handler reads the figure by name (so the next subtest can tell it apart)');
    stop_nginx();
};

subtest 'no resource directive and no figure variable: nothing is measured' => sub {
    start_with(0);
    my ($status, $body) = http_get_host('g1', '/burn.cgi?100');
    is("$status $body", "200 burnt\n", 'the burner answers');
    ok(wait_until(sub { (read_file(servroot() . '/logs/error.log') // '') =~ /ruby sees cpu_user=/ }, 5),
        'the Ruby log handler ran');
    like(read_file(servroot() . '/logs/error.log') // '', qr/ruby sees cpu_user=\[\]/,
        'a script reading the variable by name sees no figure (documented: it does not turn measurement on)');
    stop_nginx();
};

done_testing();
