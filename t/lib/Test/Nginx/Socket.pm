package Test::Nginx::Socket;

# A compatible subset of OpenResty's Test::Nginx::Socket (the "=== TEST /
# --- section" block format), built on Debian's Test::Base.
#
# Usage (from the repository root, e.g. `prove -r t/`):
#
#     use lib 't/lib';
#     use Test::Nginx::Socket 'no_plan';
#     repeat_each(2);
#     run_tests();
#     __DATA__
#     === TEST 1: hello
#     --- config
#         location = /t { return 200 "hi\n"; }
#     --- request
#     GET /t
#     --- response_body
#     hi
#
# The format reference lives in shared/reference/test_nginx_format.md; the
# POD at the end of this file lists what this implementation supports.

use strict;
use warnings;

use Test::Base ();    # load without import: our own import() is the entry point
our @ISA = ('Test::Base');

use Test::More ();
use Cwd ();
use Errno ();
use File::Basename ();
use File::Path ();
use File::Spec;
use HTTP::Headers;
use IO::Select;
use IO::Socket::INET;
use List::Util ();
use POSIX ();
use Time::HiRes ();
use Time::Local ();

# Spiffy (Test::Base's base) exports @EXPORT of this class and of Test::Base
# (plan, blocks, is, ...) to the test file.
our @EXPORT = qw(
    run_tests run_test
    repeat_each workers master_on master_off master_process_enabled
    log_level no_shuffle no_long_string no_diff no_root_location
    worker_connections env_to_nginx add_block_preprocessor
    add_response_body_check config_preamble check_accum_error_log
    server_port server_port_for_client server_addr server_name
    html_dir server_root get_servroot stream_port stream_exchange rand_port
    nginx_pid worker_pids bail_out
);

# ---------------------------------------------------------------------------
# Global settings (set from the environment, then by the exported setters)
# ---------------------------------------------------------------------------

# <repo> is four levels above this file's directory: t/lib/Test/Nginx/.
our $RepoRoot = do {
    my $dir = File::Basename::dirname(File::Spec->rel2abs(__FILE__));
    Cwd::abs_path("$dir/../../../..") // "$dir/../../../..";
};

our $RepeatEach        = 1;
our $Workers           = 1;
our $WorkerConnections = 64;
our $MasterProcessEnabled =
    (($ENV{TEST_NGINX_MASTER_PROCESS} // 'off') =~ /^(?:on|1|yes)$/i) ? 1 : 0;
our $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $NoRootLocation    = 0;
our $NoLongString      = 0;
our $CheckAccumErrLog  = 0;
our $ConfigPreamble    = '';
our @EnvToNginx;
our @BlockPreprocessors;
our @ResponseBodyChecks;

our $Timeout   = parse_time($ENV{TEST_NGINX_TIMEOUT}) // 3;
# Slows every wait for nginx to start and stop (valgrind: `make test-valgrind`).
our $StartStopScale = $ENV{TEST_NGINX_START_STOP_SCALE} || 1;
our $NginxSleep = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $NoClean   = $ENV{TEST_NGINX_NO_CLEAN} ? 1 : 0;
our $Randomize = $ENV{TEST_NGINX_RANDOMIZE} ? 1 : 0;
our $ServerAddr = '127.0.0.1';    # we only ever listen on loopback
our $ServerName = 'localhost';

our $ServerPort = $Randomize
    ? pick_free_port()
    : ($ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984);
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
# The stream{} server of blocks with stream_* sections (stream mode).
our $StreamPort = $Randomize
    ? pick_free_port($ServerPort)
    : ($ENV{TEST_NGINX_STREAM_PORT} || $ServerPort + 1);

our $ServRoot = $Randomize
    ? "$RepoRoot/t/servroot_$ServerPort"
    : File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT} || "$RepoRoot/t/servroot");
our $HtmlDir  = "$ServRoot/html";
our $LogDir   = "$ServRoot/logs";
our $ConfDir  = "$ServRoot/conf";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $PidFile    = "$LogDir/nginx.pid";
our $ConfFile   = "$ConfDir/nginx.conf";
our $StartStderrFile = "$LogDir/nginx_start.stderr";

our $NginxBinary = find_nginx_binary();
our @LoadModules = find_load_modules();

# Make these visible to `$TEST_NGINX_*` expansion and to test-file code.
$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
$ENV{TEST_NGINX_STREAM_PORT} = $StreamPort;
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
$ENV{TEST_NGINX_HTML_DIR}    = $HtmlDir;

# Runtime state.
my $HarnessPid = $$;        # forked children of a test must not stop nginx
my $NginxRunning = 0;       # we started nginx and it is (believed) alive
my $EverStarted  = 0;
my %RandPorts;              # $TEST_NGINX_RAND_PORT_<n>, reset per block
my $NginxInfo;              # cached `nginx -V` output

if ($ENV{TEST_NGINX_USE_HUP}) {
    # Reload-by-HUP is not implemented; a full restart is always done.
    Test::More::diag("Test::Nginx::Socket: TEST_NGINX_USE_HUP is not supported; restarting instead");
}

# ---------------------------------------------------------------------------
# import: `use Test::Nginx::Socket 'no_plan'` / `tests => N` / plain
# ---------------------------------------------------------------------------

sub import {
    # Test::Base::import passes plan arguments to Test::More, installs the
    # strict/warnings source filter on the test file, and then lets Spiffy
    # export @EXPORT (ours plus Test::Base's) to the caller.
    goto &Test::Base::import;
}

# ---------------------------------------------------------------------------
# Exported setters / getters
# ---------------------------------------------------------------------------

sub repeat_each { $RepeatEach = shift if @_; return $RepeatEach }
sub workers     { $Workers = shift if @_; return $Workers }
sub worker_connections { $WorkerConnections = shift if @_; return $WorkerConnections }
sub master_on   { $MasterProcessEnabled = 1 }
sub master_off  { $MasterProcessEnabled = 0 }
sub master_process_enabled { $MasterProcessEnabled = shift ? 1 : 0 if @_; return $MasterProcessEnabled }
sub log_level   { $LogLevel = shift if @_; return $LogLevel }
sub no_shuffle  { return }    # we never shuffle: blocks run in file order
sub no_long_string { $NoLongString = 1 }
sub no_diff     { $ENV{TEST_SHOW_NO_DIFFS} = 1 }    # read by Test::Base::is
sub no_root_location { $NoRootLocation = 1 }
sub check_accum_error_log { $CheckAccumErrLog = 1 }
sub env_to_nginx { push @EnvToNginx, @_ }
sub config_preamble { $ConfigPreamble = shift if @_; return $ConfigPreamble }
sub add_block_preprocessor { push @BlockPreprocessors, shift }
sub add_response_body_check { push @ResponseBodyChecks, shift }
sub server_port { return $ServerPort }
sub server_port_for_client { return $ServerPortForClient }
sub stream_port { return $StreamPort }
# The port $TEST_NGINX_RAND_PORT_<n> stands for in the running block.
sub rand_port {
    my $var = "TEST_NGINX_RAND_PORT_" . shift;
    return $RandPorts{$var} //= pick_free_port($ServerPort, values %RandPorts);
}
sub server_addr { return $ServerAddr }
sub server_name { return $ServerName }
sub server_root { return $ServRoot }
sub get_servroot { return $ServRoot }
sub html_dir    { return $HtmlDir }
sub bail_out    { Test::More::BAIL_OUT(join '', @_) }

# Master (or single) nginx process id, from logs/nginx.pid; undef if none.
sub nginx_pid {
    open my $fh, '<', $PidFile or return undef;
    my $pid = <$fh>;
    close $fh;
    return undef unless defined $pid && $pid =~ /^\s*(\d+)/;
    return $1;
}

