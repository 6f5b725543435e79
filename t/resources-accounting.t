# Per-request figures: $request_cpu_user_ms, $request_cpu_sys_ms,
# $request_mem_peak_kb and resource_checker's log, for a request that no
# tenant runner served: it has no figures (the variables are not found,
# "-" in an access log, empty elsewhere) and resource_checker writes
# nothing. Requests served by runners are measured in
# t/resources-moves.t and t/resources-accounting-gate.t; the threshold
# test and the JSON line are unit-tested in resource-policy/ (cargo test).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: no figures: the variables are empty, "-" in the access log, no checker line
--- http_config
    resource_checker cpu_user=0 cpu_sys=0 memory=1k log=logs/heavy.log;
    log_format figures 'figures=$request_cpu_user_ms/$request_cpu_sys_ms/$request_mem_peak_kb';
--- config
    access_log logs/figures.log figures;
    location = /t { return 200 "[$request_cpu_user_ms][$request_cpu_sys_ms][$request_mem_peak_kb]\n"; }
    location = /logs {
        mruby_content_handler_code '
            prefix = Nginx::Request.new.var.document_root.sub(%r{/html\z}, "")
            Nginx.echo File.read("#{prefix}/logs/figures.log").lines.last.to_s.chomp
            Nginx.echo File.size("#{prefix}/logs/heavy.log")
        ';
    }
--- request eval
["GET /t", "GET /logs"]
--- response_body eval
["[][][]\n", "figures=-/-/-\n0\n"]
--- no_error_log
[error]
resource_checker:
