# Self-test of t/lib/Test/Nginx/Socket.pm.
#
# 1. Unit tests of the pure helpers (response parsing, request building...).
# 2. Runs the fixture files under t/harness/ (named *.t.in so `prove -r t/`
#    does not pick them up) in subprocesses against a plain nginx (no module
#    loaded, port 1985, server root t/servroot_selftest) and checks their TAP:
#    wrong expectations must produce `not ok`, correct ones `ok`.
#
# The nginx binary is chosen exactly as for the real suites
# (TEST_NGINX_BINARY, else build/sbin/nginx, else nginx on PATH); without
# one the file is skipped.

use strict;
use warnings;

use FindBin;
use Cwd ();
use Test::More;

my $Repo;
BEGIN { $Repo = Cwd::abs_path("$FindBin::Bin/..") }
use lib "$Repo/t/lib";

chdir $Repo or die "chdir $Repo: $!";

# Loading the harness sets a few $ENV{TEST_NGINX_*}; remember the caller's
# environment first so the fixtures get a clean one.
my %CallerEnv;
BEGIN { %CallerEnv = %ENV }
require Test::Nginx::Socket;

my $Port    = 1985;
my $ServRoot = "$Repo/t/servroot_selftest";

my $binary = do { no warnings 'once'; $Test::Nginx::Socket::NginxBinary };
my $have_nginx = $binary =~ m{/} ? -x $binary : !system("command -v '$binary' >/dev/null 2>&1");
if (!$have_nginx) {
    # An explicitly chosen binary that is missing is an error; having no
    # nginx at all (nothing built yet, none installed) only skips.
    BAIL_OUT("TEST_NGINX_BINARY=$ENV{TEST_NGINX_BINARY} is not executable")
        if $CallerEnv{TEST_NGINX_BINARY};
    plan skip_all => "no nginx binary (set TEST_NGINX_BINARY or build build/sbin/nginx)";
}

unit_tests();
default_discovery_tests();
expectations_fixture();
features_fixture();
config_fixture();
master_fixture();

done_testing();

# Keep the server root for debugging only when something failed.
END {
    require File::Path;
    File::Path::remove_tree($ServRoot)
        if Test::More->builder->is_passing && -d $ServRoot && !$ENV{TEST_NGINX_NO_CLEAN};
}

# ---------------------------------------------------------------------------

sub unit_tests {
    my $T = 'Test::Nginx::Socket';

    is($T->can('parse_time')->('50ms'), 0.05, 'parse_time ms');
    is($T->can('parse_time')->('1.5'), 1.5, 'parse_time seconds');
    is($T->can('parse_time')->('2s'), 2, 'parse_time with s suffix');

    is($T->can('parse_mtime')->('202001020304.05'), 1577934245, 'user_files mtime CCYYMMDDhhmm.ss (GMT)');
    is($T->can('parse_mtime')->('@12345'), 12345, 'user_files mtime @epoch');

    my $chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
                . "3\r\nabc\r\n5;ext=1\r\nde\r\nf\r\n0\r\nTrailer: x\r\n\r\n";
    my $res = Test::Nginx::Socket::parse_responses($chunked, ['GET'], 1);
    is($res->[0]{body}, "abcde\r\nf", 'chunked body decoded');
    ok($res->[0]{complete}, 'chunked response complete');
    is(scalar $res->[0]{headers}->header('X-A'), '1', 'header parsed');

    ok(!defined Test::Nginx::Socket::parse_responses(substr($chunked, 0, -3), ['GET'], 0),
       'incomplete chunked response needs more data');

    my $two = "HTTP/1.1 100 Continue\r\n\r\n"
            . "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
            . "HTTP/1.1 204 No Content\r\n\r\n"
            . "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
            . "HTTP/1.0 200 OK\r\n\r\nuntil close";
    $res = Test::Nginx::Socket::parse_responses($two, [qw(POST GET HEAD GET)], 1);
    is_deeply([map { $_->{code} } @$res], [200, 204, 200, 200], 'pipelined: 100 skipped, codes');
    is_deeply([map { $_->{body} } @$res], ['hi', '', '', 'until close'],
              'pipelined: CL, 204, HEAD and close-delimited bodies');

    my $req = Test::Nginx::Socket::build_request(
        text => "# comment\nPOST /x?a=1\n\n  body text  \n", more_headers => "X-Y: z\n", name => 'u');
    is($req->{bytes},
       "POST /x?a=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Y: z\r\n"
       . "Content-Length: 9\r\n\r\nbody text", 'request built with Host, Connection, Content-Length');
    $req = Test::Nginx::Socket::build_request(
        text => "GET / HTTP/1.0", more_headers => "Host: h\nConnection: keep-alive", name => 'u');
    is($req->{bytes}, "GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
       'more_headers override Host and Connection');
}