# Worker process ids: the children of the master. With master_process off
# the single nginx process does the work, so it is returned instead.
sub worker_pids {
    my $pid = nginx_pid() or return ();
    return ($pid) unless $MasterProcessEnabled;
    return child_pids($pid);
}

# ---------------------------------------------------------------------------
# Environment / binary discovery
# ---------------------------------------------------------------------------

sub find_nginx_binary {
    return $ENV{TEST_NGINX_BINARY} if $ENV{TEST_NGINX_BINARY};
    my $built = "$RepoRoot/build/sbin/nginx";
    return $built if -x $built;
    for my $dir (File::Spec->path, '/usr/sbin', '/usr/local/sbin') {
        my $cand = "$dir/nginx";
        return $cand if -x $cand && !-d $cand;
    }
    return 'nginx';    # start will fail with a clear message
}

sub find_load_modules {
    if (defined $ENV{TEST_NGINX_LOAD_MODULES}) {
        # An explicitly empty value means "load nothing".
        return map { File::Spec->rel2abs($_) } split ' ', $ENV{TEST_NGINX_LOAD_MODULES};
    }
    my $default = "$RepoRoot/build/modules/ngx_http_mruby_module.so";
    return -e $default ? ($default) : ();
}

# `nginx -V` output (stderr), cached; used for temp-path directives and
# skip_nginx version checks.
sub nginx_info {
    return $NginxInfo if defined $NginxInfo;
    my $bin = $NginxBinary;
    $NginxInfo = `'$bin' -V 2>&1` // '';
    return $NginxInfo;
}

sub nginx_version {
    my ($v) = nginx_info() =~ m{nginx version: \S+?/(\d+(?:\.\d+)*)};
    return $v;
}

# ---------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------

# "3", "1.5", "1.5s", "50ms" -> seconds (undef if not parseable).
sub parse_time {
    my $v = shift;
    return undef unless defined $v;
    $v =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $v =~ /^(\d+(?:\.\d*)?)\s*ms$/;
    return $1 + 0    if $v =~ /^(\d+(?:\.\d*)?)\s*s?$/;
    return undef;
}

# Ask the kernel for a currently free loopback port.
sub pick_free_port {
    my %avoid = map { $_ => 1 } grep { defined } @_, 8080;
    for (1 .. 20) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                      Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            or next;
        my $port = $s->sockport;
        close $s;
        return $port unless $avoid{$port};
    }
    die "cannot find a free port\n";
}

sub slurp {
    my $file = shift;
    open my $fh, '<:raw', $file or return undef;
    local $/;
    my $data = <$fh>;
    close $fh;
    return $data // '';
}

sub spew {
    my ($file, $data) = @_;
    File::Path::make_path(File::Basename::dirname($file));
    open my $fh, '>:raw', $file or bail_out("cannot write $file: $!");
    print {$fh} $data;
    close $fh or bail_out("cannot close $file: $!");
}

# Replace $TEST_NGINX_* variables. Undefined ones bail out (as OpenResty does)
# because a silently empty value would produce confusing configs.
sub expand_env_in_text {
    my ($text, $name) = @_;
    return $text unless defined $text && !ref $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            $RandPorts{$var} //= pick_free_port($ServerPort, values %RandPorts);
        } elsif (defined $ENV{$var}) {
            $ENV{$var};
        } else {
            bail_out(($name // 'test') . " - No environment $var defined.");
        }
    }ge;
    return $text;
}

# Expansion for expected values: $TEST_NGINX_* plus $ServerPort.
sub expand_expected {
    my ($v, $name) = @_;
    return $v unless defined $v && !ref $v;
    $v = expand_env_in_text($v, $name);
    $v =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
    $v =~ s/\$ServerPort\b/$ServerPort/g;
    return $v;
}

# Per-request expectation: an arrayref is indexed by request number.
sub pick {
    my ($v, $idx) = @_;
    return ref $v eq 'ARRAY' ? $v->[$idx] : $v;
}

# A section's value, or undef when the section is absent.
sub section {
    my ($block, $name) = @_;
    return undef unless exists $block->{$name};
    return scalar $block->$name;
}

# ---------------------------------------------------------------------------
# Process helpers (Linux /proc based)
# ---------------------------------------------------------------------------

sub proc_stat {
    my $pid = shift;
    my $stat = slurp("/proc/$pid/stat") // return undef;
    # The command name is in parentheses and may contain spaces.
    my ($state, $ppid) = $stat =~ /\)\s+(\S)\s+(\d+)/ or return undef;
    return { state => $state, ppid => $ppid };
}

# Alive and not a zombie (a reparented daemon can linger as a zombie when
# nothing reaps it, and kill 0 would still succeed on it).
sub process_alive {
    my $pid = shift;
    return 0 unless $pid && kill(0, $pid);
    my $st = proc_stat($pid);
    return 1 unless $st;    # no /proc: trust kill 0
    return $st->{state} ne 'Z' && $st->{state} ne 'X';
}

sub child_pids {
    my $parent = shift;
    my @kids;
    opendir my $dh, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my $st = proc_stat($pid) or next;
        push @kids, $pid if $st->{ppid} == $parent && $st->{state} ne 'Z';
    }
    closedir $dh;
    return sort { $a <=> $b } @kids;
}

# Is anything listening on TCP $port? Read /proc/net/tcp* instead of
# connecting, because a probe connection would be logged by nginx
# ("client closed connection ...") and could break no_error_log checks.
sub port_listening {
    my $port = shift;
    my $hex = sprintf '%04X', $port;
    my $found_table = 0;
    for my $table ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $table or next;
        $found_table = 1;
        while (<$fh>) {
            my (undef, undef, $local, undef, $state) = split /\s+/;
            next unless defined $state && $local =~ /:([0-9A-F]{4})$/;
            return 1 if $1 eq $hex && $state eq '0A';    # 0A = LISTEN
        }
    }
    return 0 if $found_table;
    # No /proc: fall back to a probe connection.
    my $s = IO::Socket::INET->new(PeerAddr => $ServerAddr, PeerPort => $port,
                                  Proto => 'tcp', Timeout => 0.5);
    return $s ? 1 : 0;
}

# Poll $cond every 10ms for at most $secs seconds.
sub wait_until {
    my ($cond, $secs) = @_;
    my $deadline = Time::HiRes::time() + $secs;
    while (1) {
        return 1 if $cond->();
        return 0 if Time::HiRes::time() >= $deadline;
        Time::HiRes::sleep(0.01);
    }
}

# ---------------------------------------------------------------------------
# nginx lifecycle
# ---------------------------------------------------------------------------

# Stop whatever nginx runs from our server root: SIGQUIT (graceful), then
# SIGKILL after a few seconds. Workers are killed too so nothing keeps the
# listening socket open.
sub stop_nginx {
    my $pid = nginx_pid();
    if ($pid && process_alive($pid)) {
        my @kids = child_pids($pid);
        kill 'QUIT', $pid;
        unless (wait_until(sub { !process_alive($pid) }, 5 * $StartStopScale)) {
            Test::More::diag("nginx (pid $pid) did not quit within 5s; sending SIGKILL");
            kill 'KILL', $pid;
            wait_until(sub { !process_alive($pid) }, 2);
        }
        for my $kid (@kids) {
            next if wait_until(sub { !process_alive($kid) }, 2);
            kill 'KILL', $kid;
            wait_until(sub { !process_alive($kid) }, 1);
        }
    }
    unlink $PidFile;
    $NginxRunning = 0;
    # Wait for the listening socket to go away (it may belong to a process
    # we did not see, e.g. a worker of an older run).
    for my $port ($ServerPort, $StreamPort) {
        next if wait_until(sub { !port_listening($port) }, 3);
        Test::More::diag("port $port is still in use after stopping nginx");
    }
}

