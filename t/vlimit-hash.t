# The vlimit zone's hash is keyed with random seeds kept in the zone: keys
# a client precomputed to share one bucket under a fixed hash (as the
# module's was) spread out, so no lookup walks a long chain under the lock
# (stats: longest_chain). The seeds live in the zone: a reload that keeps
# the zone keeps finding the same entries.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use VlimitTest;

nginx_available() or BAIL_OUT('nginx or the module is not built');

my $keys_wanted = 64;
my @keys = `/usr/bin/python3 $FindBin::Bin/lib/vlimit_old_hash_collisions.py $keys_wanted 12`;
chomp @keys;
is(scalar @keys, $keys_wanted, "$keys_wanted keys that share a bucket under the old fixed-seed hash");

my $silent = silent_backend();
my $root = servroot() . '/html';
start_nginx(workers => 1, setup => sub { write_html('counted.txt' => "ok\n") }, http => <<"EOF");
    vlimit_zone vl 64k;
    upstream silent { server 127.0.0.1:@{[ backend_port() ]}; }
    server {
        listen 127.0.0.1:@{[ port() ]};
        location = /counted.txt { root $root; vlimit key=\$http_x_api_key 10 zone=vl; }
        location /slow/ { vlimit key=\$http_x_api_key 10 zone=vl; proxy_pass http://silent; proxy_read_timeout 60s; }
        location = /stats { vlimit_stats; }
    }
EOF
my $before = stats()->{vl};
cmp_ok($before->{max_keys}, '>=', $keys_wanted, "the zone holds $keys_wanted keys");
is($before->{longest_chain}, 0, 'an empty zone has no chain');

my $served = 0;
for my $key (@keys) {
    my ($status) = http_get('/counted.txt', headers => ["X-Api-Key: $key"]);
    $served++ if $status == 200;
}
is($served, $keys_wanted, 'every key was served (and counted)');
my $after = stats()->{vl};
is($after->{keys}, 0, 'all released (their idle entries stay in their chains)');
cmp_ok($after->{longest_chain}, '<=', 6,
    "the $keys_wanted precomputed keys do not pile up in one chain (longest: $after->{longest_chain})");

# The seeds are the zone's: a reload keeps them, so a count held before it
# is found again by the new worker.
my $held = open_request('/slow/1', headers => ['X-Api-Key: steady']);
ok(wait_until(sub { key_count('vl', 'steady') == 1 }), 'a request of key "steady" is held');
my %old = map { $_ => 1 } worker_pids();
open my $fh, '<', servroot() . '/logs/nginx.pid' or die $!;
chomp(my $master = <$fh>);
kill 'HUP', $master;
ok(wait_until(sub { grep { !$old{$_} } worker_pids() }), 'reloaded: a new worker');
my $second = open_request('/slow/2', headers => ['X-Api-Key: steady']);
ok(wait_until(sub { key_count('vl', 'steady') == 2 }), 'after the reload the new worker counts on the same entry');
my @steady = grep { $_->{key} eq 'steady' } @{ stats()->{vl}{entries} };
is(scalar @steady, 1, 'one entry for the key, not two');
close $held;
close $second;
ok(wait_until(sub { key_count('vl', 'steady') == 0 }), 'both counts given back');

done_testing();
