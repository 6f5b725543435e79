# Nginx::Vlimit.count / .stats read the same counters as vlimit_stats.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: count and stats from Ruby while a request holds counts
--- http_config
    vlimit_zone rz 64k;
--- config
    location = /held {
        vlimit key=$arg_k 5 zone=rz;
        vlimit ip 5 zone=rz;
        mruby_content_handler_code '
            Nginx.echo Nginx::Vlimit.count("rz", "tenant-a")
            Nginx.echo Nginx::Vlimit.count(:rz, "127.0.0.1", :ip)
            Nginx.echo Nginx::Vlimit.count("rz", "other")
            s = Nginx::Vlimit.stats("rz")
            Nginx.echo [s["keys"], s["entries"].map { |e| "#{e["kind"]}:#{e["key"]}=#{e["count"]}/#{e["limit"]}" }.sort.join(",")].inspect
        ';
    }
    location = /errors {
        mruby_content_handler_code '
            out = []
            begin; Nginx::Vlimit.count("nope", "x"); rescue ArgumentError => e; out << e.message; end
            begin; Nginx::Vlimit.count("rz", "x", :planet); rescue ArgumentError => e; out << e.message; end
            begin; Nginx::Vlimit.stats("nope"); rescue ArgumentError => e; out << e.message; end
            Nginx.rputs out.join("|")
        ';
    }
--- request eval
["GET /held?k=tenant-a", "GET /errors"]
--- response_body eval
["1\n1\n0\n[2, \"ip:127.0.0.1=1/5,key:tenant-a=1/5\"]\n",
 "no vlimit zone \"nope\" (or an invalid key \"x\")|unknown vlimit kind \"planet\" (ip, file, host or key)|no vlimit zone \"nope\""]
--- no_error_log
is being formatted while this worker holds its lock


=== TEST 2: a file under root (no alias), a missing file, two zones and five limits are counted while the request runs
--- http_config
    vlimit_zone rz 64k;
    vlimit_zone rz2 64k;
--- config
    location /r/ {
        root $TEST_NGINX_HTML_DIR;
        vlimit ip 5 zone=rz2;
        vlimit key=$arg_k 5 zone=rz;
        vlimit file 5 zone=rz;
        vlimit host 5 zone=rz;
        vlimit host 5 zone=rz2;
        mruby_content_handler_code '
            Nginx.echo [Nginx::Vlimit.count("rz", "$TEST_NGINX_HTML_DIR/r/ok.txt", :file),
                        Nginx::Vlimit.count("rz", "$TEST_NGINX_HTML_DIR/r/link.txt", :file),
                        Nginx::Vlimit.count("rz", "$TEST_NGINX_HTML_DIR/r/nope.txt", :file),
                        Nginx::Vlimit.count("rz2", "127.0.0.1", :ip),
                        Nginx::Vlimit.count("rz", "t1"),
                        Nginx::Vlimit.count("rz", "localhost", :host),
                        Nginx::Vlimit.count("rz2", "localhost", :host)].inspect
        ';
    }
    location = /after {
        mruby_content_handler_code '
            Nginx.echo [Nginx::Vlimit.stats("rz")["keys"], Nginx::Vlimit.stats("rz2")["keys"]].inspect
        ';
    }
--- user_files
>>> r/ok.txt
ok
--- init
unlink "$ENV{TEST_NGINX_HTML_DIR}/r/link.txt";
symlink "$ENV{TEST_NGINX_HTML_DIR}/r/ok.txt", "$ENV{TEST_NGINX_HTML_DIR}/r/link.txt" or die "symlink: $!";
--- request eval
["GET /r/ok.txt?k=t1", "GET /r/link.txt?k=t1", "GET /r/nope.txt?k=t1", "GET /after"]
--- response_body eval
["[1, 1, 0, 1, 1, 1, 1]\n", "[1, 1, 0, 1, 1, 1, 1]\n", "[0, 0, 1, 1, 1, 1, 1]\n", "[0, 0]\n"]
