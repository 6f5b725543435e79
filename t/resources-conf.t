# Resource control directives (issue 10): every accepted form, and every
# refused one failing `nginx -t` with a message naming the directive and
# the bad argument. resource_stats shows what was configured.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

# nginx's own group in the cpu hierarchy (v1) or the unified one (v2),
# where a relative cgroup path starts: TEST 46 names it absolutely.
sub own_cpu_group {
    open my $fh, '<', '/proc/self/cgroup' or return '/';
    my ($v1, $v2);
    while (<$fh>) {
        chomp;
        my (undef, $controllers, $path) = split /:/, $_, 3;
        $v1 //= $path if grep { $_ eq 'cpu' } split /,/, $controllers;
        $v2 = $path if $controllers eq '';
    }
    my $own = $v1 // $v2 // '/';
    return $own eq '/' ? '' : $own;
}

no_shuffle();
run_tests();

__DATA__

=== TEST 1: every directive accepted; resource_stats shows the classes and settings
--- http_config
    resource_cgroup_root ngx-mruby-test;
    resource_class slow cpu=25 memory=256m io_read=10m/s io_write=1m pids=64;
    resource_class big cpu=200;
    tenant_resource_class big;
    resource_checker cpu_user=200 cpu_sys=100ms memory=64m log=logs/heavy.log;
    resource_auto_confine class=slow load=4.5 top=3 hold=30s window=20s load_source=html/loadavg;
--- config
    location = /stats { resource_stats; }
--- user_files
>>> loadavg
1.25 0.50 0.25 1/100 1234
--- request
GET /stats
--- response_body_like eval
qr{^\{"cgroup_root":"ngx-mruby-test","classes":\{"slow":\{"cpu_percent":25,"memory_bytes":268435456,"io_read_bps":10485760,"io_write_bps":1048576,"pids":64\},"big":\{"cpu_percent":200,"memory_bytes":null,"io_read_bps":null,"io_write_bps":null,"pids":null\}\},"tenant_class":"big","checker":\{"cpu_user_ms":200,"cpu_sys_ms":100,"memory_bytes":67108864,"log":"logs/heavy.log"\},"auto_confine":\{"class":"slow","load":"4.50","top":3,"hold_seconds":30,"window_seconds":20,"load_source":"/\S+/html/loadavg","current":"1.25"\},"load":"1.25","zone":\{"capacity":\d+,"hosts":0\},"hosts":\{\}\}\n\z}
--- response_headers
Content-Type: application/json
--- error_log
resource_class: classes apply to the requests served by tenant runners (tenant_runner) only
--- no_error_log
[error]


=== TEST 2: nothing but resource_stats: empty settings, the zone, no warning
--- config
    location = /stats { resource_stats; }
--- request
GET /stats
--- response_body_like
^\{"cgroup_root":null,"classes":\{\},"tenant_class":null,"checker":null,"auto_confine":null,"load":null,"zone":\{"capacity":[1-9]\d*,"hosts":0\},"hosts":\{\}\}$
--- no_error_log
[warn]
[error]


=== TEST 3: resource_stats refuses methods other than GET and HEAD
--- config
    location = /stats { resource_stats; }
--- request
POST /stats
hello
--- error_code: 405


=== TEST 4: resource_class_for: static (before its class is declared), $variable, off, in server, location and if
--- config
    resource_class_for slow;
    location /a { resource_class_for $arg_class; return 200 "a\n"; }
    location /b { resource_class_for off; return 200 "b\n"; }
    location /c { if ($arg_x) { resource_class_for fast; } return 200 "c\n"; }
    location /d { resource_class_for "class-$host"; return 200 "d\n"; }
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_SERVER_PORT;
        server_name other.test;
        location / { resource_class_for fast; return 200 "other\n"; }
    }
    resource_cgroup_root /ngx-mruby-test-classes;
    resource_class slow cpu=10;
    resource_class fast cpu=100;
