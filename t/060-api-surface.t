# The Ruby surface a script can reach: no internal helper of ours is callable
# (no `__` name on any class or module our API defines or extends, by any
# route: send, method, instance_method, respond_to?, the method listings),
# and every public method of ours, given wrong types and huge values, raises
# a StandardError (TypeError, ArgumentError...) or returns: it never crashes
# the worker, never exhausts it, never raises what a script cannot rescue.
#
# Scripts are user_files, so their backslashes reach Ruby untouched.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: no __ method of ours is reachable, by listing or by name
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
# mruby 3.3's own helpers (its C core and mrblib call them); not ours.
# (String#__sub_replace served only mruby's sub/gsub, which are ours now:
# it is undefined.)
MRUBY_OWN = %w(
  __ENCODING__ __callee__ __method__ __id__ __send__ __case_eqq __inspect_recursive? __to_int
  __update_hash __do_with_enum __get_hash __coerce_step_counter __empty_range? __num_to_a
  __compact __delete __merge __ary_cmp __ary_eq __ary_index __repeated_combination __svalue
  __enumerator_block_call __errno_define __errno_defined? __errno_list
  __codepoints __lines __upto_endless
)
ours = []
seen = {}
todo = [Object]
until todo.empty?
  mod = todo.shift
  next if seen[mod.object_id]
  seen[mod.object_id] = true
  names = mod.singleton_methods + mod.methods + mod.private_methods
  names += mod.instance_methods if mod.respond_to?(:instance_methods)
  names += mod.private_instance_methods if mod.respond_to?(:private_instance_methods)
  names.map(&:to_s).uniq.each do |name|
    ours << "#{mod}##{name}" if name.start_with?("__") && !MRUBY_OWN.include?(name)
  end
  consts = begin
    mod.constants
  rescue Exception
    []
  end
  consts.each do |c|
    value = begin
      mod.const_get(c)
    rescue Exception
      nil
    end
    todo << value if value.is_a?(Module)
  end
end
Nginx.echo "modules walked: #{seen.size > 100}"
Nginx.echo "internal methods listed: #{ours.sort.inspect}"

# the helpers earlier versions had, by every route
probes = [
  [JSON, :__parse], [Regexp, :__from], [Regexp, :__set_last_match], [/a/, :__match], [/a/, :__scan],
  [/a/, :__replace], [/a/, :__split], ["s", :__regexp_sub], ["s", :__mruby_sub], ["s", :__mruby_gsub],
  ["s", :__mruby_sub!], ["s", :__mruby_gsub!], ["s", :__mruby_split], ["s", :__mruby_index],
  ["s", :__mruby_aref], [Nginx::Async, :__sleep], [Nginx::Vlimit, :__stats_json],
  [SecureRandom, :__random_number], ["s", :__sub_replace],
]
reachable = []
probes.each do |recv, name|
  reachable << "respond_to? #{name}" if recv.respond_to?(name, true)
  begin
    recv.send(name, "a")
    reachable << "send #{name}"
  rescue NoMethodError
  rescue StandardError => e
    reachable << "send #{name}: #{e.class}"
  end
  begin
    recv.method(name)
    reachable << "method #{name}"
  rescue NameError
  end
  klass = recv.is_a?(Module) ? recv.singleton_class : recv.class
  begin
    klass.instance_method(name)
    reachable << "instance_method #{name}"
  rescue NameError
  end
end
Nginx.echo "reachable by name: #{reachable.inspect}"
--- request
GET /t
--- response_body
modules walked: true
internal methods listed: []
reachable by name: []
--- no_error_log
[error]



=== TEST 2: JSON.parse options as keywords or a Hash; the String methods that were Ruby still work
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
def error_of
  yield
  "no error"
rescue => e
  e.class
