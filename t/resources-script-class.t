# A request's resource class chosen from Ruby (issue 10): set by
# `Nginx::Request#resource_class=` in mruby_rewrite_handler or
# mruby_access_handler, it is the class whose group holds the tenant
# runner while the request runs (the runner is asked for after every Ruby
# handler before content, and after the whole ACCESS phase: a request
# `deny` refuses starts no runner), and $resource_class, r.resource_class and the
# resource_checker line all name that class. The class is decided once per
# request: a `resource_class_for $variable` naming no class is logged once
# per request, however often the class is read. Needs root and a writable
# hierarchy (skipped otherwise).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use IO::Select;
use VlimitTest;
use TenantTest;
use ResourceTest qw(class_pids cpu_burn_cgi);

plan skip_all => 'nginx or the module is not built' unless nginx_available();
my $skip = tenants_skip_reason();
plan skip_all => $skip if $skip;

my $supervisor_bin = "$FindBin::Bin/../build/sbin/ngx-mruby-supervisor";
my $root_name = 'ngx-res-script-' . port();
my ($cgroup_ok, @roots) = cgroup_check($supervisor_bin, $root_name);
plan skip_all => "resource_cgroup_root: $roots[0]" unless $cgroup_ok;

my $base = tenant_base();
system('rm', '-rf', $base) == 0 or die "rm $base";
my %users = tenant_users();

make_site('s1', 'ngxt2');
# sleeps for the seconds in the query, then answers with its pid
my $sleep_cgi = <<'PL';
#!/usr/bin/perl
$| = 1;
select(undef, undef, undef, $ENV{QUERY_STRING} + 0);
print "Content-Type: text/plain\r\n\r\nslept $$\n";
PL
for my $dir (qw(acc rew var denied anyok)) {
    write_site_file('s1', "$dir/sleep.cgi", $sleep_cgi, owner => 'ngxt2', mode => 0700);
    chown $users{ngxt2}[0], $users{ngxt2}[1], site_dir('s1') . "/$dir";
    chmod 0711, site_dir('s1') . "/$dir";
}

my $loc = <<'EOF';
            tenant_runner on;
            tenant_cgi on;
            fastcgi_pass unix:$tenant_socket;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_param QUERY_STRING $query_string;
            add_header X-Runner-Pid $tenant_runner_pid always;
            add_header X-Class $resource_class always;
EOF
start_nginx(user => 'nobody nogroup', workers => 1, http => <<"EOF");
    tenant_socket_dir $base/run;
    resource_cgroup_root $root_name;
    resource_class heavy cpu=50;
    resource_checker memory=1m log=logs/checker.log;
    log_format cls '\$request_uri \$status class=\$resource_class';
    server {
        access_log logs/cls.log cls;
        listen 127.0.0.1:${\ port()};
        server_name localhost;
        root $base/sites/\$host/htdocs;
        location /acc/ {
            # read in the rewrite phase, before the script chooses
            set \$early \$resource_class;
            add_header X-Early "[\$early]" always;
            mruby_access_handler_code 'Nginx::Request.new.resource_class = "heavy"';
$loc        }
        location /rew/ {
            mruby_rewrite_handler_code 'Nginx::Request.new.resource_class = "heavy"';
$loc        }
        # the runner is asked for after the whole ACCESS phase
        location /denied/ {
            deny all;
$loc        }
        location /anyok/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
$loc        }
        location /var/ {
            resource_class_for \$http_x_class;
            mruby_access_handler_code 'r = Nginx::Request.new; r.headers_out["X-Seen"] = "#{r.resource_class.inspect} #{r.resource_class.inspect}"';
$loc        }
    }
EOF

