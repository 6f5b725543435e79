# vlimit: directives, nginx -t errors, counting once per main request and
# giving the count back after internal redirects and later-phase errors.
# Concurrency, kill -9, reload and zone-full cases: t/vlimit-concurrency.t.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a request under the limit passes; stats show the zone empty afterwards
--- http_config
    vlimit_zone vl 1m;
--- config
    location /s/ { alias $TEST_NGINX_HTML_DIR/; vlimit ip 1 zone=vl; vlimit file 1 zone=vl; vlimit host 1 zone=vl; }
    location = /stats { vlimit_stats; }
--- user_files
>>> ok.txt
ok
--- request eval
["GET /s/ok.txt", "GET /s/ok.txt", "GET /stats"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/^ok$/, qr/^ok$/, qr/^\{"vl":\{"size":1048576,"used":\d+,"free":\d+,"keys":0,"max_keys":\d+,"rejections":0,"zone_full":0,"reclaimed":0,"workers":\[\d+\],"longest_chain":\d+,"entries":\[\]\}\}$/]
--- no_error_log
[error]
[warn]


=== TEST 2: an internal redirect is counted once (limit 1 in both locations)
--- http_config
    vlimit_zone vl 1m;
--- config
    location /a/ { alias $TEST_NGINX_HTML_DIR/; vlimit ip 1 zone=vl; error_page 404 = /fallback/ok.txt; }
    location /fallback/ { alias $TEST_NGINX_HTML_DIR/; vlimit ip 1 zone=vl; }
    location = /stats { vlimit_stats; }
--- user_files
>>> ok.txt
fallback
--- request eval
["GET /a/missing", "GET /a/missing", "GET /stats"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/^fallback$/, qr/^fallback$/, qr/"keys":0,/]
--- no_error_log
vlimit:


=== TEST 3: a 403 from the access phase gives the count back
--- http_config
    vlimit_zone vl 1m;
--- config
    location /d/ { vlimit ip 1 zone=vl; deny all; }
    location = /stats { vlimit_stats; }
--- request eval
["GET /d/x", "GET /d/x", "GET /d/x", "GET /stats"]
--- error_code eval
[403, 403, 403, 200]
--- response_body_like eval
[qr/403/, qr/403/, qr/403/, qr/"keys":0,/]
--- no_error_log
vlimit:


=== TEST 4: a 404 from the content phase gives the count back
--- http_config
    vlimit_zone vl 1m;
--- config
    location /s/ { alias $TEST_NGINX_HTML_DIR/; vlimit file 1 zone=vl; vlimit ip 1 zone=vl; }
    location = /stats { vlimit_stats; }
--- request eval
["GET /s/nothing", "GET /s/nothing", "GET /stats"]
--- error_code eval
[404, 404, 200]
--- response_body_like eval
[qr/404/, qr/404/, qr/"keys":0,/]
--- no_error_log
vlimit:


=== TEST 5: limits are inherited by locations without their own, and replaced by locations with
--- http_config
    vlimit_zone vl 1m;
    log_format vl '$uri $vlimit_status $vlimit_count';
--- config
    access_log logs/vl.log vl;
    vlimit key=server 5 zone=vl;
    location /inherit/ { alias $TEST_NGINX_HTML_DIR/; }
    location /own/ { alias $TEST_NGINX_HTML_DIR/; vlimit key=own 1 zone=vl; }
    location /if/ { alias $TEST_NGINX_HTML_DIR/; if ($arg_x) { vlimit key=in-if 1 zone=vl; } }
--- user_files
>>> ok.txt
ok
--- request eval
["GET /inherit/ok.txt", "GET /own/ok.txt", "GET /if/ok.txt?x=1"]
--- error_code eval
[200, 200, 200]
--- no_error_log
[error]


=== TEST 6: the variables, in the access log
--- http_config
    vlimit_zone vl 1m;
    log_format vl '$uri [$vlimit_status] [$vlimit_count]';
--- config
    access_log logs/access.log vl;
    location /s/ { alias $TEST_NGINX_HTML_DIR/; vlimit key=$arg_t 4 zone=vl; }
--- user_files
>>> ok.txt
ok
--- request
GET /s/ok.txt?t=a
--- response_body
ok
--- access_log
/s/ok.txt [PASSED] [1]


=== TEST 7: stats of one zone with vlimit_stats zone=
--- http_config
    vlimit_zone one 1m;
    vlimit_zone two 64k;
--- config
    location = /stats { vlimit_stats zone=two; }
--- request
GET /stats
--- response_body_like eval
qr/^\{"two":\{"size":65536,"used":\d+,/
--- response_headers
Content-Type: application/json


=== TEST 8: nginx -t: unknown kind
--- http_config
    vlimit_zone vl 1m;
--- config
    location /t { vlimit cookie 5 zone=vl; }
--- must_die
--- error_log
vlimit: invalid parameter "cookie", the kind must be ip, file, host or key=<value>


=== TEST 9: nginx -t: bad N
--- http_config
    vlimit_zone vl 1m;
--- config
    location /t { vlimit ip 0 zone=vl; }
--- must_die
--- error_log
vlimit: invalid number "0", must be between 1 and 65535


=== TEST 10: nginx -t: unknown parameter
--- http_config
    vlimit_zone vl 1m;
--- config
    location /t { vlimit ip 5 zone=vl burst=3; }
--- must_die
--- error_log
vlimit: invalid parameter "burst=3"


=== TEST 11: nginx -t: unknown zone
--- config
    location /t { vlimit ip 5 zone=nowhere; }
--- must_die
--- error_log
vlimit: unknown zone "zone=nowhere"


=== TEST 12: nginx -t: bad status
--- http_config
    vlimit_zone vl 1m;
--- config
    location /t { vlimit ip 5 zone=vl status=302; }
--- must_die
--- error_log
vlimit: invalid status "status=302", must be between 400 and 599


=== TEST 13: nginx -t: a zone declared twice with different sizes
--- http_config
    vlimit_zone vl 1m;
    vlimit_zone vl 2m;
--- config
--- must_die
--- error_log
the size 2097152 of shared memory zone "vl" conflicts with already declared size 1048576


=== TEST 14: nginx -t: a zone declared twice
--- http_config
    vlimit_zone vl 1m;
    vlimit_zone vl 1m;
--- config
--- must_die
--- error_log
vlimit_zone: zone "vl" is already declared


=== TEST 15: nginx -t: a zone too small
--- http_config
    vlimit_zone vl 16k;
--- config
--- must_die
--- error_log
vlimit_zone: zone "vl" is too small


=== TEST 16: nginx -t: missing zone=
--- http_config
    vlimit_zone vl 1m;
--- config
    location /t { vlimit ip 5 status=429; }
--- must_die
--- error_log
vlimit: the "zone=<name>" parameter is required


=== TEST 17: nginx -t: bad vlimit_dry_run
--- config
    location /t { vlimit_dry_run maybe; }
--- must_die
--- error_log
vlimit_dry_run: invalid value "maybe"