end
Nginx.echo JSON.parse('{"a":1}', symbolize_names: true).inspect
Nginx.echo JSON.parse('{"a":1}', {symbolize_names: true}).inspect
Nginx.echo JSON.parse('{"a":1}', symbolize_names: false, max_nesting: 3).inspect
Nginx.echo JSON.generate("k" => [1]) + JSON.generate(a: 1)
Nginx.echo error_of { JSON.parse('{}', 5) }
Nginx.echo "a-b_c".gsub(/[-_]/, "-" => "+", "_" => "=")
Nginx.echo "abcabc".gsub("b") { |m| $~.begin(0).to_s + m }
Nginx.echo ["a1b2".scan(/[a-z]\d/), "a1b2".scan(/([a-z])(\d)/), "a.a".scan(".")].inspect
Nginx.echo ["a, b;c".split(/[,;] ?/), "a,b".split(","), "a b".split, "abc".split(/(b)/)].inspect
Nginx.echo ["hello"[/l+/], "hello"[/(h)(e)/, 2], "hello"[1, 2], "hello".slice(/o/), "hello"[9]].inspect
Nginx.echo ["hello".index(/l/), "hello".index("l"), "hello".index(/z/), "hello".index(/l/, 3)].inspect
Nginx.echo ["ab" =~ /b/, "ab".match("(b)")[1], "ab".match?(/c/), :ab.match(/a/)[0]].inspect
Nginx.echo "xyz".match(/y/) { |m| m.pre_match + "|" + m.post_match }
Nginx.echo error_of { "abc" =~ "b" }
Nginx.echo error_of { "abc".sub(1, "x") }
Nginx.echo error_of { "abc".gsub(/b/, 1) }
Nginx.echo error_of { "abc".split(/b/, "x") }
Nginx.echo error_of { "abc".freeze.sub!(/z/, "x") }
Nginx.echo "abc".gsub(/b/).to_a.inspect
r = "aXbXc".gsub(/X/) { break "stopped" }
Nginx.echo r
--- request
GET /t
--- response_body
{:a=>1}
{:a=>1}
{"a"=>1}
{"k":[1]}{"a":1}
TypeError
a+b=c
a1bca4bc
[["a1", "b2"], [["a", "1"], ["b", "2"]], ["."]]
[["a", "b", "c"], ["a", "b"], ["a", "b"], ["a", "b", "c"]]
["ll", "e", "el", "o", nil]
[2, 2, nil, 3]
[1, "b", false, "a"]
x|z
TypeError
TypeError
TypeError
TypeError
FrozenError
["b"]
stopped
--- no_error_log
[error]



=== TEST 3: every public method of ours, given wrong types and huge values, raises a StandardError or returns
The fuzz logs junk at every level ([alert], [crit] and [emerg] included).
Methods that wait are tried in the log phase (next test), where they must
refuse; Process.kill is left out (kill(-1, ...) as root signals every
process) and has its own tests in t/gems.t.
--- config
    location = /fuzz {
        mruby_cpu_limit 60s;
        mruby_content_handler $TEST_NGINX_HTML_DIR/fuzz.rb;
    }
    location = /hello { mruby_content_handler_code 'Nginx.rputs "hello #{Process.pid}"'; }
--- user_files
>>> fuzz.rb
SKIP = ["Nginx::Async.sleep", "Nginx::Async::HTTP.sub_request", "Process.kill"]
BAD = [nil, true, 0, -1, 2**62, -(2**62), 2**64, 1.5, 1e308, Float::NAN, "", "x", "\xff\x00/..",
       "x" * 1_000_000, :sym, [], [nil, 1], {}, {"a" => nil}, Object.new, (1..2)]
SHAPES = [[]] + BAD.map { |b| [b] } + BAD.map { |b| ["x", b] } + BAD.map { |b| [b, "x"] } +
         BAD.map { |b| [b, b, b] }
OURS = [Nginx, JSON, Regexp, MatchData, Digest, SecureRandom, Process, StringIO, Userdata]

# An instance to call instance methods on.
def sample(klass)
  return /a(b)?/ if klass == Regexp
  return /a(b)?/.match("ab") if klass == MatchData
  [[], ["x"], ["x", "y"]].each do |args|
    begin
      return klass.new(*args)
    rescue StandardError
    end
  end
  nil
end

targets = []
seen = {}
todo = OURS.dup
until todo.empty?
  mod = todo.shift
  next if seen[mod.object_id]
  seen[mod.object_id] = true
  mod.singleton_methods.each { |m| targets << [mod, m, "#{mod}.#{m}"] }
  if mod.is_a?(Class) && !(mod <= Exception) && sample(mod)
    mod.instance_methods(false).each { |m| targets << [mod, m, "#{mod}##{m}", :instance] }
  end
  mod.constants.each do |c|
    v = mod.const_get(c)
    todo << v if v.is_a?(Module) && v.name.to_s.start_with?(mod.name.to_s + "::")
  end
end
ENV.singleton_methods.each { |m| targets << [ENV, m, "ENV.#{m}"] }
%w(=~ match match? sub gsub sub! gsub! scan split index [] slice).each do |m|
  targets << [String, m.to_sym, "String##{m}", :instance]
end
targets.reject! { |_, _, name| SKIP.include?(name) }

calls = 0
raised = 0
escaped = []
targets.each do |recv, name, label, instance|
  SHAPES.each do |args|
    calls += 1
    # a fresh object each time: what one call leaves must not build up
    receiver = recv == String ? "abc".dup : (instance ? sample(recv) : recv)
    begin
      receiver.send(name, *args)
    rescue StandardError
      raised += 1
    rescue Exception => e
      escaped << "#{label}(#{args.map { |a| a.inspect[0, 20] }.join(', ')}): #{e.class}"
    end
  end
end
Nginx.log Nginx::LOG_ERR, "api fuzz done: #{targets.size} methods, #{calls} calls, " \
  "#{raised} raised, #{escaped.size} escaped #{escaped.first(5).inspect}"
