# lalimit: reject while the load average is at or above a threshold. The
# load comes from a file in /proc/loadavg format (lalimit_source file=), so
# below / equal / above are deterministic.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
add_block_preprocessor(sub {
    my $block = shift;
    # every block gets the same load file and a static file to serve
    if (!defined $block->user_files) {
        $block->set_value('user_files', ">>> loadavg\n5.00 4.00 3.00 2/345 6789\n>>> ok.txt\nok\n");
    }
});
run_tests();

__DATA__

=== TEST 1: load below the threshold passes
--- http_config
    lalimit_source file=html/loadavg;
--- config
    location /t/ { alias $TEST_NGINX_HTML_DIR/; lalimit 6; }
--- request
GET /t/ok.txt
--- response_body
ok
--- no_error_log
lalimit
[error]


=== TEST 2: load equal to the threshold is rejected, the log line gives both values
--- http_config
    lalimit_source file=html/loadavg;
--- config
    location /t/ { alias $TEST_NGINX_HTML_DIR/; lalimit 5; }
--- request
GET /t/ok.txt
--- error_code: 503
--- error_log
lalimit: load average 5.00 (1 min) is at or above the threshold 5.00, rejecting with 503


=== TEST 3: load above the threshold is rejected
--- http_config
    lalimit_source file=html/loadavg;
--- config
    location /t/ { alias $TEST_NGINX_HTML_DIR/; lalimit 4.99; }
--- request
GET /t/ok.txt
--- error_code: 503
--- error_log
lalimit: load average 5.00 (1 min) is at or above the threshold 4.99, rejecting with 503


=== TEST 4: period=5 and period=15 read the second and third fields
--- http_config
    lalimit_source file=html/loadavg;
--- config
    location /five/ { alias $TEST_NGINX_HTML_DIR/; lalimit 4.01 period=5; }
    location /fifteen/ { alias $TEST_NGINX_HTML_DIR/; lalimit 3 period=15; }
--- request eval
["GET /five/ok.txt", "GET /fifteen/ok.txt"]
--- error_code eval
[200, 503]
--- error_log
lalimit: load average 3.00 (15 min) is at or above the threshold 3.00, rejecting with 503


=== TEST 5: status= sets the response code
--- http_config
    lalimit_source file=html/loadavg;
--- config
    location /t/ { alias $TEST_NGINX_HTML_DIR/; lalimit 1 status=429; }
--- request
GET /t/ok.txt
--- error_code: 429
--- error_log
rejecting with 429


=== TEST 6: inherited from the server, switched off in a location
--- http_config
    lalimit_source file=html/loadavg;
--- config
    lalimit 2;
    location /on/ { alias $TEST_NGINX_HTML_DIR/; }
    location /off/ { alias $TEST_NGINX_HTML_DIR/; lalimit off; }
--- request eval
["GET /on/ok.txt", "GET /off/ok.txt"]
--- error_code eval
[503, 200]


=== TEST 7: an unreadable source lets requests through and logs an error
--- http_config
    lalimit_source file=html/no-such-file;
--- config
    location /t/ { alias $TEST_NGINX_HTML_DIR/; lalimit 0.5; }
--- request
GET /t/ok.txt
--- response_body
ok
--- error_log
lalimit: cannot read


=== TEST 8: a source not in /proc/loadavg format lets requests through and logs an error
--- user_files
>>> loadavg
high
>>> ok.txt
ok
--- http_config
    lalimit_source file=html/loadavg;
--- config
    location /t/ { alias $TEST_NGINX_HTML_DIR/; lalimit 0.5; }
--- request
GET /t/ok.txt
--- response_body
ok
--- error_log
is not in /proc/loadavg format


=== TEST 9: getloadavg (the default source) with a threshold no machine reaches
--- config
    location /t/ { alias $TEST_NGINX_HTML_DIR/; lalimit 100000; }
--- request
GET /t/ok.txt
--- response_body
ok
--- no_error_log
lalimit


=== TEST 10: nginx -t: bad threshold
--- config
    location /t { lalimit high; }
--- must_die
--- error_log
lalimit: invalid threshold "high", must be a number >= 0


=== TEST 11: nginx -t: bad period
--- config
    location /t { lalimit 4 period=2; }
--- must_die
--- error_log
lalimit: invalid parameter "period=2", period must be 1, 5 or 15


=== TEST 12: nginx -t: bad status
--- config
    location /t { lalimit 4 status=200; }
--- must_die
--- error_log
lalimit: invalid status "status=200", must be between 400 and 599


=== TEST 13: nginx -t: bad source
--- http_config
    lalimit_source /proc/loadavg;
--- config
--- must_die
--- error_log
lalimit_source: invalid parameter "/proc/loadavg"