--- request
GET /c?x=1
--- response_body
c


=== TEST 5: class: a bad cpu= value
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=fast;
--- config
--- must_die
--- error_log
resource_class: invalid value "cpu=fast", cpu= is a percent of one CPU from 1 to 10000


=== TEST 6: class: cpu=0
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=0;
--- config
--- must_die
--- error_log
resource_class: invalid value "cpu=0"


=== TEST 6a: class: cpu_period= not a whole number of milliseconds or seconds
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=50 cpu_period=500us;
--- config
--- must_die
--- error_log
resource_class: invalid value "cpu_period=500us", cpu_period= is a time from 1ms to 1s in whole milliseconds ("2ms", "100ms", "1s")


=== TEST 6b: class: cpu_period= without cpu=
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu_period=10ms memory=64m;
--- config
--- must_die
--- error_log
resource_class: cpu_period= needs cpu=


=== TEST 6c: class: cpu_period= too short for the percent (the kernel's quota is at least 1 ms)
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=10 cpu_period=5ms;
--- config
--- must_die
--- error_log
resource_class: cpu_period=5ms with cpu=10 gives a quota under the kernel's 1 ms, use cpu_period=10ms or more


=== TEST 7: class: memory below 1m
--- http_config
    resource_cgroup_root t;
    resource_class slow memory=512k;
--- config
--- must_die
--- error_log
resource_class: invalid value "memory=512k", memory= is a size from 1m to 1048576g


=== TEST 8: class: a bad io rate
--- http_config
    resource_cgroup_root t;
    resource_class slow io_write=fast;
--- config
--- must_die
--- error_log
resource_class: invalid value "io_write=fast", io_write= is bytes per second per device


=== TEST 9: class: pids out of range
--- http_config
    resource_cgroup_root t;
    resource_class slow pids=99999999;
--- config
--- must_die
--- error_log
resource_class: invalid value "pids=99999999", pids= is a number of processes from 1 to 4194304


=== TEST 10: class: an unknown key
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5 swap=1g;
--- config
--- must_die
--- error_log
resource_class: unknown parameter "swap=1g", the limits are cpu= (with cpu_period=), memory=, io_read=, io_write= and pids=


=== TEST 11: class: a key given twice
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5 cpu=6;
--- config
--- must_die
--- error_log
resource_class: parameter "cpu=" is duplicate


=== TEST 12: class: a duplicate name
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
    resource_class slow memory=64m;
--- config
--- must_die
--- error_log
resource_class: class "slow" is duplicate


=== TEST 13: class: no limit at all
--- http_config
    resource_cgroup_root t;
    resource_class slow;
--- config
--- must_die
--- error_log
resource_class: class "slow" sets no limit


=== TEST 14: class: names that could leave the tree, or mean "no class"
--- http_config
    resource_cgroup_root t;
    resource_class ../up cpu=5;
--- config
--- must_die
--- error_log
resource_class: invalid class name "../up"


=== TEST 15: class: "off" is not a class name
--- http_config
    resource_cgroup_root t;
    resource_class off cpu=5;
--- config
--- must_die
--- error_log
resource_class: invalid class name "off"


=== TEST 16: class: a parameter without "="
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu;
--- config
--- must_die
--- error_log
resource_class: invalid parameter "cpu"


=== TEST 17: classes need a cgroup root
--- http_config
    resource_class slow cpu=5;
--- config
--- must_die
--- error_log
resource_class: classes (slow) need "resource_cgroup_root <path>;" in http{}


=== TEST 18: root: ".." refused
--- http_config
    resource_cgroup_root a/../b;
--- config
--- must_die
--- error_log
resource_cgroup_root: invalid path "a/../b"


=== TEST 19: root: the hierarchy's root itself refused
--- http_config
    resource_cgroup_root /;
--- config
--- must_die
--- error_log
resource_cgroup_root: invalid path "/"


=== TEST 20: root: duplicate
--- http_config
    resource_cgroup_root a;
    resource_cgroup_root b;
--- config
--- must_die
--- error_log
"resource_cgroup_root" directive is duplicate


=== TEST 21: resource_class_for: an unknown static name, with the place that names it
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
--- config
    location /x {
        resource_class_for sloow;
    }
--- must_die
--- error_log eval
qr{resource_class_for: unknown class "sloow" \(no resource_class declares it\) in \S+nginx\.conf:\d+}


=== TEST 22: resource_class_for: an unknown name in an if block
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
--- config
    location /x { if ($arg_a) { resource_class_for nope; } }
--- must_die
--- error_log
resource_class_for: unknown class "nope"


=== TEST 23: resource_class_for: an invalid name
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
--- config
    location /x { resource_class_for a/b; }
--- must_die
--- error_log
resource_class_for: invalid class name "a/b"


=== TEST 24: resource_class_for: twice in one scope
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
--- config
    location /x { resource_class_for slow; resource_class_for off; }
--- must_die
--- error_log
"resource_class_for" directive is duplicate


=== TEST 25: resource_class_for: not at http level
--- http_config
    resource_class_for off;
--- config
--- must_die
--- error_log
"resource_class_for" directive is not allowed here


=== TEST 26: resource_class: not inside a server
--- config
    resource_class slow cpu=5;
--- must_die
--- error_log
"resource_class" directive is not allowed here


=== TEST 27: tenant_resource_class: unknown class
--- http_config
    resource_cgroup_root t;
    tenant_resource_class owners;
--- config
--- must_die
--- error_log
tenant_resource_class: unknown class "owners" (no resource_class declares it)


=== TEST 28: tenant_resource_class: duplicate
--- http_config
    resource_cgroup_root t;
    resource_class owners cpu=25;
    tenant_resource_class owners;
    tenant_resource_class owners;
--- config
--- must_die
--- error_log
"tenant_resource_class" directive is duplicate


=== TEST 29: resource_checker: no threshold
--- http_config
    resource_checker log=logs/heavy.log;
--- config
--- must_die
--- error_log
resource_checker: no threshold: give at least one of cpu_user=, cpu_sys= and memory=


=== TEST 30: resource_checker: a bad value
--- http_config
    resource_checker cpu_user=2s;
--- config
--- must_die
--- error_log
resource_checker: invalid value "cpu_user=2s", cpu_user= is a number of milliseconds


=== TEST 31: resource_checker: an unknown parameter
--- http_config
    resource_checker cpu=5;
--- config
--- must_die
--- error_log
resource_checker: unknown parameter "cpu=5"


=== TEST 32: resource_checker: duplicate
--- http_config
    resource_checker cpu_user=5;
    resource_checker memory=5m;
--- config
--- must_die
--- error_log
"resource_checker" directive is duplicate


=== TEST 33: resource_checker: log= a file that cannot be opened
--- http_config
    resource_checker cpu_user=5 log=/nonexistent-dir/heavy.log;
--- config
--- must_die
--- error_log
/nonexistent-dir/heavy.log


=== TEST 34: resource_auto_confine: unknown class
--- http_config
    resource_cgroup_root t;
    resource_auto_confine class=slow load=4 top=1 hold=30;
--- config
--- must_die
--- error_log
resource_auto_confine: unknown class "slow"


=== TEST 35: resource_auto_confine: a missing parameter
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
    resource_auto_confine class=slow load=4 hold=30;
--- config
--- must_die
--- error_log
resource_auto_confine: parameter "top=" is missing


=== TEST 36: resource_auto_confine: a bad load
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
    resource_auto_confine class=slow load=high top=1 hold=30;
--- config
--- must_die
--- error_log
resource_auto_confine: invalid value "load=high", load= is a load average above 0


=== TEST 37: resource_auto_confine: a window that is not a multiple of 10s
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
    resource_auto_confine class=slow load=4 top=1 hold=30 window=15s;
--- config
--- must_die
--- error_log
resource_auto_confine: invalid value "window=15s", window= is a multiple of 10s up to 1h


=== TEST 38: resource_auto_confine: an unknown parameter
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
    resource_auto_confine class=slow load=4 top=1 hold=30 cpu=5;
--- config
--- must_die
--- error_log
resource_auto_confine: unknown parameter "cpu=5"


=== TEST 38: resource_auto_confine pressure=: resource_stats shows the threshold, the source and its reading
--- http_config
    resource_cgroup_root ngx-mruby-test;
    resource_class slow cpu=25;
    resource_auto_confine class=slow pressure=20 top=2 hold=30s pressure_source=html/psi;
--- config
    location = /stats { resource_stats; }
--- user_files
>>> psi
some avg10=38.34 avg60=30.73 avg300=35.89 total=13834561493
full avg10=0.00 avg60=0.00 avg300=0.00 total=0
--- request
GET /stats
--- response_body_like eval
qr{"auto_confine":\{"class":"slow","pressure":"20.00%","top":2,"hold_seconds":30,"window_seconds":60,"pressure_source":"/\S+/html/psi","current":"38.34%"\},"load":null,}
--- no_error_log
[error]


=== TEST 38: resource_auto_confine pressure= without pressure_source= reads the system's PSI file (this machine: cgroup v1)
--- http_config
    resource_cgroup_root ngx-mruby-test;
    resource_class slow cpu=25;
    resource_auto_confine class=slow pressure=99.5 top=1 hold=30s;
--- config
    location = /stats { resource_stats; }
--- request
GET /stats
--- response_body_like eval
qr{"pressure":"99.50%",.*"pressure_source":"/proc/pressure/cpu","current":"\d+\.\d\d%"\}}
--- no_error_log
[error]


