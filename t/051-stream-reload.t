# Reload (HUP) with a stream{} block: a new stream VM is built,
# mruby_stream_init runs again, connections keep working.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

master_on();
workers(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: the first generation of the stream VM
--- main_config
    env TEST_NGINX_SERVER_ROOT;
--- stream_config
    mruby_stream_init_code '
        File.open(ENV["TEST_NGINX_SERVER_ROOT"] + "/html/stream_inits.txt", "a") { |f| f.puts Process.pid }
        $generation = File.read(ENV["TEST_NGINX_SERVER_ROOT"] + "/html/stream_inits.txt").split("\n").size
    ';
--- stream_server_config
    mruby_stream $TEST_NGINX_HTML_DIR/s.rb cache;
    return "served\n";
--- user_files
>>> s.rb
Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "generation #{$generation} script v1"
--- stream_request
--- stream_response
served
--- error_log
generation 1 script v1


=== TEST 2: after HUP the new VM answers, with the new script
--- init
my $root = $ENV{TEST_NGINX_SERVER_ROOT};
open my $fh, '>', "$root/html/s.rb" or die $!;
print $fh qq{Nginx::Stream.log Nginx::Stream::LOG_NOTICE, "generation #{\$generation} script v2"\n};
close $fh;
kill 'HUP', Test::Nginx::Socket::nginx_pid();
for (1 .. 50) {
    select(undef, undef, undef, 0.1);
    my $lines = do { local @ARGV = ("$root/html/stream_inits.txt"); my @l = <>; scalar @l };
    last if $lines >= 2;
}
# let the old worker hand over to the new one
select(undef, undef, undef, 0.5);
--- stream_request
--- stream_response
served
--- error_log
generation 2 script v2
--- no_error_log
[alert]
[crit]