# Recreate the server root: conf/, logs/, html/ (with index.html), and remove
# temp/cache directories left by the previous run.
sub setup_server_root {
    File::Path::make_path($ServRoot);
    opendir my $dh, $ServRoot or bail_out("cannot open $ServRoot: $!");
    for my $entry (readdir $dh) {
        next unless $entry =~ /^(?:conf|logs|html|cache|.*_temp|.*_cache)$/;
        File::Path::remove_tree("$ServRoot/$entry");
    }
    closedir $dh;
    File::Path::make_path($LogDir, $HtmlDir, $ConfDir);
    spew("$HtmlDir/index.html",
         "<html><head><title>It works!</title></head><body>It works!</body></html>");
}

# --- user_files: ">>> name [mtime]" followed by the content, or an eval
# arrayref of [name, content, mtime?].
sub write_user_files {
    my ($block, $name) = @_;
    my $spec = section($block, 'user_files');
    return unless defined $spec;
    my @files;
    if (ref $spec eq 'ARRAY') {
        @files = @$spec;
    } else {
        my $cur;
        for my $line (split /^/, $spec) {
            if ($line =~ /^>>>\s+(\S+)(?:\s+(\S+))?\s*$/) {
                $cur = [$1, '', $2];
                push @files, $cur;
            } elsif ($cur) {
                $cur->[1] .= $line;
            } else {
                bail_out("$name - user_files must start with a '>>> name' line");
            }
        }
    }
    for my $f (@files) {
        my ($fname, $content, $mtime) = @$f;
        my $path = "$HtmlDir/$fname";
        spew($path, $content // '');
        if (defined $mtime && length $mtime) {
            my $t = parse_mtime($mtime)
                // bail_out("$name - bad user_files mtime '$mtime' for $fname");
            utime $t, $t, $path;
        }
    }
}

# mtime: "@<epoch>" or touch -t format [[CC]YY]MMDDhhmm[.ss], in GMT (the
# OpenResty harness runs `TZ=GMT touch -t`).
sub parse_mtime {
    my $v = shift;
    return $1 if $v =~ /^@(\d+)$/;
    my ($digits, $ss) = $v =~ /^(\d{8}|\d{10}|\d{12})(?:\.(\d\d))?$/ or return undef;
    my ($year, $rest);
    if (length $digits == 12) {
        ($year, $rest) = (substr($digits, 0, 4), substr($digits, 4));
    } elsif (length $digits == 10) {
        my $yy = substr($digits, 0, 2);
        ($year, $rest) = ($yy < 69 ? 2000 + $yy : 1900 + $yy, substr($digits, 2));
    } else {
        ($year, $rest) = ((gmtime)[5] + 1900, $digits);
    }
    my ($mon, $day, $hour, $min) = $rest =~ /^(\d\d)(\d\d)(\d\d)(\d\d)$/;
    return scalar eval { Time::Local::timegm($ss // 0, $min, $hour, $day, $mon - 1, $year) };
}

# Temp path directives, omitted for modules compiled out of the binary.
sub temp_path_lines {
    my $http_config = shift // '';
    # OpenResty: a test that sets its own temp paths gets none of ours.
    return '' if $http_config =~ /\b(?:proxy_temp_path|client_body_temp_path)\b/;
    my $info = nginx_info();
    my @lines = ("client_body_temp_path $ServRoot/client_body_temp;");
    for my $m (qw(proxy fastcgi scgi uwsgi)) {
        next if $info =~ /--without-http_${m}_module/;
        push @lines, "${m}_temp_path $ServRoot/${m}_temp;";
    }
    return join '', map { "    $_\n" } @lines;
}

sub write_config_file {
    my ($block, $name) = @_;
    my %sec = map { $_ => expand_env_in_text(section($block, $_) // '', $name) }
              qw(config http_config main_config post_main_config stream_config stream_server_config);
    my $preamble  = expand_env_in_text($ConfigPreamble, $name);
    my $level     = section($block, 'log_level') // $LogLevel;
    $level =~ s/^\s+|\s+$//g;
    my $master    = $MasterProcessEnabled ? 'on' : 'off';
    my $env_lines = join '', map { my $e = /\s/ ? "'$_'" : $_; "env $e;\n" }
        qw(MOCKEAGAIN_VERBOSE MOCKEAGAIN MOCKEAGAIN_WRITE_TIMEOUT_PATTERN
           LD_PRELOAD LD_LIBRARY_PATH ASAN_OPTIONS), @EnvToNginx;
    my $modules   = join '', map { "load_module $_;\n" } @LoadModules;
    my $temp      = temp_path_lines($sec{http_config});
    my $root_loc  = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_
    my $user = $> == 0 ? "user root;\n" : '';
    my $stream = !is_stream_block($block) ? '' : <<"_EOC_";
stream {
$sec{stream_config}

    server {
        listen $ServerAddr:$StreamPort;

        # Begin stream server config...
$sec{stream_server_config}
        # End stream server config.
    }
}
_EOC_

    spew($ConfFile, <<"_EOC_");
worker_processes  $Workers;
daemon on;
master_process $master;
error_log $ErrLogFile $level;
pid       $PidFile;
$env_lines
$modules
$sec{main_config}

http {
    access_log $AccLogFile;
$temp
    default_type text/plain;
    keepalive_timeout  68000ms;

$sec{http_config}

    server {
        listen          $ServerAddr:$ServerPort;
        server_name     '$ServerName';
        client_max_body_size 30M;

        # Begin preamble config...
$preamble
        # End preamble config...

        # Begin test case config...
$sec{config}
        # End test case config.

$root_loc    }
}

$stream
$sec{post_main_config}

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
$user
_EOC_
}

# Run the nginx binary once. Returns (ok, stderr_text, exit_status).
sub exec_nginx {
    my @cmd = ($NginxBinary, '-e', $ErrLogFile, '-p', "$ServRoot/", '-c', $ConfFile);
    my $pid = fork // bail_out("fork failed: $!");
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', $StartStderrFile;
        exec { $cmd[0] } @cmd or do { print STDERR "cannot exec $cmd[0]: $!\n"; POSIX::_exit(127) };
    }
    waitpid $pid, 0;
    my $status = $?;
    my $stderr = slurp($StartStderrFile) // '';
    return ($status == 0, $stderr, $status);
}

# (Re)start nginx for a block. Returns a hash: ok, stderr, status.
sub start_nginx {
    my ($block, $name) = @_;
    stop_nginx();
    setup_server_root();
    write_user_files($block, $name);
    if (defined(my $code = section($block, 'post_setup_server_root'))) {
        run_perl_snippet($code, "$name - post_setup_server_root");
    }
    write_config_file($block, $name);

    # Retry only while the port is busy (e.g. a slow previous instance);
    # anything else is a real start failure.
    my $deadline = Time::HiRes::time() + 5 * $StartStopScale;
    my ($ok, $stderr, $status);
    while (1) {
        ($ok, $stderr, $status) = exec_nginx();
        last if $ok;
        last unless $stderr =~ /Address already in use/
                 && Time::HiRes::time() < $deadline;
        Time::HiRes::sleep(0.2);
    }
    $EverStarted = 1;
    return { ok => 0, stderr => $stderr, status => $status } unless $ok;

    # daemon on: the foreground process has exited; wait for the daemon's
    # pid file, listening socket and workers instead of sleeping a fixed time.
    # The daemon can also die right after forking (e.g. a module's
    # init_process handler failed): stop waiting then and report a failure.
    my $died = 0;
    my $up = wait_until(sub {
        my $pid = nginx_pid() or return 0;
        return $died = 1 unless process_alive($pid);
        return 0 unless port_listening($ServerPort);
        return 0 if is_stream_block($block) && !port_listening($StreamPort);
        # The master binds before forking workers; tests that look at
        # worker_pids() right away need them to exist.
        my @kids = $MasterProcessEnabled ? child_pids($pid) : ();
        return !$MasterProcessEnabled || @kids >= $Workers;
    }, 5 * $StartStopScale);
    if ($died) {
        return { ok => 0, status => 0,
                 stderr => $stderr . "nginx exited right after daemonizing\n" };
    }
    $NginxRunning = 1;
    unless ($up) {
        Test::More::diag("$name - nginx did not get ready (pid file, port $ServerPort, workers) within 5s");
    }
    return { ok => 1, stderr => $stderr, status => 0 };
}

sub run_perl_snippet {
    my ($code, $what) = @_;
    no strict;    ## no critic -- test snippets are often quick-and-dirty
    local $@;
    eval "package main; $code; 1" or bail_out("$what failed: $@");
}

# ---------------------------------------------------------------------------
# Building requests
# ---------------------------------------------------------------------------

# more_headers text -> list of [name, value].
sub parse_more_headers {
    my $text = shift;
    return () unless defined $text;
    my @h;
    for my $line (split /\n/, $text) {
        next if $line =~ /^\s*(?:#|$)/;
        my ($k, $v) = $line =~ /^\s*([^:\s][^:]*?)\s*:\s*(.*?)\s*$/
            or do { push @h, [$line, undef]; next };    # sent verbatim
        push @h, [$k, $v];
    }
    return @h;
}

# One request text ("METHOD [URI [PROTO]]\nbody") -> wire bytes + method.
sub build_request {
    my (%o) = @_;    # text, more_headers, keepalive, name
    my $text = $o{text} // '';
    $text =~ s/\A\s+//;
    $text =~ s/\A(?:#[^\n]*\n\s*)+//;    # leading comment lines
    my ($first, $body) = split /\n/, $text, 2;
    $first //= '';
    $first =~ s/\s+$//;
    bail_out("$o{name} - empty request line") unless length $first;
    my ($meth, $uri, $proto) = split /\s+/, $first, 3;
    $uri   //= '/';
    $proto //= 'HTTP/1.1';
    $body  //= '';
    $body =~ s/^\s+|\s+$//g;

    my @hdrs = parse_more_headers($o{more_headers});
    my %have = map { lc($_->[0]) => 1 } grep { defined $_->[1] } @hdrs;
    my $req = "$meth $uri $proto\r\n";
    $req .= "Host: localhost\r\n" unless $have{host};
    $req .= 'Connection: ' . ($o{keepalive} ? 'keep-alive' : 'close') . "\r\n"
        unless $have{connection};
    for my $h (@hdrs) {
        $req .= defined $h->[1] ? "$h->[0]: $h->[1]\r\n" : "$h->[0]\r\n";
    }
    my $chunked = grep { lc($_->[0]) eq 'transfer-encoding' && ($_->[1] // '') =~ /chunked/i } @hdrs;
    if (length $body && !$chunked && !$have{'content-length'}) {
        $req .= 'Content-Length: ' . length($body) . "\r\n";
    }
    $req .= "\r\n$body";
    return { bytes => $req, method => uc $meth };
}

# A request spec may be a string, or an arrayref of packets (strings or
# { value, delay_before, delay_after }) sent as separate writes.
sub build_request_packets {
    my (%o) = @_;
    my $spec = $o{spec};
    unless (ref $spec eq 'ARRAY') {
        my $r = build_request(%o, text => expand_env_in_text($spec, $o{name}));
        return { packets => [{ value => $r->{bytes} }], methods => [$r->{method}] };
    }
    my @pk = map { ref $_ eq 'HASH' ? {%$_} : { value => $_ } } @$spec;
    $_->{value} = expand_env_in_text($_->{value} // '', $o{name}) for @pk;
    my $r = build_request(%o, text => join '', map { $_->{value} } @pk);
    # Headers are inserted near the front, so later packets map onto the
    # tail of the built request; the first packet takes the remainder.
    my $bytes = $r->{bytes};
    for my $i (reverse 1 .. $#pk) {
        my $len = length $pk[$i]{value};
        $len = length $bytes if $len > length $bytes;
        $pk[$i]{value} = substr($bytes, length($bytes) - $len, $len, '');
    }
    $pk[0]{value} = $bytes;
    return { packets => \@pk, methods => [$r->{method}] };
}

# The list of "connections" a block makes per repeat. Each entry:
# { packets => [...], methods => [...] (one per expected response) }.
sub requests_from_block {
    my ($block, $name) = @_;
    my $more = section($block, 'more_headers');

    if (defined(my $pipe = section($block, 'pipelined_requests'))) {
        bail_out("$name - pipelined_requests must be an eval arrayref")
            unless ref $pipe eq 'ARRAY';
        my ($bytes, @methods) = ('');
        for my $i (0 .. $#$pipe) {
            my $r = build_request(
                text => expand_env_in_text($pipe->[$i], $name),
                more_headers => pick($more, $i),
                keepalive => $i < $#$pipe, name => $name);
            $bytes .= $r->{bytes};
            push @methods, $r->{method};
        }
        return [{ packets => [{ value => $bytes }], methods => \@methods }];
    }

    if (defined(my $raw = section($block, 'raw_request'))) {
        my @parts = ref $raw eq 'ARRAY' ? @$raw : ($raw);
        @parts = map { expand_env_in_text($_, $name) } @parts;
        my $delay = parse_time(section($block, 'raw_request_middle_delay')) // 0;
        my @pk = map { { value => $parts[$_], delay_before => ($_ ? $delay : 0) } } 0 .. $#parts;
        my ($meth) = (join '', @parts) =~ /^\s*([A-Za-z]+)/;
        return [{ packets => \@pk, methods => [uc($meth // 'GET')] }];
    }

    my $req = section($block, 'request');
    return [] unless defined $req;
    my @specs = ref $req eq 'ARRAY' ? @$req : ($req);
    my @conns;
    for my $i (0 .. $#specs) {
        push @conns, build_request_packets(
            spec => $specs[$i], more_headers => pick($more, $i), name => $name);
    }
    return \@conns;
}

# ---------------------------------------------------------------------------
# The HTTP client: one connection, non-blocking, per-event timeout
# ---------------------------------------------------------------------------

# Returns { raw, responses => [...], timed_out, error }.
sub http_exchange {
    my (%o) = @_;    # packets, methods, timeout, shutdown
    local $SIG{PIPE} = 'IGNORE';    # nginx may close while we still write
    my $timeout = $o{timeout} // $Timeout;
    my $sock = IO::Socket::INET->new(
        PeerAddr => $ServerAddr, PeerPort => $ServerPortForClient,
        Proto => 'tcp', Timeout => $timeout,
    ) or return { raw => '', responses => [], error => "cannot connect to $ServerAddr:$ServerPortForClient: $@" };
    binmode $sock;
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my %st = (raw => '', timed_out => 0);

    WRITE: for my $pk (@{ $o{packets} }) {
        Time::HiRes::sleep($pk->{delay_before}) if $pk->{delay_before};
        my $buf = $pk->{value} // '';
        while (length $buf) {
            unless ($sel->can_write($timeout)) { $st{timed_out} = 1; last WRITE }
            my $n = syswrite($sock, $buf);
            if (!defined $n) {
                next if $!{EAGAIN} || $!{EINTR};
                last WRITE;    # EPIPE/ECONNRESET: go read what nginx said
            }
            substr($buf, 0, $n, '');
        }
        Time::HiRes::sleep($pk->{delay_after}) if $pk->{delay_after};
    }
    shutdown($sock, 1) if $o{shutdown} && !$st{timed_out};

    my $eof = 0;
    until ($st{timed_out}) {
        unless ($sel->can_read($timeout)) { $st{timed_out} = 1; last }
        my $n = sysread($sock, my $buf, 65536);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            $eof = 1; last;    # ECONNRESET and friends end the response
        }
        if ($n == 0) { $eof = 1; last }
        $st{raw} .= $buf;
        # Keep-alive responses never see EOF: stop once every expected
        # response is complete, unless nginx announced it would close.
        my $res = parse_responses($st{raw}, $o{methods}, 0);
        if ($res && !grep { !$_->{complete} } @$res) {
            my $conn = $res->[-1]{headers}->header('Connection') // '';
            last if $conn !~ /close/i;
        }
    }
    close $sock;
    $st{responses} = parse_responses($st{raw}, $o{methods}, 1);
    return \%st;
}

# Parse one response per method from $raw. With $final == 0 returns undef
# if more data is needed; with $final == 1 returns whatever is there
# (missing responses are simply absent; partial ones have complete => 0).
sub parse_responses {
    my ($raw, $methods, $final) = @_;
    my ($pos, @out) = (0);
    for my $m (@$methods) {
        last if $final && $pos >= length $raw;
        my ($res, $next) = parse_response_at($raw, $pos, $m, $final);
        return undef unless $res;
        push @out, $res;
        $pos = $next;
    }
    if ($final && @out && $pos < length $raw) {
        $out[-1]{extra} = substr($raw, $pos);
    }
    return \@out;
}

sub parse_response_at {
    my ($raw, $pos, $method, $final) = @_;
    my $hdr_end = index($raw, "\r\n\r\n", $pos);
    if ($hdr_end < 0) {
        return unless $final;
        return ({ code => '', raw_headers => substr($raw, $pos), body => '',
                  headers => HTTP::Headers->new, complete => 0,
                  error => 'incomplete response header' }, length $raw);
    }
    my $raw_headers = substr($raw, $pos, $hdr_end - $pos);
    my $body_pos = $hdr_end + 4;
    my ($status_line, @lines) = split /\r\n/, $raw_headers;
    my ($proto, $code, $msg) = $status_line =~ m{^(HTTP/\d+(?:\.\d+)?)\s+(\d{3})(?:\s+(.*))?$};
    my $headers = HTTP::Headers->new;
    my $last;
    for my $l (@lines) {
        if ($l =~ /^[ \t]+(.*)$/ && defined $last) {    # obsolete folding
            my $v = $headers->header($last);
            $headers->header($last => "$v $1");
        } elsif ($l =~ /^([^:]+?)\s*:\s*(.*?)\s*$/) {
            $headers->push_header($1 => $2);
            $last = $1;
        }
    }
    my %res = (proto => $proto, code => $code // '', message => $msg // '',
               raw_headers => $raw_headers, headers => $headers, complete => 1);
    $res{error} = "bad status line: $status_line" unless defined $code;

    # Interim 1xx responses (100 Continue) precede the real one.
    if (defined $code && $code =~ /^1/ && $code != 101) {
        return parse_response_at($raw, $body_pos, $method, $final);
    }

    my $te = $headers->header('Transfer-Encoding') // '';
    my $cl = $headers->header('Content-Length');
    if ($method eq 'HEAD' || !defined $code || $code =~ /^1/ || $code == 204 || $code == 304) {
        $res{body} = '';
        return (\%res, $body_pos);
    }
    if ($te =~ /chunked/i) {
        my ($body, $end, $complete, $err) = decode_chunked($raw, $body_pos);
        return unless $complete || $final;
        @res{qw(body complete)} = ($body, $complete);
        $res{error} = $err if $err;
        return (\%res, $complete ? $end : length $raw);
    }
    if (defined $cl && $cl =~ /^\s*(\d+)/) {
        my $len = $1;
        if (length($raw) - $body_pos >= $len) {
            $res{body} = substr($raw, $body_pos, $len);
            return (\%res, $body_pos + $len);
        }
        return unless $final;
        @res{qw(body complete error)} = (substr($raw, $body_pos), 0, 'truncated body');
        return (\%res, length $raw);
    }
    # Delimited by connection close.
    return unless $final;
    $res{body} = substr($raw, $body_pos);
    return (\%res, length $raw);
}

# Returns (body, end_pos, complete, error).
sub decode_chunked {
    my ($raw, $pos) = @_;
    my $body = '';
    while (1) {
        my $eol = index($raw, "\r\n", $pos);
        return ($body, $pos, 0, 'truncated chunked body') if $eol < 0;
        my $line = substr($raw, $pos, $eol - $pos);
        my ($hex) = $line =~ /^\s*([0-9a-fA-F]+)/
            or return ($body, $pos, 0, "bad chunk size line: $line");
        my $size = hex $hex;
        $pos = $eol + 2;
        if ($size == 0) {
            # Trailers, terminated by an empty line.
            while (1) {
                my $e = index($raw, "\r\n", $pos);
                return ($body, $pos, 0, 'truncated chunked trailer') if $e < 0;
                my $empty = $e == $pos;
                $pos = $e + 2;
                return ($body, $pos, 1) if $empty;
            }
        }
        if (length($raw) < $pos + $size + 2) {
            $body .= substr($raw, $pos) if length($raw) > $pos;
            return ($body, length $raw, 0, 'truncated chunked body');
        }
        $body .= substr($raw, $pos, $size);
        $pos += $size;
        return ($body, $pos, 0, 'missing CRLF after chunk data')
            unless substr($raw, $pos, 2) eq "\r\n";
        $pos += 2;
    }
}

# ---------------------------------------------------------------------------
# Response checks
# ---------------------------------------------------------------------------

sub check_response {
    my ($block, $res, $idx, $name, $repeat) = @_;
    $res //= { code => '', body => '', raw_headers => '', headers => HTTP::Headers->new };
    Test::More::diag("$name - response error: $res->{error}") if $res->{error};
    Test::More::diag("$name - extra bytes after the response: " . length($res->{extra}))
        if defined $res->{extra} && length $res->{extra};

    check_status($block, $res, $idx, $name);
    check_headers($block, $res, $idx, $name);
    check_body($block, $res, $idx, $name, $repeat);
}

sub check_status {
    my ($block, $res, $idx, $name) = @_;
    my $like = pick(section($block, 'error_code_like'), $idx);
    if (defined $like) {
        my $re = ref $like eq 'Regexp' ? $like : qr/$like/;
        Test::More::like($res->{code}, $re, "$name - status code ok");
        return;
    }
    my $want = pick(section($block, 'error_code'), $idx) // 200;
    $want =~ s/^\s+|\s+$//g;
    Test::More::is($res->{code}, $want, "$name - status code ok");
}

sub header_lines {
    my ($v, $name) = @_;
    return () unless defined $v;
    return grep { /\S/ } split /\n/, expand_expected($v, $name);
}

sub check_headers {
    my ($block, $res, $idx, $name) = @_;
    my $h = $res->{headers};

    for my $line (header_lines(pick(section($block, 'response_headers'), $idx), $name)) {
        if ($line =~ /^\s*!\s*(\S+)\s*$/) {
            my $key = $1;
            my $got = $h->header($key);
            Test::More::ok(!defined $got, "$name - header $key not present")
                or Test::More::diag("  got: $got");
            next;
        }
        my ($key, $val) = $line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/
            or bail_out("$name - bad response_headers line: $line");
        if ($val eq '') {    # "Name:" -> empty or missing
            Test::More::is(scalar($h->header($key)) // '', '', "$name - header $key ok");
        } else {
            Test::More::is(scalar $h->header($key), $val, "$name - header $key ok");
        }
    }

    for my $line (header_lines(pick(section($block, 'response_headers_like'), $idx), $name)) {
        my ($key, $pat) = $line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/
            or bail_out("$name - bad response_headers_like line: $line");
        Test::More::like(scalar($h->header($key)) // '', qr/^$pat$/, "$name - header $key like ok");
    }

    for my $kind (qw(like unlike)) {
        my $pat = pick(section($block, "raw_response_headers_$kind"), $idx);
        next unless defined $pat;
        my $re = ref $pat eq 'Regexp' ? $pat : qr/$pat/s;
        no strict 'refs';
        &{"Test::More::$kind"}($res->{raw_headers}, $re, "$name - raw_response_headers_$kind ok");
    }
}

# response_body_filters: names (uc lc md5_hex length) or code refs applied
# to the actual body before comparing.
sub filter_body {
    my ($block, $body) = @_;
    my $filters = section($block, 'response_body_filters');
    return $body unless defined $filters;
    my @f = ref $filters eq 'ARRAY' ? @$filters : ref $filters ? ($filters) : split ' ', $filters;
    for my $f (@f) {
        if (ref $f eq 'CODE')      { $body = $f->($body) }
        elsif ($f eq 'uc')         { $body = uc $body }
        elsif ($f eq 'lc')         { $body = lc $body }
        elsif ($f eq 'length')     { $body = length $body }
        elsif ($f eq 'md5_hex')    { require Digest::MD5; $body = Digest::MD5::md5_hex($body) }
        else { bail_out("unknown response_body_filters entry: $f") }
    }
    return $body;
}

sub check_body {
    my ($block, $res, $idx, $name, $repeat) = @_;
    my $body = filter_body($block, $res->{body} // '');

    my $want = pick(section($block, 'response_body'), $idx);
    if (defined $want) {
        if (ref $want eq 'Regexp') {
            Test::More::like($body, $want, "$name - response_body - like");
        } else {
            my $exp = expand_expected($want, $name);
            if ($NoLongString || $exp !~ /\n./s) {
                Test::More::is($body, $exp, "$name - response_body - response is expected");
            } else {
                # Test::Base::is prints a unified diff for multi-line bodies.
                Test::Base::is($body, $exp, "$name - response_body - response is expected");
            }
        }
    }
    for my $kind (qw(like unlike)) {
        my $pat = pick(section($block, "response_body_$kind"), $idx);
        next unless defined $pat;
        my $re = ref $pat eq 'Regexp' ? $pat : do { my $p = expand_expected($pat, $name); qr/$p/s };
        no strict 'refs';
        &{"Test::More::$kind"}($body, $re, "$name - response_body_$kind - response is expected");
    }
    for my $check (@ResponseBodyChecks) {
        $check->($block, $body, $idx, $repeat, 0);
    }
}

# ---------------------------------------------------------------------------
# Log checks
# ---------------------------------------------------------------------------

# Lines of $file from byte offset $pos (restarting at 0 if it shrank).
sub log_lines_from {
    my ($file, $pos) = @_;
    open my $fh, '<:raw', $file or return [];
    $pos = 0 if $pos > (-s $fh // 0);
    seek $fh, $pos, 0;    # debug logs get big: read only the new part
    local $/;
    my $data = <$fh> // '';
    close $fh;
    return [split /\n/, $data];
}

# Patterns from a log-check section: lines of a string, or an eval arrayref
# (strings / qr//), or a single qr//.
sub log_patterns {
    my ($v, $name) = @_;
    return () unless defined $v;
    return ($v) if ref $v eq 'Regexp';
    return map { ref $_ ? $_ : expand_env_in_text($_, $name) } @$v if ref $v eq 'ARRAY';
    return map { expand_env_in_text($_, $name) } grep { length } split /\n+/, $v;
}

sub line_matches {
    my ($line, $pat) = @_;
    return ref $pat eq 'Regexp' ? $line =~ $pat : index($line, $pat) >= 0;
}

sub pattern_label { my $p = shift; return ref $p ? "$p" : $p }

sub check_log_patterns {
    my ($block, $lines, $what, $file_label, $name) = @_;
    for my $pat (log_patterns(section($block, $what), $name)) {
        my $found = grep { line_matches($_, $pat) } @$lines;
        my $label = pattern_label($pat);
        if ($what =~ /^no_/) {
            Test::More::ok(!$found, qq{$name - pattern "$label" should not exist in $file_label})
                or Test::More::diag(join "\n", map { "  matched: $_" } grep { line_matches($_, $pat) } @$lines);
        } else {
            Test::More::ok($found, qq{$name - pattern "$label" should exist in $file_label});
        }
    }
}

sub check_grep_error_log {
    my ($block, $lines, $name, $repeat) = @_;
    my $pat = section($block, 'grep_error_log');
    return unless defined $pat;
    chomp $pat unless ref $pat;    # a trailing newline could never match a line
    my $want = section($block, 'grep_error_log_out');
    bail_out("$name - --- grep_error_log needs --- grep_error_log_out") unless defined $want;
    $want = $want->[$repeat] if ref $want eq 'ARRAY';
    $want = expand_expected($want, $name);
    my $got = '';
    for my $line (@$lines) {
        my $m = ref $pat eq 'Regexp' ? ($line =~ $pat ? $& : undef)
              : (index($line, $pat) >= 0 ? $pat : undef);
        $got .= "$m\n" if defined $m;
    }
    if (ref $want eq 'Regexp') {
        Test::More::like($got, $want, "$name - grep_error_log_out");
    } else {
        Test::Base::is($got, $want // '', "$name - grep_error_log_out");
    }
}

# [alert]/[crit]/[emerg] lines are reported unless the block mentions the
# level in one of its log sections; assertion failures always fail.
sub warn_unexpected_log_lines {
    my ($block, $lines, $name) = @_;
    my $mentioned = join "\n", map { my $v = section($block, $_); !defined $v ? ''
                                     : ref $v eq 'ARRAY' ? join("\n", @$v) : "$v" }
                    qw(error_log no_error_log grep_error_log grep_error_log_out);
    for my $line (@$lines) {
        if ($line =~ /\[(alert|crit|emerg)\]/ && index($mentioned, $1) < 0) {
            Test::More::diag("WARNING: $name - $line");
        }
        if ($line =~ /Assertion .* failed/) {
            Test::More::fail("$name - assertion failure in error.log: $line");
        }
    }
}

sub has_log_checks {
    my $block = shift;
    return grep { exists $block->{$_} }
        qw(error_log no_error_log grep_error_log access_log no_access_log);
}

sub run_log_checks {
    my (%o) = @_;    # block, name, repeat, err_lines, acc_lines
    my ($block, $name) = @o{qw(block name)};
    warn_unexpected_log_lines($block, $o{err_lines}, $name) unless exists $block->{must_die};
    check_log_patterns($block, $o{err_lines}, 'error_log', 'error.log', $name);
    check_log_patterns($block, $o{err_lines}, 'no_error_log', 'error.log', $name);
    check_grep_error_log($block, $o{err_lines}, $name, $o{repeat});
    check_log_patterns($block, $o{acc_lines}, 'access_log', 'access.log', $name);
    check_log_patterns($block, $o{acc_lines}, 'no_access_log', 'access.log', $name);
}

# ---------------------------------------------------------------------------
# Skips
# ---------------------------------------------------------------------------

sub version_cmp {
    my ($x, $y) = @_;
    my @a = split /\./, $x;
    my @b = split /\./, $y;
    while (@a || @b) {
        my $c = (shift(@a) // 0) <=> (shift(@b) // 0);
        return $c if $c;
    }
    return 0;
}

# "< 1.2.3" / ">= 1.2 and < 1.4" against the binary's version.
sub version_condition_holds {
    my $cond = shift;
    my $ver = nginx_version() // return 0;
    my $join = $cond =~ /\bor\b/ ? 'or' : 'and';
    my @parts = split /\s+(?:and|or)\s+/, $cond;
    my @res = map {
        my ($op, $v) = /^\s*(<=|>=|==|!=|<|>)\s*v?(\S+)\s*$/ or return 0;
        my $c = version_cmp($ver, $v);
        $op eq '<' ? $c < 0 : $op eq '<=' ? $c <= 0 : $op eq '>' ? $c > 0
            : $op eq '>=' ? $c >= 0 : $op eq '==' ? $c == 0 : $c != 0;
    } @parts;
    return $join eq 'and' ? !grep { !$_ } @res : scalar grep { $_ } @res;
}

# Returns (count, reason) when the block should be skipped.
sub skip_info {
    my ($block, $name) = @_;
    for my $sec (qw(skip_nginx skip_nginx2)) {
        my $v = section($block, $sec) // next;
        my ($n, $cond) = $v =~ /^\s*(\d+)\s*:\s*(.*?)\s*$/s
            or bail_out("$name - bad --- $sec: $v");
        return ($n, "nginx version $cond") if version_condition_holds($cond);
    }
    if (defined(my $v = section($block, 'skip_eval'))) {
        my ($n, $code) = $v =~ /^\s*(\d+)\s*:\s*(.*?)\s*$/s
            or bail_out("$name - bad --- skip_eval: $v");
        no strict;
        my $r = eval "package main; $code";
        bail_out("$name - skip_eval failed: $@") if $@;
        return ($n, "skip_eval: $code") if $r;
    }
    return;
}

# ---------------------------------------------------------------------------
# Running blocks
# ---------------------------------------------------------------------------

sub run_tests {
    Test::More::plan('no_plan') unless Test::Builder->new->has_plan;
    for my $block (Test::Base::blocks()) {
        $_->($block) for @BlockPreprocessors;
        run_test($block);
    }
    return;
}

# Sections we implement, plus OpenResty ones we accept and ignore. Anything
# else is most likely a typo (e.g. "respone_body"), which would otherwise
# silently check nothing.
my %KnownSections = map { $_ => 1 } qw(
    ONLY SKIP LAST
    main_config http_config post_main_config config user_files log_level
    post_setup_server_root init must_die
    request raw_request raw_request_middle_delay pipelined_requests more_headers
    timeout abort shutdown wait ignore_response curl
    error_code error_code_like response_headers response_headers_like
    raw_response_headers_like raw_response_headers_unlike
    response_body response_body_like response_body_unlike response_body_filters
    error_log no_error_log grep_error_log grep_error_log_out
    access_log no_access_log
    skip_nginx skip_nginx2 skip_eval
    no_check_leak no_http2 http2 no_http3 skip_openssl server_name
    stream_config stream_server_config stream_request stream_response
    stream_response_like
);

sub warn_unknown_sections {
    my ($block, $name) = @_;
    my $order = $block->{_section_order} && $block->{_section_order}[0] || [];
    for my $sec (@$order) {
        next if $KnownSections{$sec} || $sec =~ /^stap/;
        Test::More::diag("WARNING: $name - unknown section '--- $sec' is ignored");
    }
}

sub needs_restart {
    my $block = shift;
    return grep { exists $block->{$_} }
        qw(config http_config main_config post_main_config user_files must_die log_level
           stream_config stream_server_config);
}

# Stream mode: the block configures a stream{} server (raw TCP).
sub is_stream_block {
    my $block = shift;
    return grep { exists $block->{$_} } qw(stream_config stream_server_config);
}

sub run_test {
    my $block = shift;
    %RandPorts = ();
    my $base_name = "$0 - " . $block->name;
    warn_unknown_sections($block, $base_name);

    if (my ($n, $why) = skip_info($block, $base_name)) {
        SKIP: { Test::More::skip("$base_name - $why", $n) }
        return;
    }

    my $timeout = parse_time(section($block, 'timeout')) // $Timeout;
    my $restarted = 0;

    if (exists $block->{must_die}) {
        run_must_die($block, $base_name, $_) for 0 .. $RepeatEach - 1;
        return;
    }

    if (needs_restart($block)) {
        my $st = start_nginx($block, $base_name);
        unless ($st->{ok}) {
            Test::More::fail("$base_name - nginx failed to start");
            Test::More::diag($st->{stderr});
            return;
        }
        $restarted = 1;
    } elsif (!$NginxRunning) {
        Test::More::fail("$base_name - no --- config section and no nginx running");
        return;
    }

    my $block_err_pos = $restarted ? 0 : (-s $ErrLogFile // 0);
    my $block_acc_pos = $restarted ? 0 : (-s $AccLogFile // 0);

    for my $repeat (0 .. $RepeatEach - 1) {
        my $name = $RepeatEach > 1 ? "$base_name (repeat $repeat)" : $base_name;
        # Each repeat sees the log lines written since it started (or since
        # the block started, for check_accum_error_log / the first repeat).
        my $fresh = $repeat == 0 || $CheckAccumErrLog;
        my $err_pos = $fresh ? $block_err_pos : (-s $ErrLogFile // 0);
        my $acc_pos = $fresh ? $block_acc_pos : (-s $AccLogFile // 0);

        if (defined(my $init = section($block, 'init'))) {
            run_perl_snippet($init, "$name - init");
        }
        run_requests($block, $name, $repeat, $timeout);
        run_stream_requests($block, $name, $timeout);

        if (has_log_checks($block)) {
            Time::HiRes::sleep(List::Util::max(0.1, 3 * $NginxSleep));
        }
        if (defined(my $wait = parse_time(section($block, 'wait')))) {
            Time::HiRes::sleep($wait);
        }
        run_log_checks(block => $block, name => $name, repeat => $repeat,
                       err_lines => log_lines_from($ErrLogFile, $err_pos),
                       acc_lines => log_lines_from($AccLogFile, $acc_pos));
    }
}

sub run_requests {
    my ($block, $name, $repeat, $timeout) = @_;
    my $conns = requests_from_block($block, $name);
    my $multi = @$conns > 1 || (@$conns && @{ $conns->[0]{methods} } > 1);
    maybe_print_curl($block, $name) if exists $block->{curl};

    my $idx = 0;
    for my $conn (@$conns) {
        my $st = http_exchange(%$conn, timeout => $timeout,
                               shutdown => exists $block->{shutdown});
        if ($st->{error}) {
            Test::More::diag("$name - $st->{error}");
        }
        if ($st->{timed_out} && !exists $block->{abort}) {
            Test::More::fail("$name - ERROR: client socket timed out");
        }
        for my $i (0 .. $#{ $conn->{methods} }) {
            my $rname = $multi ? "$name (req $idx)" : $name;
            check_response($block, $st->{responses}[$i], $idx, $rname, $repeat)
                unless exists $block->{ignore_response};
            $idx++;
        }
    }
}

# --- stream_request: bytes sent on one raw TCP connection to the stream
# server (an eval arrayref: one connection each, in order); the client then
# half-closes and reads until nginx closes. --- stream_response (exact) and
# --- stream_response_like (regex) check what came back, per connection.
sub run_stream_requests {
    my ($block, $name, $timeout) = @_;
    my $spec = section($block, 'stream_request');
    my $want = section($block, 'stream_response');
    my $like = section($block, 'stream_response_like');
    return unless defined $spec || defined $want || defined $like;
    my @sends = ref $spec eq 'ARRAY' ? @$spec : ($spec // '');
    for my $i (0 .. $#sends) {
        my $cname = @sends > 1 ? "$name (stream conn $i)" : $name;
        my $st = stream_exchange(data => expand_env_in_text($sends[$i], $name), timeout => $timeout,
                                 shutdown => exists $block->{shutdown});
        Test::More::diag("$cname - $st->{error}") if $st->{error};
        if ($st->{timed_out} && !exists $block->{abort}) {
            Test::More::fail("$cname - ERROR: stream client socket timed out");
        }
        my $exp = pick($want, $i);
        if (defined $exp) {
            Test::More::is($st->{raw}, expand_expected($exp, $name), "$cname - stream_response - response is expected");
        }
        my $pat = pick($like, $i);
        if (defined $pat) {
            my $re = ref $pat eq 'Regexp' ? $pat : do { my $p = expand_expected($pat, $name); qr/$p/s };
            Test::More::like($st->{raw}, $re, "$cname - stream_response_like - response is expected");
        }
    }
}

# One raw TCP exchange with the stream server: send, half-close only with
# `shutdown` (a proxy ends the session when its client half-closes), read
# until nginx closes. `local_addr` picks the client address (127.0.0.2...).
sub stream_exchange {
    my (%o) = @_;    # data, timeout, port, shutdown, local_addr
    local $SIG{PIPE} = 'IGNORE';
    my $timeout = $o{timeout} // $Timeout;
    my $port = $o{port} // $StreamPort;
    my $sock = IO::Socket::INET->new(
        PeerAddr => $ServerAddr, PeerPort => $port, Proto => 'tcp', Timeout => $timeout,
        ($o{local_addr} ? (LocalAddr => $o{local_addr}) : ()),
    ) or return { raw => '', error => "cannot connect to $ServerAddr:$port: $@" };
    binmode $sock;
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my %st = (raw => '', timed_out => 0);
    my $buf = $o{data} // '';
    while (length $buf) {
        unless ($sel->can_write($timeout)) { $st{timed_out} = 1; last }
        my $n = syswrite($sock, $buf);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            last;    # nginx closed: read what it said
        }
        substr($buf, 0, $n, '');
    }
    shutdown($sock, 1) if $o{shutdown};
    until ($st{timed_out}) {
        unless ($sel->can_read($timeout)) { $st{timed_out} = 1; last }
        my $n = sysread($sock, my $chunk, 65536);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            last;    # ECONNRESET: the connection was aborted
        }
        last if $n == 0;
        $st{raw} .= $chunk;
    }
    close $sock;
    return \%st;
}

sub run_must_die {
    my ($block, $base_name, $repeat) = @_;
    my $name = $RepeatEach > 1 ? "$base_name (repeat $repeat)" : $base_name;
    my $st = start_nginx($block, $name);
    my $want = section($block, 'must_die');
    if ($st->{ok}) {
        Test::More::fail("$name - nginx must die but it started");
        stop_nginx();
    } elsif (defined $want && $want =~ /^\s*(\d+)\s*$/) {
        Test::More::is($st->{status} >> 8, $1, "$name - nginx died with the expected exit code");
    } else {
        Test::More::pass("$name - nginx died");
    }
    # The startup error (e.g. "unknown directive") is in stderr and, thanks
    # to -e, in error.log; search both.
    my @lines = (split(/\n/, $st->{stderr}), @{ log_lines_from($ErrLogFile, 0) });
    run_log_checks(block => $block, name => $name, repeat => $repeat,
                   err_lines => \@lines, acc_lines => log_lines_from($AccLogFile, 0));
}

# --- curl: print an equivalent curl command for each plain request.
sub maybe_print_curl {
    my ($block, $name) = @_;
    my $req = section($block, 'request') // return;
    for my $r (ref $req eq 'ARRAY' ? @$req : ($req)) {
        next if ref $r;
        my ($meth, $uri) = $r =~ /^\s*(\S+)\s+(\S+)/ or next;
        Test::More::diag("$name - curl -i -X $meth 'http://$ServerAddr:$ServerPortForClient$uri'");
    }
}

END {
    # Only the process that loaded the harness stops nginx (test code may
    # fork), and only if we ever started it.
    if ($$ == $HarnessPid && $EverStarted && !$NoClean) {
        my $rc = $?;
        stop_nginx();
        File::Path::remove_tree($ServRoot) if $Randomize;
        $? = $rc;
    }
}

1;

__END__

=head1 NAME

Test::Nginx::Socket - a compatible subset of OpenResty's Test::Nginx::Socket

=head1 SYNOPSIS

    use lib 't/lib';
    use Test::Nginx::Socket 'no_plan';   # or tests => N, or plain + plan()
    repeat_each(2);
    run_tests();
    __DATA__
    === TEST 1: hello
    --- config
        location = /t { return 200 "hi\n"; }
    --- request
    GET /t
    --- response_body
    hi
    --- no_error_log
    [error]

=head1 EXPORTED FUNCTIONS

run_tests run_test repeat_each workers master_on master_off
master_process_enabled log_level no_shuffle (no-op: never shuffled)
no_long_string no_diff no_root_location worker_connections env_to_nginx
add_block_preprocessor add_response_body_check config_preamble
check_accum_error_log server_port server_port_for_client server_addr
server_name html_dir server_root get_servroot nginx_pid worker_pids
bail_out; plus Test::Base's exports (plan, blocks, is, ok, like, diag, ...).

nginx_pid() returns the pid in logs/nginx.pid; worker_pids() returns its
children (or the single process when master_process is off).

=head1 SECTIONS

main_config http_config post_main_config config user_files log_level init
post_setup_server_root must_die request (string, eval arrayref of requests,
or packets) raw_request raw_request_middle_delay pipelined_requests
more_headers timeout abort shutdown wait ignore_response curl error_code
error_code_like response_headers response_headers_like
raw_response_headers_like raw_response_headers_unlike response_body
response_body_like response_body_unlike response_body_filters error_log
no_error_log grep_error_log grep_error_log_out access_log no_access_log
skip_eval skip_nginx skip_nginx2 ONLY SKIP LAST. Unknown sections produce
a warning (they are probably typos).

Stream mode (raw TCP): stream_config (inside stream{}, before the server)
and stream_server_config (inside a stream server listening on
127.0.0.1:$TEST_NGINX_STREAM_PORT) add a stream{} block and restart nginx.
stream_request is sent on one connection (an eval arrayref: one connection
per element, in order), the client reads until nginx closes (with --- shutdown
it half-closes after sending);
stream_response (exact) and stream_response_like (regex), one value or an
arrayref per connection, check what came back. A timeout fails unless the
block has --- abort. stream_exchange(data =>, port =>, local_addr =>,
shutdown =>), stream_port() and rand_port(n) (the port of
$TEST_NGINX_RAND_PORT_n) are exported for --- init code.

Log checks see the lines written since the repeat started; for the first
repeat after a restart that includes nginx's startup lines, and with
check_accum_error_log every repeat sees everything since the block started.

=head1 ENVIRONMENT

TEST_NGINX_BINARY (default <repo>/build/sbin/nginx, else nginx on PATH),
TEST_NGINX_LOAD_MODULES (default <repo>/build/modules/ngx_http_mruby_module.so
if present; empty = none), TEST_NGINX_PORT / TEST_NGINX_SERVER_PORT (1984),
TEST_NGINX_CLIENT_PORT, TEST_NGINX_STREAM_PORT (server port + 1),
TEST_NGINX_SERVROOT (<repo>/t/servroot),
TEST_NGINX_TIMEOUT (3), TEST_NGINX_SLEEP, TEST_NGINX_LOG_LEVEL (debug),
TEST_NGINX_MASTER_PROCESS (off), TEST_NGINX_NO_CLEAN, TEST_NGINX_RANDOMIZE
(random port and servroot, for prove -jN).

=head1 DIFFERENCES FROM OPENRESTY

Blocks are never shuffled. nginx listens on 127.0.0.1 only. nginx is
restarted before every block that has config, http_config, main_config,
post_main_config, user_files, log_level or must_die. Readiness is detected
by polling the pid file and /proc/net/tcp, not by sleeping. must_die
searches the starting process's stderr as well as error.log. Not supported:
HUP reload mode, http2/http3, valgrind, check-leak and benchmark modes,
stap and mock tcp/udp peers, shutdown_error_log, error_log_file,
server_name / server_addr_for_client sections.

=cut