=== TEST 38: resource_auto_confine: a bad pressure
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
    resource_auto_confine class=slow pressure=100.5 top=1 hold=30;
--- config
--- must_die
--- error_log
resource_auto_confine: invalid value "pressure=100.5", pressure= is a percent from 0 to 100 with at most two decimals


=== TEST 38: resource_auto_confine: a pressure with three decimals
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
    resource_auto_confine class=slow pressure=12.125 top=1 hold=30;
--- config
--- must_die
--- error_log
resource_auto_confine: invalid value "pressure=12.125", pressure= is a percent from 0 to 100


=== TEST 38: resource_auto_confine: load= and pressure= together
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
    resource_auto_confine class=slow load=4 pressure=20 top=1 hold=30;
--- config
--- must_die
--- error_log
resource_auto_confine: "load=" and "pressure=" exclude each other, give one of them


=== TEST 38: resource_auto_confine: neither load= nor pressure=
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
    resource_auto_confine class=slow top=1 hold=30;
--- config
--- must_die
--- error_log
resource_auto_confine: parameter "load=" or "pressure=" is missing


=== TEST 38: resource_auto_confine: load_source= with pressure=
--- http_config
    resource_cgroup_root t;
    resource_class slow cpu=5;
    resource_auto_confine class=slow pressure=20 top=1 hold=30 load_source=/tmp/x;
