# Reload (HUP): a new VM is built from the new configuration, mruby_init runs
# again, the old VM is closed with the old workers, requests keep working.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

master_on();
workers(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: HUP builds a new VM: mruby_init runs again and scripts are re-read
--- http_config
    mruby_init_code '
        File.open(ENV["TEST_NGINX_SERVER_ROOT"] + "/html/inits.txt", "a") { |f| f.puts Process.pid }
        $generation = File.read(ENV["TEST_NGINX_SERVER_ROOT"] + "/html/inits.txt").split("\n").size
    ';
--- main_config
    env TEST_NGINX_SERVER_ROOT;
--- config
    location = /gen { mruby_content_handler_code 'Nginx.rputs "generation #{$generation}"'; }
    location = /script { mruby_content_handler $TEST_NGINX_HTML_DIR/s.rb cache; }
--- user_files
>>> s.rb
Nginx.rputs "cached v1"
--- request eval
["GET /gen", "GET /script"]
--- response_body eval
["generation 1", "cached v1"]


=== TEST 2: after HUP the same server answers with the new generation and the new script
--- init
my $root = $ENV{TEST_NGINX_SERVER_ROOT};
open my $fh, '>', "$root/html/s.rb" or die $!;
print $fh qq{Nginx.rputs "cached v2"\n};
close $fh;
my $pid = Test::Nginx::Socket::nginx_pid();
kill 'HUP', $pid;
# wait for the new worker generation to answer
for (1 .. 50) {
    select(undef, undef, undef, 0.1);
    my $lines = do { local @ARGV = ("$root/html/inits.txt"); my @l = <>; scalar @l };
    last if $lines >= 2;
}
# let the old worker hand over to the new one
select(undef, undef, undef, 0.5);
--- request eval
["GET /gen", "GET /script"]
--- response_body eval
["generation 2", "cached v2"]
--- no_error_log
[alert]
[crit]