sub read_file { my ($path) = @_; open my $fh, '<', $path or return undef; local $/; my $t = <$fh> // ''; $t }

# The pids in class heavy's group, in every hierarchy (sorted, unique).
sub heavy_pids { class_pids('heavy', @roots) }

# True when pid's /proc/<pid>/cgroup names `$group` in every hierarchy.
sub in_group {
    my ($pid, $group) = @_;
    my @lines = grep { m{/\Q$root_name\E/[^/]+/\Q$group\E$} } split /\n/, read_file("/proc/$pid/cgroup") // '';
    return @lines == @roots;
}

# The whole response of an open request: (status, headers, body).
sub read_all {
    my ($s) = @_;
    my $data = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + 10;
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = $s->sysread(my $buf, 65536);
        last if !$n;
        $data .= $buf;
    }
    close $s;
    my ($head, $body) = split /\r\n\r\n/, $data, 2;
    my ($status) = ($head // '') =~ m{^HTTP/\d\.\d (\d{3})};
    return ($status // 0, $head // '', $body // '');
}

# The resource_checker line of `uri`, or ''.
sub checker_line {
    my ($uri) = @_;
    my ($line) = grep { /"uri":"\Q$uri\E"/ } split /\n/, read_file(servroot() . '/logs/checker.log') // '';
    return $line // '';
}

subtest 'the runner is asked for after the ACCESS phase' => sub {
    my $uid = $users{ngxt2}[0];
    is(scalar(() = runner_pids($uid)), 0, 'no runner of the owner yet');
    my ($status) = http_get_host('s1', '/denied/sleep.cgi?0');
    is($status, 403, 'deny all refuses the request');
    sleep 0.5;
    my @after = runner_pids($uid);
    is(scalar @after, 0, 'and no runner was started for it') or diag "runners: @after";
    my ($s2, $b2) = http_get_host('s1', '/anyok/sleep.cgi?0');
    like("$s2 $b2", qr/^200 slept \d+$/, 'satisfy any with an allow that matches: served by a runner');
};

for my $case (['acc', 'mruby_access_handler'], ['rew', 'mruby_rewrite_handler']) {
    my ($dir, $handler) = @$case;
    subtest "resource_class= in $handler: the runner runs in the class" => sub {
        is(scalar(heavy_pids()), 0, 'class heavy holds no task before');
        my $uri = "/$dir/sleep.cgi?1.2";
        my $sock = open_request($uri, host => 's1', proto => 'HTTP/1.0');
        my $runner_in_heavy = sub { grep { ((proc_status($_) // {})->{Name} // '') =~ /^ngx-mruby-super/ } heavy_pids() };
        ok(wait_until(sub { scalar $runner_in_heavy->() }, 3), 'class heavy holds the runner while the request runs')
            or diag 'heavy: ' . join(' ', heavy_pids());
        my ($runner) = $runner_in_heavy->();
        ok($runner && in_group($runner, 'heavy'), "/proc/<runner>/cgroup names heavy in every hierarchy")
            or diag $runner ? read_file("/proc/$runner/cgroup") : 'no runner';
        # the CGI program, started a moment after the move, inherits the class
        ok(wait_until(sub { heavy_pids() >= 2 }, 3), 'with its CGI program') or diag join ' ', heavy_pids();
        my @during = heavy_pids();
        my ($status, $head, $body) = read_all($sock);
        is($status, 200, 'the request is served');
        my ($pid) = $head =~ /^X-Runner-Pid:\s*(\d+)/mi;
        is($pid, $runner, 'by the runner that was in heavy');
        my ($child) = $body =~ /^slept (\d+)/;
        ok($child && grep({ $_ == $child } @during), "its CGI program ($child) was in heavy (@during)");
        like($head, qr/^X-Class: heavy\r?$/mi, '$resource_class names heavy');
        like($head, qr/^X-Early: \[\]\r?$/mi, 'read before the script chose: no class then') if $dir eq 'acc';
        ok(wait_until(sub { checker_line($uri) }, 5), 'resource_checker logged the request');
        like(checker_line($uri), qr/"class":"heavy"/, 'its line names class heavy');
        ok(wait_until(sub { (read_file(servroot() . '/logs/cls.log') // '') =~ /^\Q$uri\E 200 class=heavy$/m }, 5),
            'the access log\'s $resource_class names heavy');
        ok(wait_until(sub { !heavy_pids() }, 3), 'class heavy holds no task after it') or diag join ' ', heavy_pids();
    };
}

subtest 'resource_class_for $variable naming no class: one [warn] per request' => sub {
    my $from = error_log_size();
    my @heads;
    for my $n (1, 2) {
        my ($status, $head, $body) = read_all(open_request("/var/sleep.cgi?0.$n", host => 's1', proto => 'HTTP/1.0',
            headers => ['X-Class: nosuch']));
        is($status, 200, "request $n is served, without a class");
        like($head, qr/^X-Seen: nil nil\r?$/mi, 'r.resource_class (read twice) is nil');
        unlike($head, qr/^X-Class:/mi, '$resource_class is empty (add_header sends no empty header)');
        ok(wait_until(sub { checker_line("/var/sleep.cgi?0.$n") }, 5), 'resource_checker logged it');
        unlike(checker_line("/var/sleep.cgi?0.$n"), qr/"class":"/, 'its line names no class');
    }
    ok(wait_until(sub { (read_file(servroot() . '/logs/cls.log') // '') =~ m{^/var/sleep\.cgi\?0\.2 }m }, 5),
        'both requests are logged');
    my @warns = grep { /resource_class_for: unknown class "nosuch"/ } split /\n/, error_log_since($from);
    is(scalar @warns, 2, 'the unknown class is logged once per request') or diag join "\n", @warns;
    like($warns[0] // '', qr/\[warn\].*request: "GET \/var\/sleep\.cgi\?0\.1 /, 'at [warn], with the request');

    my ($status, $head) = read_all(open_request('/var/sleep.cgi?0', host => 's1', proto => 'HTTP/1.0',
        headers => ['X-Class: heavy']));
    like($head, qr/^X-Seen: "heavy" "heavy"\r?$/mi, 'a variable naming a declared class: r.resource_class names it');
    like($head, qr/^X-Class: heavy\r?$/mi, 'and so does $resource_class');
};

stop_nginx();
done_testing();