--- config
--- must_die
--- error_log
resource_auto_confine: "load_source=" goes with "load=", not "pressure="


=== TEST 39: resource_stats takes no argument
--- config
    location = /stats { resource_stats json; }
--- must_die
--- error_log
invalid number of arguments in "resource_stats" directive


=== TEST 40: root: a parent group that does not exist fails nginx -t (asked of the supervisor program, as tenant_cgroup)
--- http_config
    resource_cgroup_root /ngx-mruby-no-such-parent/classes;
    resource_class slow cpu=10;
--- config
--- must_die
--- error_log eval
qr{resource_cgroup_root "/ngx-mruby-no-such-parent/classes": the parent group /sys/fs/cgroup/\S+/ngx-mruby-no-such-parent of "/ngx-mruby-no-such-parent/classes" does not exist}


=== TEST 41: root and every controller the classes need are there: nginx starts, creating nothing
--- http_config
    resource_cgroup_root ngx-mruby-t-check;
    resource_class all cpu=10 memory=64m io_read=1m io_write=1m pids=10;
--- config
    location = /t {
        mruby_content_handler_code 'Nginx.echo Dir.exist?("/sys/fs/cgroup/cpu/ngx-mruby-t-check") ? "created" : "nothing created"';
    }
--- request
GET /t
--- response_body
nothing created