# TEST_NGINX_BINARY / TEST_NGINX_LOAD_MODULES defaults, checked in a child
# with those variables unset.
sub default_discovery_tests {
    my %env = %CallerEnv;
    delete @env{qw(TEST_NGINX_BINARY TEST_NGINX_LOAD_MODULES)};
    my $probe = q{print join("|", $Test::Nginx::Socket::NginxBinary, @Test::Nginx::Socket::LoadModules)};
    my $out = run_child(\%env, $^X, "-I$Repo/t/lib", '-MTest::Nginx::Socket', '-e', $probe);
    my ($bin, @mods) = split /\|/, $out->{stdout};
    my $built = "$Repo/build/sbin/nginx";
    if (-x $built) {
        is($bin, $built, 'default binary is build/sbin/nginx');
    } else {
        like($bin, qr{(?:^|/)nginx$}, 'without build/sbin/nginx the binary comes from PATH');
    }
    my $so = "$Repo/build/modules/ngx_http_mruby_module.so";
    is_deeply(\@mods, -e $so ? [$so] : [], 'default load_module list');

    $env{TEST_NGINX_LOAD_MODULES} = '';
    $out = run_child(\%env, $^X, "-I$Repo/t/lib", '-MTest::Nginx::Socket', '-e', $probe);
    my (undef, @none) = split /\|/, $out->{stdout};
    is_deeply(\@none, [], 'TEST_NGINX_LOAD_MODULES="" loads nothing');
}

sub expectations_fixture {
    my $r = run_fixture('t/harness/expectations.t.in');
    isnt($r->{status}, 0, 'expectations fixture exits non-zero');

    outcome_is($r, 'TEST 1: all correct', qr/./, 'ok', 6);
    outcome_is($r, 'TEST 2: wrong response_body', qr/ - status code ok$/, 'ok');
    outcome_is($r, 'TEST 2: wrong response_body', qr/ - response_body - response is expected$/, 'not ok');
    outcome_is($r, 'TEST 3: wrong error_code', qr/ - status code ok$/, 'not ok');
    outcome_is($r, 'TEST 3: wrong error_code', qr/ - response_body - response is expected$/, 'ok');
    outcome_is($r, 'TEST 4: wrong response_headers', qr/ - header X-Test ok$/, 'not ok');
    outcome_is($r, 'TEST 5: missing error_log pattern', qr/should exist in error\.log/, 'not ok');
    outcome_is($r, 'TEST 6: present no_error_log pattern', qr/should not exist in error\.log/, 'not ok');
    outcome_is($r, 'TEST 7: error_log finds the open() failure', qr/./, 'ok', 3);
    outcome_is($r, 'TEST 8: default error_code 200 fails on 404', qr/ - status code ok$/, 'not ok');
    outcome_is($r, 'TEST 9: timeout without abort fails', qr/client socket timed out/, 'not ok');
    outcome_is($r, 'TEST 10: wrong response_body_like', qr/ - status code ok$/, 'ok');
    outcome_is($r, 'TEST 10: wrong response_body_like', qr/ - response_body_like - response is expected$/, 'not ok');
    outcome_is($r, 'TEST 11: wrong grep_error_log_out', qr/ - status code ok$/, 'ok');
    outcome_is($r, 'TEST 11: wrong grep_error_log_out', qr/ - grep_error_log_out$/, 'not ok');
    outcome_is($r, 'TEST 12: must_die but nginx starts', qr/must die/, 'not ok');
    no_perl_warnings($r, 'expectations');
}

sub features_fixture {
    my $r = run_fixture('t/harness/features.t.in');
    is($r->{status}, 0, 'features fixture passes (exit 0)')
        or diag($r->{stdout} . $r->{stderr});
    like($r->{stdout}, qr/^1\.\.42$/m, 'features fixture planned 42 tests');
    is(scalar(grep { $_->{ok} } @{ $r->{tests} }), 42, 'all 42 subtests ok (or skipped)');

    outcome_is($r, 'TEST 1: must_die', qr/nginx died/, 'ok');
    outcome_is($r, 'TEST 1: must_die', qr/unknown directive/, 'ok');
    outcome_is($r, 'TEST 2: request eval arrayref', qr/\(req 1\) - response_body/, 'ok');
    outcome_is($r, 'TEST 3: pipelined_requests', qr/\(req 2\) - response_body/, 'ok');
    outcome_is($r, 'TEST 4: user_files', qr/Last-Modified/, 'ok');
    outcome_is($r, 'TEST 5: more_headers', qr/response_body/, 'ok');
    outcome_is($r, 'TEST 6: raw_request', qr/response_body/, 'ok');
    outcome_is($r, 'TEST 7: timeout with abort', qr/./, 'ok', 0);
    outcome_is($r, 'TEST 9: SKIP', qr/./, 'ok', 0);
    outcome_is($r, 'TEST 13: request packets', qr/response_body/, 'ok');
    no_perl_warnings($r, 'features');
}

