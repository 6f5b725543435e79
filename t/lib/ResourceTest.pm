package ResourceTest;

# Helpers for the tests of resource classes on the real cgroup hierarchy
# (issue 10): where the module's groups are, what the kernel counts in
# them, and the CGI programs that burn CPU or allocate memory, run as
# tenant users through the runners (see TenantTest.pm for the users and
# sites).

use strict;
use warnings;

use Exporter 'import';
use TenantTest qw(cgroup_check);

our @EXPORT = qw(
    resource_roots slurp generation_dirs group_dir cpu_usage_ns
    burn_cgi cpu_burn_cgi alloc_cgi share_ok class_pids
);

my @Roots;

# The directories of `resource_cgroup_root $root_name` in each hierarchy,
# as the supervisor program sees them: (1, dirs...) or (0, why not).
sub resource_roots {
    my ($supervisor, $root_name) = @_;
    my ($ok, @dirs) = cgroup_check($supervisor, $root_name);
    @Roots = @dirs if $ok;
    return ($ok, @dirs);
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return undef;
    local $/;
    my $text = <$fh> // '';
    $text =~ s/\s+\z//;
    return $text;
}

# The running generation's directory in each hierarchy.
sub generation_dirs { grep { -d } map { glob("$_/*") } @Roots }

# `$group` (a path below the generation: `heavy`, `tenants.small/1001`) in
# the hierarchy that has `$controller` (v1), or in the unified one (v2).
sub group_dir {
    my ($controller, $group) = @_;
    for my $gen (generation_dirs()) {
        return "$gen/$group" if $gen =~ m{^/sys/fs/cgroup/\Q$controller\E/};
    }
    for my $gen (generation_dirs()) {
        return "$gen/$group" if -e "$gen/cgroup.controllers";
    }
    return undef;
}

# The CPU time in ns the kernel counted in `$group` (0 when it does not
# exist yet): v1 cpuacct.usage, v2 cpu.stat usage_usec.
sub cpu_usage_ns {
    my ($group) = @_;
    my $dir = group_dir('cpuacct', $group) // return 0;
    my $v1 = slurp("$dir/cpuacct.usage");
    return $v1 if defined $v1;
    my ($usec) = (slurp("$dir/cpu.stat") // '') =~ /^usage_usec (\d+)/m;
    return ($usec // 0) * 1000;
}

# A CGI program that burns CPU for the wall time in the query (ms), then
# answers with its pid.
sub burn_cgi {
    return <<'PL';
#!/usr/bin/perl
use Time::HiRes qw(time);
my $end = time + ($ENV{QUERY_STRING} + 0) / 1000;
my $x = 0;
while (time < $end) { $x++ for 1 .. 20000 }
print "Content-Type: text/plain\r\n\r\nburnt $$\n";
PL
}

# A CGI program that burns the CPU time (user, not wall time) in the
# query, in ms, then answers `burnt` (with its pid when `$with_pid`).
sub cpu_burn_cgi {
    my ($with_pid) = @_;
    my $reply = $with_pid ? 'burnt $$' : 'burnt';
    return <<'PL' . qq{print "Content-Type: text/plain\\r\\n\\r\\n$reply\\n";\n};
#!/usr/bin/perl
my $end = (times)[0] + ($ENV{QUERY_STRING} + 0) / 1000;
my $x = 0;
while ((times)[0] < $end) { $x++ for 1 .. 50000 }
PL
}

# The pids in `$class`'s group of the generations under `@roots` (the
# resource_cgroup_root in each hierarchy), sorted, unique; their count in
# scalar context.
sub class_pids {
    my ($class, @roots) = @_;
    my %seen;
    for my $gen (grep { -d } map { glob("$_/*") } @roots) {
        $seen{$_}++ for split /\n/, slurp("$gen/$class/cgroup.procs") // '';
    }
    my @pids = sort { $a <=> $b } keys %seen;
    return wantarray ? @pids : scalar @pids;
}

# A CGI program that allocates and touches the MiB in the query, then
# answers with its pid.
sub alloc_cgi {
    return <<'PL';
#!/usr/bin/perl
my $mib = ($ENV{QUERY_STRING} + 0);
my @keep;
push @keep, 'x' x (1024 * 1024) for 1 .. $mib;
print "Content-Type: text/plain\r\n\r\nallocated $mib MiB in $$\n";
PL
}

# Whether `$share` (a fraction of one core) is in [$low, $high] percent.
sub share_ok {
    my ($share, $low, $high) = @_;
    return $share * 100 >= $low && $share * 100 <= $high;
}

1;