=== TEST 42: resource_cgroup_root is checked with the program tenant_supervisor names, not the default one
--- http_config
    tenant_supervisor /nonexistent/ngx-mruby-supervisor;
    resource_cgroup_root t;
    resource_class slow cpu=5;
--- config
--- must_die
--- error_log
resource_cgroup_root "t": cannot run "/nonexistent/ngx-mruby-supervisor" to check the cgroup hierarchy



=== TEST 43: class: a name that is not started by a letter (a uid's name would be an owner's group)
--- http_config
    resource_cgroup_root t;
    resource_class 2003 cpu=10;
--- config
--- must_die
--- error_log
resource_class: invalid class name "2003", it must be 1 to 32 letters, digits, "_" or "-" starting with a letter, and not "off"


=== TEST 44: class: "_" first is refused as well
--- http_config
    resource_cgroup_root t;
    resource_class _x cpu=10;
--- config
--- must_die
--- error_log
resource_class: invalid class name "_x"


=== TEST 45: root: the same path as tenant_cgroup
--- http_config
    tenant_cgroup ngx-mruby-t-same;
    resource_cgroup_root ngx-mruby-t-same;
    resource_class heavy cpu=10;
--- config
--- must_die
--- error_log
resource_cgroup_root "ngx-mruby-t-same" and tenant_cgroup "ngx-mruby-t-same" are the same cgroup sub-tree or one is inside the other: owners' groups and class groups would collide, give them separate paths


=== TEST 46: root: the same group as tenant_cgroup, once absolute and once relative to nginx's own group
--- http_config eval
"    tenant_cgroup " . main::own_cpu_group() . "/ngx-mruby-t-same;
    resource_cgroup_root ngx-mruby-t-same;
    resource_class heavy cpu=10;"
--- config
--- must_die
--- error_log eval
qr{resource_cgroup_root "ngx-mruby-t-same" and tenant_cgroup "\S*/ngx-mruby-t-same" are the same cgroup sub-tree or one is inside the other}


=== TEST 47: root: inside tenant_cgroup (and tenant_cgroup inside the root)
--- http_config
    tenant_cgroup ngx-mruby-t-same;
    resource_cgroup_root ngx-mruby-t-same/classes;
    resource_class heavy cpu=10;
--- config
--- must_die
--- error_log
resource_cgroup_root "ngx-mruby-t-same/classes" and tenant_cgroup "ngx-mruby-t-same" are the same cgroup sub-tree or one is inside the other


=== TEST 48: root: around tenant_cgroup
--- http_config
    tenant_cgroup ngx-mruby-t-same/owners;
    resource_cgroup_root ngx-mruby-t-same;
    resource_class heavy cpu=10;
--- config
--- must_die
--- error_log
resource_cgroup_root "ngx-mruby-t-same" and tenant_cgroup "ngx-mruby-t-same/owners" are the same cgroup sub-tree or one is inside the other


=== TEST 49: root and tenant_cgroup side by side (a name that only starts alike) are fine
--- http_config
    tenant_cgroup ngx-mruby-t-same;
    resource_cgroup_root ngx-mruby-t-same2;
    resource_class heavy cpu=10;
--- config
    location = /t { return 200 "started\n"; }
--- request
GET /t
--- response_body
started
--- no_error_log
would collide
