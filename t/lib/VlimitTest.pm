package VlimitTest;

# Helpers for the vlimit tests that Test::Nginx::Socket cannot express:
# many requests in flight at once, kill -9 of a worker, reload (HUP) with
# requests in flight. Starts its own nginx (master on, 2 workers) with the
# same binary, module and port settings as the harness:
#
#   TEST_NGINX_BINARY        (default <repo>/build/sbin/nginx)
#   TEST_NGINX_LOAD_MODULES  (default <repo>/build/modules/ngx_http_mruby_module.so)
#   TEST_NGINX_PORT          (default 1984; the backend uses port + 2)
#   TEST_NGINX_SERVROOT      (default <repo>/t/servroot)
#   TEST_NGINX_RANDOMIZE     (a free port and t/servroot_<port>)

use strict;
use warnings;

use Cwd ();
use Exporter 'import';
use File::Basename ();
use File::Path ();
use File::Spec;
use IO::Select;
use IO::Socket::IP;
use JSON::PP ();
use POSIX ();
use Test::More ();
use Time::HiRes qw(sleep time);

our @EXPORT = qw(
    start_nginx stop_nginx reload_nginx port backend_port servroot
    open_request read_response http_get stats zone_keys key_count wait_until
    worker_pids holder_pids error_log_since error_log_size silent_backend
    write_html nginx_available
);

my $Repo = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../..');
my $Binary = $ENV{TEST_NGINX_BINARY} || "$Repo/build/sbin/nginx";
my @Modules = defined $ENV{TEST_NGINX_LOAD_MODULES}
    ? split(' ', $ENV{TEST_NGINX_LOAD_MODULES})
    : ("$Repo/build/modules/ngx_http_mruby_module.so");
# TEST_NGINX_RANDOMIZE (as the harness): a free port whose backend port
# (+2) is free too, and a servroot of its own, so runs can overlap.
sub free_port_pair {
    for (1 .. 50) {
        my $s = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1) or next;
        my $port = $s->sockport;
        next if $port > 65000;
        my $b = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => $port + 2, Listen => 1) or next;
        return $port;
    }
    die "cannot find a free port\n";
}
my $Port = $ENV{TEST_NGINX_PORT} || ($ENV{TEST_NGINX_RANDOMIZE} ? free_port_pair() : 1984);
my $ServRoot = $ENV{TEST_NGINX_SERVROOT}
    || ($ENV{TEST_NGINX_RANDOMIZE} ? "$Repo/t/servroot_$Port" : "$Repo/t/servroot");

sub port         { $Port }
sub backend_port { $Port + 2 }
sub servroot     { $ServRoot }

sub nginx_available { -x $Binary && !grep { !-f $_ } @Modules }

# Writes files under html/: write_html(name => content, ...).
sub write_html {
    my %files = @_;
    for my $name (keys %files) {
        my $path = "$ServRoot/html/$name";
        File::Path::make_path(File::Basename::dirname($path));
        open my $fh, '>', $path or die "$path: $!";
        print $fh $files{$name};
        close $fh;
    }
}

sub pid_of_master {
    open my $fh, '<', "$ServRoot/logs/nginx.pid" or return;
    my $pid = <$fh>;
    chomp $pid if defined $pid;
    return $pid;
}

# Starts nginx with `$http` pasted into http{} and `$main` at the top level;
# `user` (default root when run as root), `workers` (2), `setup` (a sub run
# after the servroot is laid out, before nginx starts).
sub start_nginx {
    my (%args) = @_;
    stop_nginx();
    File::Path::remove_tree($ServRoot);
    File::Path::make_path("$ServRoot/logs", "$ServRoot/conf", "$ServRoot/html");
    my $modules = join '', map { "load_module " . File::Spec->rel2abs($_) . ";\n" } @Modules;
    my $user = $args{user} ? "user $args{user};\n" : $> == 0 ? "user root;\n" : '';
    my $workers = $args{workers} // 2;
    my $main = $args{main} // '';
    my $http = $args{http} // '';
    open my $fh, '>', "$ServRoot/conf/nginx.conf" or die $!;
    print $fh <<"EOF";
$modules
$user
daemon on;
master_process on;
worker_processes $workers;
pid logs/nginx.pid;
error_log logs/error.log info;
$main
events { worker_connections 1024; }
http {
    access_log logs/access.log;
    client_body_temp_path  tmp/client_body;
    proxy_temp_path        tmp/proxy;
    fastcgi_temp_path      tmp/fastcgi;
    uwsgi_temp_path        tmp/uwsgi;
    scgi_temp_path         tmp/scgi;
    default_type application/octet-stream;
$http
}
EOF
    close $fh;
    File::Path::make_path("$ServRoot/tmp");
    $args{setup}->() if $args{setup};
    my $out = `$Binary -p $ServRoot/ -c conf/nginx.conf 2>&1`;
    die "nginx failed to start: $out" if $?;
    wait_until(sub { my @w = worker_pids(); @w >= $workers && can_connect() }, 5)
        or die "nginx did not come up";
}