--- request eval
["GET /fuzz", "GET /hello"]
--- error_code_like eval
[qr/^\d{3}$/, qr/^200$/]
--- response_body_like eval
[qr/.*/s, qr/^hello \d+$/]
--- error_log eval
[qr/api fuzz done: \d{3} methods, \d{5,} calls, \d+ raised, 0 escaped \[\]/, "[alert]", "[crit]", "[emerg]"]
--- no_error_log
signal
mruby_content_handler
--- timeout: 30



=== TEST 4: the waiting methods, given anything in the log phase, refuse
--- config
    location = /t {
        mruby_content_handler_code 'Nginx.echo "ok"';
        mruby_log_handler $TEST_NGINX_HTML_DIR/log.rb;
    }
--- user_files
>>> log.rb
BAD = [nil, 0, -1, 2**62, 2**64, 1e308, Float::NAN, "", "/t", "x" * 100_000, :sym, [], {}, Object.new]
SHAPES = [[]] + BAD.map { |b| [b] } + BAD.map { |b| ["/t", b] } + BAD.map { |b| [b, b, b] }
classes = Hash.new(0)
[[Nginx::Async, :sleep], [Nginx::Async::HTTP, :sub_request]].each do |recv, name|
  SHAPES.each do |args|
    begin
      recv.send(name, *args)
      classes["returned"] += 1
    rescue StandardError => e
      classes[e.class.to_s] += 1
    rescue Exception => e
      classes["escaped #{e.class}"] += 1
    end
  end
end
Nginx.log Nginx::LOG_ERR, "log-phase waits: #{classes.keys.sort.inspect}"
--- request
GET /t
--- response_body
ok
--- error_log eval
qr/log-phase waits: \[("(ArgumentError|TypeError|RuntimeError|FiberError|RangeError)"(, )?)+\]/
--- no_error_log
signal
escaped
returned



=== TEST 5: the stream VM: no __ method of ours, and Nginx::Stream's methods given junk raise StandardErrors
--- stream_server_config
    mruby_stream $TEST_NGINX_HTML_DIR/stream.rb;
    return "served\n";
--- user_files
>>> stream.rb
MRUBY_OWN = %w(
  __ENCODING__ __callee__ __method__ __id__ __send__ __case_eqq __inspect_recursive? __to_int
  __update_hash __do_with_enum __get_hash __coerce_step_counter __empty_range? __num_to_a
  __compact __delete __merge __ary_cmp __ary_eq __ary_index __repeated_combination __svalue
  __enumerator_block_call __errno_define __errno_defined? __errno_list
  __codepoints __lines __upto_endless
)
ours = []
targets = []
seen = {}
todo = [Object]
until todo.empty?
  mod = todo.shift
  next if seen[mod.object_id]
  seen[mod.object_id] = true
  names = mod.singleton_methods + mod.methods + mod.private_methods
  names += mod.instance_methods if mod.respond_to?(:instance_methods)
  names.map(&:to_s).uniq.each do |name|
    ours << "#{mod}##{name}" if name.start_with?("__") && !MRUBY_OWN.include?(name)
  end
  if mod.name.to_s.start_with?("Nginx::Stream")
    mod.singleton_methods.each { |m| targets << [mod, m] }
    mod.instance_methods(false).each { |m| targets << [mod, m, :instance] } if mod.is_a?(Class)
  end
  consts = begin
    mod.constants
  rescue Exception
    []
  end
  consts.each do |c|
    value = begin
      mod.const_get(c)
    rescue Exception
      nil
    end
    todo << value if value.is_a?(Module)
  end
end
BAD = [nil, 0, -1, 2**62, 2**64, 1e308, Float::NAN, "", "x" * 1_000_000, :sym, [], {}, Object.new]
SHAPES = [[]] + BAD.map { |b| [b] } + BAD.map { |b| ["x", b] } + BAD.map { |b| [b, b, b] }
escaped = []
calls = 0
targets.each do |recv, name, instance|
  next if recv == Nginx::Stream::Async && name == :sleep
  SHAPES.each do |args|
    calls += 1
    begin
      receiver = instance ? recv.new : recv
      receiver.send(name, *args)
    rescue StandardError
    rescue Exception => e
      escaped << "#{recv}.#{name}: #{e.class}"
    end
  end
end
# the fuzz set the phase's result (stream_status=) to junk: serve anyway
Nginx::Stream::Connection.stream_status = Nginx::Stream::DECLINED
Nginx::Stream.log Nginx::Stream::LOG_ERR, "stream surface: #{ours.inspect} #{targets.size > 5} #{calls} calls #{escaped.inspect}"
--- stream_request
--- stream_response
served
--- error_log eval
qr/stream surface: \[\] true \d{3,} calls \[\]/
--- no_error_log
signal
