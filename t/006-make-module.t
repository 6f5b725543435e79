# `make module` refuses, with a message that says what to do, every input
# it cannot build a loadable module from (packaging/nginx-module.sh; the
# builds that work are run by `make test-module` and `make test-debian`).
# Nothing here compiles or downloads anything.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use FindBin;

my $repo = "$FindBin::Bin/..";
my $script = "$repo/packaging/nginx-module.sh";
my $nginx = $ENV{TEST_NGINX_BINARY} || "$repo/build/sbin/nginx";
my ($version) = `$nginx -v 2>&1` =~ m{nginx/(\d+\.\d+\.\d+)};
ok($version, "the nginx under test reports its version ($nginx)");

# A directory that looks like an nginx source tree of version $v.
sub fake_source {
    my ($v) = @_;
    my $dir = tempdir(CLEANUP => 1);
    make_path("$dir/src/core");
    open my $fh, '>', "$dir/src/core/nginx.h" or die $!;
    print $fh "#define nginx_version      1\n#define NGINX_VERSION      \"$v\"\n";
    close $fh;
    return $dir;
}

# Runs the script with %env; returns (exit status, stderr+stdout).
sub run_module {
    my (%env) = @_;
    local $ENV{NGINX_SOURCE_DIR} = $env{NGINX_SOURCE_DIR} // '';
    local $ENV{NGINX_BINARY} = $env{NGINX_BINARY} // '';
    local $ENV{CARGO} = '/bin/false';    # a refusal must come before any build
    my $out = `'$script' 2>&1`;
    return ($? >> 8, $out);
}

my @cases = (
    ['nothing to build against', {}, qr/make module: give NGINX_SOURCE_DIR=<nginx source> or NGINX_BINARY=<nginx binary>/],
    ['a directory that is no nginx source', { NGINX_SOURCE_DIR => tempdir(CLEANUP => 1) },
        qr/make module: \S+ is not an nginx source tree \(no src\/core\/nginx\.h\)/],
    ['an nginx older than the minimum', { NGINX_SOURCE_DIR => fake_source('1.21.6') },
        qr/make module: nginx 1\.21\.6 is too old: ngx-mruby-rs needs nginx 1\.22\.1 or newer/],
    ['a source of another version than the binary', { NGINX_BINARY => $nginx, NGINX_SOURCE_DIR => fake_source('1.22.0') },
        qr/make module: \S+ is nginx \Q$version\E but \S+ is nginx 1\.22\.0: nginx refuses a module built for another version/],
    ['a binary that is not an executable', { NGINX_BINARY => "$repo/README.md" },
        qr/make module: NGINX_BINARY=\S+ is not an executable/],
);
# A binary no Debian package owns (ours), without a source: nothing to fetch.
push @cases, ['a binary without a package and no source', { NGINX_BINARY => $nginx },
    qr/make module: no Debian package owns \S+: give NGINX_SOURCE_DIR=<the nginx source it was built from>/]
    unless `dpkg-query -S '$nginx' 2>/dev/null`;

for my $case (@cases) {
    my ($name, $env, $message) = @$case;
    my ($status, $out) = run_module(%$env);
    isnt($status, 0, "$name: refused");
    like($out, $message, "$name: says why");
    unlike($out, qr/configuring|Compiling/, "$name: before configuring or compiling");
}

done_testing();
