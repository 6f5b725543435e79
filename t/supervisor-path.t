# `tenant_supervisor <path>;` names the supervisor program for everything
# that runs it: the tenant runners' keeper, and both `nginx -t` cgroup
# checks (`tenant_cgroup` and `resource_cgroup_root`). A wrapper program
# that records its arguments shows which ones ran it. Needs root and a
# writable cgroup hierarchy (nginx -t checks the parent groups).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Cwd ();
use File::Path ();
use VlimitTest;
use TenantTest;

plan skip_all => 'nginx or the module is not built' unless nginx_available();
my $skip = tenants_skip_reason();
plan skip_all => $skip if $skip;

my $real = Cwd::abs_path("$FindBin::Bin/../build/sbin/ngx-mruby-supervisor");
my $port = port();
my ($cgroup_ok, @roots) = cgroup_check($real, "ngx-sup-r-$port");
plan skip_all => "resource_cgroup_root: $roots[0]" unless $cgroup_ok;

my $nginx = $ENV{TEST_NGINX_BINARY} || "$FindBin::Bin/../build/sbin/nginx";
my $load_modules = join '', map { "load_module " . Cwd::abs_path($_) . ";\n" }
    split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || "$FindBin::Bin/../build/modules/ngx_http_mruby_module.so");

# tenant_supervisor takes an absolute path of at most 60 bytes
my $wrapper = "/tmp/ngx-sup-$port.sh";
my $calls = "/tmp/ngx-sup-$port.calls";
END { unlink $wrapper, $calls }
open my $fh, '>', $wrapper or die "$wrapper: $!";
# run with an empty environment: absolute paths only
print $fh "#!/bin/sh\necho \"\$*\" >> $calls\nexec $real \"\$@\"\n";
close $fh;
chmod 0755, $wrapper;

sub nginx_t {
    my ($http) = @_;
    unlink $calls;
    my $dir = servroot();
    File::Path::make_path("$dir/conf", "$dir/logs");
    open my $conf, '>', "$dir/conf/t.conf" or die $!;
    print $conf "${load_modules}user nobody nogroup;\nevents {}\nhttp { $http }\n";
    close $conf;
    my $out = `$nginx -t -p $dir/ -c conf/t.conf 2>&1`;
    my @calls = do { open my $c, '<', $calls or (); <$c> };
    chomp @calls;
    return ($? == 0, $out, [sort @calls]);
}

my ($ok, $out, $calls_seen) = nginx_t(
    "tenant_supervisor $wrapper; tenant_cgroup ngx-sup-t-$port; resource_cgroup_root ngx-sup-r-$port; "
        . "resource_class c cpu=10; server { location / { tenant_runner on; } }");
ok($ok, 'nginx -t passes') or diag $out;
is_deeply($calls_seen, ["check-cgroup ngx-sup-r-$port", "check-cgroup ngx-sup-t-$port"],
    'both cgroup checks ran the program tenant_supervisor names') or diag $out;

($ok, $out, $calls_seen) = nginx_t(
    "tenant_supervisor $wrapper; resource_cgroup_root ngx-sup-r-$port; resource_class c cpu=10;");
ok($ok, 'without tenant runners too') or diag $out;
is_deeply($calls_seen, ["check-cgroup ngx-sup-r-$port"], 'resource_cgroup_root\'s check ran it');

($ok, $out, $calls_seen) = nginx_t("tenant_supervisor $wrapper; tenant_supervisor $wrapper;");
ok(!$ok, 'tenant_supervisor twice fails');
like($out, qr/"tenant_supervisor" directive is duplicate/, 'named');

($ok, $out) = nginx_t('tenant_supervisor relative/sup;');
like($out, qr/"tenant_supervisor" needs an absolute path of at most 60 bytes, not "relative\/sup"/, 'a relative path is refused');

done_testing();