sub can_connect {
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $Port, Timeout => 1);
    return $s ? 1 : 0;
}

sub stop_nginx {
    my $pid = pid_of_master() or return;
    kill 'TERM', $pid or return;
    wait_until(sub { !kill 0, $pid }, 5);
    unlink "$ServRoot/logs/nginx.pid";
}

# Sends HUP and waits until a new set of workers is up.
sub reload_nginx {
    my %old = map { $_ => 1 } worker_pids();
    kill 'HUP', pid_of_master();
    wait_until(sub { (grep { !$old{$_} } worker_pids()) >= 2 }, 5) or die "reload did not happen";
}

sub worker_pids {
    my $master = pid_of_master() or return;
    my @pids = `pgrep -P $master`;
    chomp @pids;
    return grep { /^\d+$/ } @pids;
}

# pids of the nginx processes holding a client connection to our port.
sub holder_pids {
    my @lines = `ss -Htnp state established '( sport = :$Port )' 2>/dev/null`;
    my %pids;
    for (@lines) { $pids{$1}++ while /pid=(\d+)/g }
    return \%pids;
}

# Opens a connection and sends a request; returns the socket (the response
# is read later with read_response).
sub open_request {
    my ($path, %opt) = @_;
    my $host = $opt{addr} // '127.0.0.1';
    my $s = IO::Socket::IP->new(PeerHost => $host, PeerPort => $opt{port} // $Port, Timeout => 3)
        or die "connect $host: $!";
    my $proto = $opt{proto} // 'HTTP/1.1';
    my $req = ($opt{method} // 'GET') . " $path $proto\r\n";
    $req .= "Host: " . ($opt{host} // 'localhost') . "\r\n" unless $opt{no_host};
    for my $h (@{ $opt{headers} // [] }) { $req .= "$h\r\n" }
    $req .= "Connection: close\r\n\r\n";
    $req .= $opt{body} if defined $opt{body};
    $s->syswrite($req);
    return $s;
}

# Reads the whole response; returns (status, body). Status 0 when the
# connection was closed without a status line.
sub read_response {
    my ($s, $timeout) = @_;
    $timeout //= 10;
    my $data = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + $timeout;
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = $s->sysread(my $buf, 65536);
        last if !$n;
        $data .= $buf;
    }
    close $s;
    my ($status) = $data =~ m{^HTTP/\d\.\d (\d{3})};
    my ($body) = $data =~ /\r\n\r\n(.*)\z/s;
    return ($status // 0, $body // '');
}

sub http_get {
    my ($path, %opt) = @_;
    return read_response(open_request($path, %opt));
}

# The decoded JSON of /stats (a location with vlimit_stats).
sub stats {
    my ($status, $body) = http_get('/stats');
    die "stats: status $status" unless $status == 200;
    return JSON::PP::decode_json($body);
}

# Number of live keys of a zone.
sub zone_keys {
    my ($zone) = @_;
    return stats()->{$zone}{keys};
}

# Count of the key shown as `$key` in zone `$zone` (0 when absent).
sub key_count {
    my ($zone, $key) = @_;
    for my $e (@{ stats()->{$zone}{entries} }) {
        return $e->{count} if $e->{key} eq $key;
    }
    return 0;
}

sub wait_until {
    my ($cond, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->() ? 1 : 0;
}

sub error_log_size { -s "$ServRoot/logs/error.log" // 0 }

# error.log from byte offset `$from`.
sub error_log_since {
    my ($from) = @_;
    open my $fh, '<', "$ServRoot/logs/error.log" or return '';
    seek $fh, $from // 0, 0;
    local $/;
    return <$fh> // '';
}

# A listening socket that never accepts: nginx connects and waits forever
# for a response (the kernel completes the handshakes).
sub silent_backend {
    my $listener = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => backend_port(), Listen => 128, ReuseAddr => 1)
        or die "backend: $!";
    return $listener;
}

# A randomized run's servroot (t/servroot_<port>) is its own: remove it.
my $LoadedBy = $$;    # not a forked child's exit
END {
    if ($$ == $LoadedBy && !$ENV{TEST_NGINX_NO_CLEAN}) {
        stop_nginx();
        File::Path::remove_tree($ServRoot) if $ENV{TEST_NGINX_RANDOMIZE} && !$ENV{TEST_NGINX_SERVROOT};
    }
}

1;
