# The body filter's limits (issue 8): a bound on what it collects
# (mruby_output_body_filter_buffer), file buffers brought into memory by
# nginx's copy filter (the module sits below it), and a changed body
# without the original's ETag/Last-Modified.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET ();

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a body over mruby_output_body_filter_buffer (length known) gets a 500 and one line; the script does not run
--- config
    location = /big {
        mruby_output_body_filter_buffer 1k;
        mruby_content_handler_code 'Nginx.rputs "x" * 5000';
        mruby_output_body_filter_code 'Nginx.log Nginx::LOG_ERR, "filter ran"; Nginx::Filter.new.body = "small"';
    }
    location = /small {
        mruby_output_body_filter_buffer 1k;
        mruby_content_handler_code 'Nginx.rputs "x" * 1000';
        mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = f.body.size.to_s';
    }
--- request eval
["GET /big", "GET /small"]
--- error_code eval
[500, 200]
--- response_body_like eval
["500 Internal Server Error", "^1000\$"]
--- error_log
mruby_output_body_filter: the response body (5000 bytes or more) exceeds mruby_output_body_filter_buffer (1024 bytes); sending 500 without running the filter
--- no_error_log
filter ran
[alert]


=== TEST 2: a chunked upstream body that grows over the bound mid-stream gets a 500; the worker goes on
--- config
    location = /chunked {
        mruby_output_body_filter_buffer 3k;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        mruby_output_body_filter_code 'Nginx.log Nginx::LOG_ERR, "filter ran"; Nginx::Filter.new.body = "small"';
    }
    location = /after { mruby_content_handler_code 'Nginx.rputs "after"'; }
--- init
use POSIX ();
open my $conf, '<', "$ENV{TEST_NGINX_SERVER_ROOT}/conf/nginx.conf" or die "conf: $!";
my ($up_port) = do { local $/; <$conf> } =~ m{proxy_pass http://127\.0\.0\.1:(\d+)};
my $listen = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$up_port", Listen => 5, ReuseAddr => 1)
    or die "upstream listen: $!";
my $upstream = fork() // die "fork: $!";
if ($upstream == 0) {
    my $c = $listen->accept;
    while (my $line = <$c>) { last if $line =~ /^\r?\n\z/ }
    print $c "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    for (1 .. 3) { print $c sprintf("%x\r\n%s\r\n", 2000, "y" x 2000); select(undef, undef, undef, 0.05); }
    print $c "0\r\n\r\n";
    close $c;
    POSIX::_exit(0);
}
close $listen;
my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}") or die "connect: $!";
print $sock "GET /chunked HTTP/1.0\r\nHost: localhost\r\n\r\n";
my $res = do { local $/; <$sock> };
waitpid($upstream, 0);
Test::More::like($res, qr{^HTTP/1\.1 500}, 'the oversized streamed body gets a 500');
Test::More::unlike($res, qr{small|yyyy}, 'neither the script output nor the original body went out');
--- request
GET /after
--- response_body chomp
after
--- error_log
exceeds mruby_output_body_filter_buffer (3072 bytes)
--- no_error_log
filter ran
[alert]


=== TEST 3: a static file reaches the script in memory through the copy filter (large file, small output buffers)
--- config
    location = /file.txt {
        root html;
        output_buffers 2 4k;
        mruby_output_body_filter_code 'f = Nginx::Filter.new; b = f.body; f.body = "#{b.size} #{b[0, 3]} #{b[-3, 3]}"';
    }
--- user_files eval
[["file.txt", ("a" x 100000) . "zzz"]]
--- request
GET /file.txt
--- response_body chomp
100003 aaa zzz
--- no_error_log
[error]


=== TEST 4: a changed body drops the original ETag and Last-Modified; an unchanged one keeps them
--- config
    location = /changed.txt {
        root html;
        mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = f.body.upcase';
    }
    location = /same.txt {
        root html;
        mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = f.body';
    }
--- user_files
>>> changed.txt
hello
>>> same.txt
hello
--- request eval
["GET /changed.txt", "GET /same.txt"]
--- response_headers eval
["!ETag\n!Last-Modified\n", ""]
--- response_headers_like eval
["", "ETag: \"\\w+-6\"\nLast-Modified: .+ GMT\n"]
--- response_body eval
["HELLO\n", "hello\n"]


=== TEST 5: a filtered response is sent whole to a Range request (the script saw the whole body)
--- config
    location = /r.txt {
        root html;
        mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = f.body.upcase';
    }
--- user_files
>>> r.txt
abcdefghij
--- request
GET /r.txt
--- more_headers
Range: bytes=0-2
--- error_code: 200
--- response_body
ABCDEFGHIJ


=== TEST 6: the size is checked at configuration time
--- config
    location = /t {
        mruby_output_body_filter_buffer lots;
        mruby_output_body_filter_code 'Nginx::Filter.new.body = "x"';
    }
--- must_die
--- error_log
invalid value "lots" in "mruby_output_body_filter_buffer" directive, it must be a size such as 512k or 16m