sub config_fixture {
    my $r = run_fixture('t/harness/config.t.in');
    is($r->{status}, 0, 'config fixture passes (exit 0)')
        or diag($r->{stdout} . $r->{stderr});
    my @t = @{ $r->{tests} };
    is(scalar(grep { $_->{ok} } @t), 32, 'all 32 subtests ok');
    outcome_is($r, 'TEST 2: log_level', qr/ - grep_error_log_out$/, 'ok', 2);
    outcome_is($r, 'TEST 3: no config', qr/ - response_body - response is expected$/, 'ok', 2);
    no_perl_warnings($r, 'config');
}

sub master_fixture {
    my $r = run_fixture('t/harness/master.t.in');
    is($r->{status}, 0, 'master_on/workers(2) fixture passes')
        or diag($r->{stdout} . $r->{stderr});
    is(scalar(grep { $_->{ok} } @{ $r->{tests} }), 14, 'all 14 subtests ok');
    no_perl_warnings($r, 'master');
    ok(!-e "$ServRoot/logs/nginx.pid" || !kill(0, slurp_pid()), 'nginx stopped after the fixture');
}

# ---------------------------------------------------------------------------

sub fixture_env {
    my %env = %CallerEnv;
    # Settings that would make a fixture talk to another nginx or leave one
    # running are dropped; the binary choice is inherited.
    delete $env{$_} for grep { /^TEST_NGINX_/ && $_ ne 'TEST_NGINX_BINARY' } keys %env;
    delete $env{$_} for qw(HARNESS_ACTIVE HARNESS_VERSION HARNESS_IS_VERBOSE);
    $env{TEST_NGINX_PORT}         = $Port;
    $env{TEST_NGINX_SERVROOT}     = $ServRoot;
    $env{TEST_NGINX_LOAD_MODULES} = '';
    $env{TEST_NGINX_BINARY}       = $binary;
    return \%env;
}

sub run_fixture {
    my $file = shift;
    my $r = run_child(fixture_env(), $^X, $file);
    my @tests;
    for my $line (split /\n/, $r->{stdout}) {
        next unless $line =~ /^(not )?ok \d+(?: - (.*)|\s*# skip.*)$/i;
        push @tests, { ok => !$1, name => $2 // 'skipped' };
    }
    $r->{tests} = \@tests;
    note("$file:\n$r->{stdout}") if $ENV{TEST_VERBOSE};
    return $r;
}

# Run a command with a given environment; capture stdout, stderr and status.
sub run_child {
    my ($env, @cmd) = @_;
    my $errfile = "/tmp/harness-selftest-$$.stderr";
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        %ENV = %$env;
        open STDERR, '>', $errfile or die $!;
        exec @cmd or die "exec @cmd: $!";
    }
    my $stdout = do { local $/; <$fh> } // '';
    close $fh;
    my $status = $?;
    open my $e, '<', $errfile;
    my $stderr = $e ? do { local $/; <$e> } // '' : '';
    unlink $errfile;
    return { stdout => $stdout, stderr => $stderr, status => $status };
}

# All subtests of block $block whose name matches $re have status $want;
# $count, if given, is the exact number of such subtests.
sub outcome_is {
    my ($r, $block, $re, $want, $count) = @_;
    my @hits = grep { index($_->{name}, " - $block") >= 0 && $_->{name} =~ $re } @{ $r->{tests} };
    my $desc = "$block / $re: $want";
    if (defined $count) {
        is(scalar @hits, $count, "$desc (count $count)") or return;
        return if !$count;
    }
    ok(@hits && !grep({ ($_->{ok} ? 'ok' : 'not ok') ne $want } @hits), $desc)
        or diag(join "\n", map { ($_->{ok} ? 'ok' : 'not ok') . " - $_->{name}" } @hits);
}

sub no_perl_warnings {
    my ($r, $what) = @_;
    unlike($r->{stderr}, qr/^(?!#).* at \S*Socket\.pm line \d+\.$/m, "$what: no Perl warnings from the harness")
        or diag($r->{stderr});
}

sub slurp_pid {
    open my $fh, '<', "$ServRoot/logs/nginx.pid" or return 0;
    my $pid = <$fh> // 0;
    chomp $pid;
    return $pid;
}
