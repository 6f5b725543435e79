# The Ruby library in every VM (src/api/gems/, mrblib/json.rb, regexp.rb,
# secure_random.rb, stringio.rb): JSON, Regexp/MatchData and the String
# methods taking a Regexp, Digest, ENV, Process, SecureRandom, StringIO.
#
# Scripts are user_files, so their backslashes reach Ruby untouched (nginx
# rewrites \\ \n \t inside quoted directive arguments).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: JSON.parse: objects, arrays, scalars, symbolize_names
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
h = JSON.parse(%q({"a":[1,2.5,"x",null,true,false],"b":{"c":-3e2},"d":"\u00e9\n"}))
Nginx.echo h["a"].inspect
Nginx.echo h["b"].inspect
Nginx.echo h["d"] == "\xC3\xA9\n"
Nginx.echo h.keys.inspect
Nginx.echo JSON.parse(%q({"a":{"b":1}}), symbolize_names: true).inspect
Nginx.echo [JSON.parse("2"), JSON.parse("null"), JSON.parse("9223372036854775807")].inspect
Nginx.echo JSON.parse("18446744073709551616").class
Nginx.echo JSON.parse(%q({"a":1,"a":2})).inspect
Nginx.echo JSON.load(nil).inspect
--- request
GET /t
--- response_body
[1, 2.5, "x", nil, true, false]
{"c"=>-300.0}
true
["a", "b", "d"]
{:a=>{:b=>1}}
[2, nil, 9223372036854775807]
Float
{"a"=>2}
nil
--- no_error_log
[error]



=== TEST 2: JSON.generate, to_json, dump, pretty_generate
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
class Point
  def to_s
    "P"
  end
end
Nginx.echo JSON.generate({"a" => [1, 2.5, "x", nil, true, false], :b => {c: :d}})
Nginx.echo JSON.generate({1 => Point.new, nil => 0.5})
Nginx.echo JSON.generate("q\"\\\n\t\x01/é")
Nginx.echo [1, "a", {"k" => []}].to_json
Nginx.echo nil.to_json + true.to_json + 7.to_json + 1.5.to_json + "s".to_json + :sym.to_json
Nginx.echo JSON.dump([{}])
Nginx.echo JSON.pretty_generate({"a" => [1, {"b" => nil}], "c" => {}})
--- request
GET /t
--- response_body
{"a":[1,2.5,"x",null,true,false],"b":{"c":"d"}}
{"1":"P","":0.5}
"q\"\\\n\t\u0001/é"
[1,"a",{"k":[]}]
nulltrue71.5"s""sym"
[{}]
{
  "a": [
    1,
    {
      "b": null
    }
  ],
  "c": {}
}
--- no_error_log
[error]



=== TEST 3: JSON errors: ParserError, TypeError, GeneratorError, NestingError
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
def try
  yield.inspect
rescue => e
  "#{e.class}: #{e.message}"
end
Nginx.echo JSON::ParserError.ancestors.take(3).inspect
Nginx.echo JSON::NestingError.superclass
Nginx.echo JSON::GeneratorError.superclass
Nginx.echo try { JSON.parse("{") }
Nginx.echo try { JSON.parse("") }
Nginx.echo try { JSON.parse("[1,]") }
Nginx.echo try { JSON.parse("[1] x") }
Nginx.echo try { JSON.parse(nil) }
Nginx.echo try { JSON.parse(5) }
Nginx.echo try { JSON.generate([0.0 / 0]) }
Nginx.echo try { (1.0 / 0).to_json }
Nginx.echo try { JSON.generate("\xff") }
deep = []
200.times { deep = [deep] }
Nginx.echo try { JSON.generate(deep) }
loop_ = [1]
loop_ << loop_
Nginx.echo try { loop_.to_json }
Nginx.echo try { JSON.generate }
--- request
GET /t
--- response_body
[JSON::ParserError, JSON::JSONError, StandardError]
JSON::ParserError
JSON::JSONError
JSON::ParserError: EOF while parsing an object at line 1 column 1
JSON::ParserError: EOF while parsing a value at line 1 column 0
JSON::ParserError: trailing comma at line 1 column 4
JSON::ParserError: trailing characters at line 1 column 5
TypeError: no implicit conversion of nil into String
TypeError: no implicit conversion of Integer into String
JSON::GeneratorError: NaN not allowed in JSON
JSON::GeneratorError: Infinity not allowed in JSON
JSON::GeneratorError: source sequence is illegal/malformed utf-8
JSON::NestingError: nesting of 101 is too deep
JSON::NestingError: nesting of 101 is too deep
ArgumentError: wrong number of arguments (given 0, expected 1..2)
--- no_error_log
[error]



=== TEST 4: an uncaught JSON::ParserError is one [error] line and a 500; the worker lives on
--- config
    location = /bad { mruby_content_handler_code 'JSON.parse("{")'; }
    location = /good { mruby_content_handler_code 'Nginx.rputs JSON.generate([1])'; }
--- request eval
["GET /bad", "GET /good"]
--- error_code eval
[500, 200]
--- response_body_like eval
["500 Internal Server Error", "^\\[1\\]\$"]
--- error_log
EOF while parsing an object at line 1 column 1 (JSON::ParserError)
--- no_error_log
[alert]



=== TEST 5: Regexp literals, =~, $~, $1..$9, $& $` $' $+
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
Nginx.echo(("xyz" =~ /y/).inspect)
Nginx.echo((/y/ =~ "xyz").inspect)
Nginx.echo(("xyz" =~ /q/).inspect + " " + $~.inspect + " " + $1.inspect)
if "key=value; rest" =~ /(\w+)=(\w+)/
  Nginx.echo [$~[0], $1, $2, $3, $&, $`, $', $+].inspect
end
"abcdefghijk" =~ /(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)/
Nginx.echo [$1, $9, $~[10]].join(",")
Nginx.echo(/A(B)/i.match("xab")[1])
w = "b+"
Nginx.echo(/a#{w}c/i.match?("ABBBC"))
Nginx.echo(%r{/path/(\d+)}.match("/path/42")[1])
Nginx.echo(/a\/b\d/.source)
Nginx.echo(Regexp.last_match.inspect)
Nginx.echo(Regexp.last_match(0))
Nginx.echo(/x/m.match?("x") && /a.b/m.match?("a\nb") && !/a.b/.match?("a\nb"))
Nginx.echo(/a b # comment
  c/x.match?("abc"))
--- request
GET /t
--- response_body
1
1
nil nil nil
["key=value", "key", "value", nil, "key=value", "", "; rest", "value"]
a,i,j
b
true
42
a/b\d
#<MatchData "/path/42" 1:"42">
/path/42
true
true
--- no_error_log
[error]



=== TEST 6: Regexp.new / compile, options, source, to_s, inspect, escape, union, ==, ===
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
re = Regexp.new("h(.)llo", Regexp::IGNORECASE)
Nginx.echo [Regexp::IGNORECASE, Regexp::EXTENDED, Regexp::MULTILINE].inspect
Nginx.echo [re.source, re.options, re.casefold?, re.to_s, re.inspect].inspect
Nginx.echo re.match("HELLO")[1]
Nginx.echo Regexp.compile("a.c", Regexp::MULTILINE).match?("a\nc")
Nginx.echo Regexp.new("a c", Regexp::EXTENDED).match?("ac")
Nginx.echo Regexp.new("a", "mix").options
Nginx.echo Regexp.new("a", true).casefold?
Nginx.echo Regexp.new(/b/i).inspect
Nginx.echo [/x/mix.to_s, /x/.to_s, Regexp.new("a/b").inspect, Regexp.new("a\nb").inspect].inspect
Nginx.echo Regexp.escape("a.b*c?+^$|(){}[]\\- #\n\t")
Nginx.echo Regexp.quote(:"1.5")
Nginx.echo Regexp.union("a.b", /c/i).inspect
Nginx.echo Regexp.union(["x", "y"]).source
Nginx.echo [/a/ == /a/, /a/ == /a/i, /a/.eql?(/a/), /a/.hash == /a/.hash, /a/ == "a"].inspect
Nginx.echo [/a/ === "cat", /a/ === :cat, /a/ === 5, /a/ === nil].inspect
Nginx.echo [/c/.match?("abc"), /c/.match?("abc", 3), /c/.match?(nil)].inspect
Nginx.echo /(?<year>\d+)-(?<mon>\d+)/.names.inspect
Nginx.echo /(?<a>.)(?<b>.)(?<a>.)/.named_captures.inspect
Nginx.echo /a/.dup.source
r = case "hello123"
    when /^\d+$/ then "digits"
    when /^([a-z]+)\d+$/ then "word #{$1}"
    end
Nginx.echo r
--- request
GET /t
--- response_body
[1, 2, 4]
["h(.)llo", 1, true, "(?i-mx:h(.)llo)", "/h(.)llo/i"]
E
true
true
7
true
/b/i
["(?mix:x)", "(?-mix:x)", "/a\\/b/", "/a\\nb/"]
a\.b\*c\?\+\^\$\|\(\)\{\}\[\]\\\-\ \#\n\t
1\.5
/a\.b|(?i-mx:c)/
x|y
[true, false, true, true, false]
[true, true, false, false]
[true, false, false]
["year", "mon"]
{"a"=>[1, 3], "b"=>[2]}
a
word hello
--- no_error_log
[error]



=== TEST 7: MatchData
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
m = /(?<y>\d+)-(?<m>\d+)(x)?/.match("on 2024-05!")
Nginx.echo [m[0], m[1], m[:y], m["m"], m[-1], m[9]].inspect
Nginx.echo [m.captures, m.named_captures, m.names, m.to_a, m.size, m.length].inspect
Nginx.echo [m.pre_match, m.post_match, m.to_s, m.string, m.string.frozen?].inspect
Nginx.echo [m.begin(0), m.end(0), m.begin(:m), m.end("y"), m.offset(1)].inspect
Nginx.echo [m.values_at(1, 2), m[1, 2], m[0..1]].inspect
Nginx.echo m.inspect
Nginx.echo m.regexp.inspect
m2 = /(a)(b)?/.match("xaz")
Nginx.echo [m2.captures, m2.begin(2), m2.end(2), m2.inspect].inspect
Nginx.echo [m2 == m2.dup, m2 == m].inspect
m3 = /b/.match("abcabc", 2)
Nginx.echo [m3.begin(0), m3.pre_match].inspect
Nginx.echo /(.)/.match("ab") { |md| md[1] * 3 }
Nginx.echo [/z/.match("ab"), /a/.match(nil), /a/.match("ab", 5)].inspect
def try
  yield.inspect
rescue => e
  "#{e.class}: #{e.message}"
end
Nginx.echo try { m[:zz] }
Nginx.echo try { m.begin(7) }
Nginx.echo try { m[[]] }
Nginx.echo(begin; MatchData.new; rescue NoMethodError => e; e.class; end)
Nginx.echo try { MatchData.allocate.to_a }
--- request
GET /t
--- response_body
["2024-05", "2024", "2024", "05", "05", nil]
[["2024", "05"], {"y"=>"2024", "m"=>"05"}, ["y", "m"], ["2024-05", "2024", "05"], 3, 3]
["on ", "!", "2024-05", "on 2024-05!", true]
[3, 10, 8, 7, [3, 7]]
[["2024", "05"], ["2024", "05"], ["2024-05", "2024"]]
#<MatchData "2024-05" y:"2024" m:"05">
/(?<y>\d+)-(?<m>\d+)(x)?/
[["a", nil], nil, nil, "#<MatchData \"a\" 1:\"a\" 2:nil>"]
[true, false]
[4, "abca"]
aaa
[nil, nil, nil]
IndexError: undefined group name reference: zz
IndexError: index 7 out of matches
TypeError: no implicit conversion of Array into Integer
NoMethodError
TypeError: uninitialized MatchData (MatchData)
--- no_error_log
[error]



=== TEST 8: String#sub, gsub, sub!, gsub!: string, back-references, hash, block
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
Nginx.echo "hello world".gsub(/o/, "0")
Nginx.echo "hello".sub(/l/, "L")
Nginx.echo "John Smith".sub(/(\w+) (\w+)/, '\2, \1')
Nginx.echo "2024-05".sub(/(?<y>\d+)-(?<m>\d+)/, '\k<m>/\k<y>')
Nginx.echo "abc".gsub(/b/, "[\\0|\\&|\\`|\\'|\\\\]")
Nginx.echo "a1b22".gsub(/\d+/) { |d| "<#{d}:#{$~.begin(0)}>" }
Nginx.echo "k=v".sub(/(\w)=(\w)/) { "#{$2}=#{$1}" }
Nginx.echo "cat-hat-bat".gsub(/[chb]at/, "cat" => "dog", "hat" => "cap")
Nginx.echo "a.b".gsub(".", "x" => "y", "." => "-")
Nginx.echo "abc".sub(/x/, "y")
Nginx.echo ["abc".gsub(//, "-"), "abc".gsub(/x*/, "-"), "abc".gsub(/b*/, "."), "".gsub(/x*/, "-")].inspect
Nginx.echo ["a.b.c".sub(".", "-"), "a.b.c".gsub(".", "-"), "hello".gsub("l") { "L" }].inspect
s = "hello"
r1 = s.sub!(/l/, "L")
r2 = s.gsub!(/z/, "Z")
t = "aaa"
t.gsub!(/a/) { "b" }
Nginx.echo [r1, s, r2, t].inspect
u = "x"
Nginx.echo [u.sub!("y", "z"), u.gsub!("x", "w"), u].inspect
"xay".sub(/a/, "b")
Nginx.echo $~[0]
"no" =~ /o/
"abc".gsub(/z/, "q")
Nginx.echo $~.inspect
def try
  yield.inspect
rescue => e
  "#{e.class}: #{e.message}"
end
Nginx.echo try { "abc".sub(/b/, 5) }
Nginx.echo try { "abc".gsub(/(?<a>b)/, '\k<zz>') }
Nginx.echo try { "abc".sub(/b/, "x", "y") }
--- request
GET /t
--- response_body
hell0 w0rld
heLlo
Smith, John
05/2024
a[b|b|a|c|\]c
a<1:1>b<22:3>
v=k
dog-cap-
a-b
abc
["-a-b-c-", "-a-b-c-", ".a..c.", "-"]
["a-b.c", "a-b-c", "heLLo"]
["heLlo", "heLlo", nil, "bbb"]
[nil, "w", "w"]
a
nil
TypeError: no implicit conversion of Integer into String
IndexError: undefined group name reference: zz
ArgumentError: wrong number of arguments (given 3, expected 1..2)
--- no_error_log
[error]



=== TEST 9: String#scan, split, index, [], slice, match, match?, =~
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
Nginx.echo ["a1b2c3".scan(/[a-z]\d/), "a1b2".scan(/([a-z])(\d)/), "abc".scan(/b*/), "a.b.c".scan(".")].inspect
got = []
r = "a1b2".scan(/([a-z])(\d)/) { |l, d| got << "#{l}#{d}#{$~[0]}" }
Nginx.echo [got, r].inspect
Nginx.echo "x y".scan(/\w/) { }.inspect
Nginx.echo ["a, b,c".split(/,\s*/), "a1b2c3".split(/\d/), "a1b2c3".split(/(\d)/)].inspect
Nginx.echo ["a,b,,,".split(/,/), "a,b,,,".split(/,/, -1), "a,b,c".split(/,/, 2), "abc".split(//), "hi mom".split(/\s*/), "".split(/,/)].inspect
Nginx.echo ["a b  c".split(" "), "a,b".split(","), "a b".split, "a-b-c".split("-", 2)].inspect
parts = []
"a,b".split(/,/) { |f| parts << f }
Nginx.echo parts.inspect
Nginx.echo ["hello".index(/l+/), "hello".index(/l/, 3), "hello".index(/z/), "hello".index("e"), "hello".index("l", 3)].inspect
Nginx.echo ["hello"[/l+/], "hello"[/(h)(e)/, 2], "hello"[/(?<x>ll)/, "x"], "hello"[/z/], "hello"[1], "hello"[1, 2], "hello"[1..2], "hello".slice(/ll/), "hello"["ell"]].inspect
Nginx.echo ["abc".match(/b/)[0], "abc".match("b.")[0], "abc".match(/b/, 2).inspect, "abcabc".match(/b/, 2).begin(0), "abc".match(/(b)/) { |m| m[1] * 2 }].inspect
Nginx.echo ["abc".match?(/c$/), "abc".match?("z"), "abc".match?(/a/, 1)].inspect
Nginx.echo [:abc =~ /b/, :abc.match(/c/)[0], :abc.match?(/a/), nil =~ /a/].inspect
def try
  yield.inspect
rescue => e
  "#{e.class}: #{e.message}"
end
Nginx.echo try { "abc" =~ "b" }
Nginx.echo try { "abc".match(5) }
Nginx.echo try { "abc".scan(5) }
Nginx.echo try { /a/.match(5) }
--- request
GET /t
--- response_body
[["a1", "b2", "c3"], [["a", "1"], ["b", "2"]], ["", "b", "", ""], [".", "."]]
[["a1a1", "b2b2"], "a1b2"]
"x y"
[["a", "b", "c"], ["a", "b", "c"], ["a", "1", "b", "2", "c", "3"]]
[["a", "b"], ["a", "b", "", "", ""], ["a", "b,c"], ["a", "b", "c"], ["h", "i", "m", "o", "m"], []]
[["a", "b", "c"], ["a", "b"], ["a", "b"], ["a", "b-c"]]
["a", "b"]
[2, 3, nil, 1, 3]
["ll", "e", "ll", nil, "e", "el", "el", "ll", "ell"]
["b", "bc", "nil", 4, "bb"]
[true, false, false]
[1, "c", true, nil]
TypeError: wrong argument type String (expected Regexp)
TypeError: wrong argument type Integer (expected Regexp)
TypeError: wrong argument type Integer (expected Regexp)
TypeError: no implicit conversion of Integer into String
--- no_error_log
[error]



=== TEST 10: UTF-8 and binary text
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
Nginx.echo "héllo wörld".scan(/\w+/).join("|")
Nginx.echo "日本語".gsub(//, "-")
Nginx.echo "日本".split(//).join("|")
Nginx.echo "ÉCOLE".match?(/école/i)
Nginx.echo(("aé" =~ /é/).inspect)
bin = "a\xffb"
Nginx.echo [bin =~ /b/, bin.split(/\xff/n), bin.gsub(/\xff/n, "X")].inspect
Nginx.echo(("\xff\xfe" =~ /./).inspect)
--- request
GET /t
--- response_body
héllo|wörld
-日-本-語-
日|本
true
1
[2, ["a", "b"], "aXb"]
0
--- no_error_log
[error]



=== TEST 11: bad patterns raise RegexpError; an uncaught one is a 500, the worker lives on
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
    location = /bad { mruby_content_handler_code 'Regexp.new("(")'; }
--- user_files
>>> t.rb
def try
  yield.inspect
rescue => e
  "#{e.class}: #{e.message}"
end
Nginx.echo try { Regexp.new("(") }
Nginx.echo try { Regexp.new("*a") }
Nginx.echo try { Regexp.new("[a") }
Nginx.echo try { Regexp.new(1) }
Nginx.echo try { Regexp.new }
Nginx.echo try { Regexp.allocate.source }
Nginx.echo RegexpError.superclass
--- request eval
["GET /t", "GET /bad", "GET /t"]
--- error_code eval
[200, 500, 200]
--- response_body_like eval
["RegexpError: end pattern with unmatched parenthesis: /\\(/
RegexpError: target of repeat operator is not specified: /\\*a/
RegexpError: premature end of char-class: /\\[a/
TypeError: no implicit conversion of Integer into String
ArgumentError: wrong number of arguments \\(given 0, expected 1..3\\)
TypeError: uninitialized Regexp \\(Regexp\\)
StandardError
", "500 Internal Server Error", "^RegexpError"]
--- error_log
end pattern with unmatched parenthesis: /(/ (RegexpError)
--- no_error_log
[alert]



=== TEST 11b: a catastrophic search over request data fails with RegexpError (search-wide retry limit), the worker lives on
Each attempt of 17 (?:a|a) then (?!a)(?<!a) backtracks 2**17 times, under
Oniguruma's per-attempt limit; 1,000 start positions without a search-wide
limit ran 8 s in one C call and ended as a plain no-match.
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
    location = /raw { mruby_content_handler $TEST_NGINX_HTML_DIR/raw.rb; }
    location = /ok { mruby_content_handler_code 'Nginx.echo [Process.pid, ("b" * 10_000 + "abc") =~ /a(b)c/, $1].inspect'; }
--- user_files
>>> t.rb
text = "a" * Nginx::Request.new.var.arg_n.to_i
re = Regexp.new("(?:a|a)" * 17 + "(?!a)(?<!a)")
def try
  yield.inspect
rescue RegexpError => e
  "#{e.class}: #{e.message}"
end
Nginx.echo try { text =~ re }
Nginx.echo try { text.gsub(re, "x").size }
Nginx.echo try { text.split(re).size }
Nginx.echo try { ("a" * 40) =~ re }
Nginx.echo Process.pid
>>> raw.rb
("a" * 1000) =~ Regexp.new("(?:a|a)" * 17 + "(?!a)(?<!a)")
Nginx.echo "not reached"
--- request eval
["GET /t?n=1000", "GET /raw", "GET /ok"]
--- error_code eval
[200, 500, 200]
--- response_body_like eval
["^RegexpError: retry-limit-in-search over
RegexpError: retry-limit-in-search over
RegexpError: retry-limit-in-search over
nil
\\d+
\$", "500 Internal Server Error", "^\\[\\d+, 10000, \"b\"\\]\n\$"]
--- error_log
retry-limit-in-search over
--- no_error_log
[alert]
exited on signal
--- timeout: 15



=== TEST 11c: many slow matches in one gsub stop at the script's CPU budget
Each search backtracks about 14 * 2**17 times, under the search-wide limit,
then matches "b"; 300 of them in one gsub (one Ruby call) would take half a
minute. The budget is checked between the searches. (The timeout is for a
loaded machine: the budget is CPU time.)
--- config
    mruby_cpu_limit 1s;
    location = /t {
        mruby_content_handler_code '
            text = ("a" * 30 + "b") * 300
            begin
              Nginx.echo text.gsub(Regexp.new("(?:a|a){17}(?!a)(?<!a)|b"), "x").size
            rescue Exception => e
              Nginx.echo "rescued #{e.class}"
            end
        ';
    }
    location = /ok { mruby_content_handler_code 'Nginx.echo "a1b" =~ /\d/'; }
--- request eval
["GET /t", "GET /ok"]
--- error_code eval
[500, 200]
--- response_body_like eval
["500 Internal Server Error", "^1\n\$"]
--- error_log eval
qr/\[error\] .*CPU time limit exceeded: \d+ ms used, limit 1000 ms \(Nginx::CPULimitExceeded\)/
--- no_error_log
[alert]
--- timeout: 15



=== TEST 12: $~ and $1 do not leak into the next request
--- config
    location = /t {
        mruby_content_handler_code '
            Nginx.echo [$~, $1, $&].inspect
            "abc" =~ /(b)/
            Nginx.echo [$~[0], $1, $&].inspect
        ';
    }
--- request eval
["GET /t", "GET /t"]
--- response_body eval
["[nil, nil, nil]\n[\"b\", \"b\", \"b\"]\n", "[nil, nil, nil]\n[\"b\", \"b\", \"b\"]\n"]
--- no_error_log
[error]



=== TEST 13: Digest::MD5, SHA1, SHA256, SHA384, SHA512
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
Nginx.echo Digest::MD5.hexdigest("abc")
Nginx.echo Digest::SHA1.hexdigest("abc")
Nginx.echo Digest::SHA256.hexdigest("abc")
Nginx.echo Digest::SHA384.hexdigest("abc")[0, 32]
Nginx.echo Digest::SHA512.hexdigest("abc")[0, 32]
Nginx.echo [Digest::MD5.digest("abc").bytesize, Digest::SHA256.digest("").unpack1("H*")[0, 16]].inspect
Nginx.echo [Digest::MD5.base64digest("abc"), Digest::SHA256.new.base64digest].inspect
d = Digest::SHA256.new
d.update("a")
copy = d.dup
d << "b" << "c"
Nginx.echo d.hexdigest == Digest::SHA256.hexdigest("abc")
Nginx.echo d.hexdigest == d.to_s
Nginx.echo copy.hexdigest == Digest::SHA256.hexdigest("a")
Nginx.echo d.digest.bytesize
Nginx.echo [d.length, d.size, d.digest_length, d.block_length, Digest::SHA512.new.block_length].inspect
Nginx.echo d.hexdigest!
Nginx.echo d.hexdigest
Nginx.echo d.update("abc").digest! == Digest::SHA256.digest("abc")
m = Digest::MD5.new
m.update("x")
Nginx.echo m.hexdigest("abc")
Nginx.echo m.hexdigest
Nginx.echo m.reset.update("abc") == "900150983cd24fb0d6963f7d28e17f72"
Nginx.echo Digest::MD5.new.update("abc") == Digest::MD5.new.update("abc")
Nginx.echo m.inspect
Nginx.echo Digest::SHA1.new.is_a?(Digest::Base)
def try
  yield.inspect
rescue => e
  "#{e.class}: #{e.message}"
end
Nginx.echo try { Digest::MD5.hexdigest(nil) }
Nginx.echo try { Digest::SHA1.new.update(5) }
Nginx.echo try { Digest::MD5.hexdigest }
Nginx.echo try { Digest::Base.new.hexdigest }
--- request
GET /t
--- response_body
900150983cd24fb0d6963f7d28e17f72
a9993e364706816aba3e25717850c26c9cd0d89d
ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
cb00753f45a35e8bb5a03d699ac65007
ddaf35a193617abacc417349ae204131
[16, "e3b0c44298fc1c14"]
["kAFQmDzST7DWlj99KOF/cg==", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]
true
true
true
32
[32, 32, 32, 64, 128]
ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
true
900150983cd24fb0d6963f7d28e17f72
d41d8cd98f00b204e9800998ecf8427e
true
true
#<Digest::MD5: 900150983cd24fb0d6963f7d28e17f72>
true
TypeError: no implicit conversion of nil into String
TypeError: no implicit conversion of Integer into String
ArgumentError: wrong number of arguments (given 0, expected 1)
TypeError: uninitialized digest (Digest::Base)
--- no_error_log
[error]



=== TEST 14: ENV
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
ENV["GEMS_T"] = "v1"
Nginx.echo [ENV["GEMS_T"], ENV["GEMS_NONE"]].inspect
Nginx.echo [ENV.key?("GEMS_T"), ENV.has_key?("GEMS_T"), ENV.include?("GEMS_NONE"), ENV.member?("GEMS_T")].inspect
Nginx.echo [ENV.keys.include?("GEMS_T"), ENV.values.include?("v1"), ENV.to_h["GEMS_T"], ENV.to_hash.class].inspect
Nginx.echo [ENV.fetch("GEMS_T"), ENV.fetch("GEMS_NONE", "dflt"), ENV.fetch("GEMS_NONE") { |k| "blk #{k}" }].inspect
ENV.store("GEMS_T", "v2")
Nginx.echo [ENV.delete("GEMS_T"), ENV["GEMS_T"], ENV.delete("GEMS_T")].inspect
ENV["GEMS_U"] = "u"
Nginx.echo ENV.size == ENV.length && ENV.size == ENV.keys.size && ENV.size >= 1
ENV["GEMS_U"] = nil
Nginx.echo [ENV["GEMS_U"], ENV.to_s].inspect
def try
  yield.inspect
rescue => e
  "#{e.class}: #{e.message}"
end
Nginx.echo try { ENV.fetch("GEMS_NONE") }
Nginx.echo try { ENV[1] }
Nginx.echo try { ENV["A"] = 5 }
Nginx.echo try { ENV["A=B"] = "1" }
Nginx.echo try { ENV[""] = "1" }
Nginx.echo try { ENV["A"] = "a\0b" }
Nginx.echo try { ENV["A\0"] }
Nginx.echo [ENV["A=B"], KeyError.superclass].inspect
--- request
GET /t
--- response_body
["v1", nil]
[true, true, false, true]
[true, true, "v1", Hash]
["v1", "dflt", "blk GEMS_NONE"]
["v2", nil, nil]
true
[nil, "ENV"]
KeyError: key not found: "GEMS_NONE"
TypeError: no implicit conversion of Integer into String
TypeError: no implicit conversion of Integer into String
Errno::EINVAL: Invalid argument - setenv(A=B)
Errno::EINVAL: Invalid argument - setenv()
ArgumentError: bad environment variable value: contains null byte
ArgumentError: bad environment variable name: contains null byte
[nil, IndexError]
--- no_error_log
[error]



=== TEST 15: Process
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
Nginx.echo Process.pid == Process.pid && Process.pid > 1
Nginx.echo Process.ppid > 0 && Process.ppid != Process.pid
Nginx.echo [Process.uid, Process.euid, Process.gid, Process.egid].all? { |i| i.is_a?(Integer) && i >= 0 }
me = Process.pid
Nginx.echo [Process.kill(0, me), Process.kill(:CONT, me), Process.kill("SIGCONT", me, me), Process.kill("CONT", me), Process.kill(18, me)].inspect
def try
  yield.inspect
rescue => e
  "#{e.class}: #{e.message}"
end
Nginx.echo try { Process.kill(0, 2_000_000_000) }
Nginx.echo try { Process.kill("NOPE", me) }
Nginx.echo try { Process.kill(999, me) }
Nginx.echo try { Process.kill(0) }
Nginx.echo try { Process.kill(0, "x") }
Nginx.echo try { Process.kill(1.5, me) }
Nginx.echo [Errno::ESRCH.superclass, Errno::EPERM.ancestors.include?(StandardError), Errno::ESRCH::Errno].inspect
--- request
GET /t
--- response_body
true
true
true
[1, 1, 2, 1, 1]
Errno::ESRCH: No such process - kill
ArgumentError: unsupported signal 'SIGNOPE'
ArgumentError: unsupported signal '999'
ArgumentError: wrong number of arguments (given 1, expected 2+)
TypeError: pid must be an Integer, not String
ArgumentError: bad signal type Float
[SystemCallError, true, 3]
--- no_error_log
[error]



=== TEST 16: SecureRandom
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
Nginx.echo [SecureRandom.hex =~ /\A\h{32}\z/, SecureRandom.hex(4).size, SecureRandom.hex != SecureRandom.hex].inspect
Nginx.echo [SecureRandom.random_bytes.bytesize, SecureRandom.random_bytes(3).bytesize, SecureRandom.bytes(0)].inspect
Nginx.echo [SecureRandom.base64 =~ /\A[A-Za-z0-9+\/]{22}==\z/, SecureRandom.base64(3).size].inspect
Nginx.echo [SecureRandom.urlsafe_base64 =~ /\A[A-Za-z0-9_-]{22}\z/, SecureRandom.urlsafe_base64(16, true).end_with?("==")].inspect
Nginx.echo SecureRandom.uuid =~ /\A\h{8}-\h{4}-4\h{3}-[89ab]\h{3}-\h{12}\z/
Nginx.echo (1..200).map { SecureRandom.random_number(3) }.uniq.sort.inspect
f = SecureRandom.random_number
Nginx.echo [f.class, f >= 0 && f < 1, SecureRandom.random_number(2.5) < 2.5].inspect
Nginx.echo (1..100).all? { SecureRandom.random_number(5..6).between?(5, 6) && SecureRandom.random_number(5...6) == 5 }
Nginx.echo [SecureRandom.alphanumeric =~ /\A[A-Za-z0-9]{16}\z/, SecureRandom.alphanumeric(100).size, SecureRandom.rand(1)].inspect
def try
  yield.inspect
rescue => e
  "#{e.class}: #{e.message}"
end
Nginx.echo try { SecureRandom.hex(-1) }
Nginx.echo try { SecureRandom.hex("a") }
Nginx.echo try { SecureRandom.random_number("a") }
Nginx.echo try { SecureRandom.random_number(3..1) }
--- request
GET /t
--- response_body
[0, 8, true]
[16, 3, ""]
[0, 4]
[0, true]
0
[0, 1, 2]
[Float, true, true]
true
[0, 100, 0]
ArgumentError: negative string size (or size too big)
TypeError: size must be an Integer, not String
ArgumentError: invalid argument - "a"
ArgumentError: invalid argument - 3..1
--- no_error_log
[error]



=== TEST 17: StringIO
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
io = StringIO.new
Nginx.echo io.write("ab", 1)
io << "c"
io.print("d", "e")
io.puts("f", ["g"], nil)
io.puts
io.printf("%03d", 7)
Nginx.echo [io.string, io.pos, io.size, io.length, io.eof?].inspect
io.rewind
Nginx.echo [io.pos, io.read(3), io.gets, io.gets, io.read, io.read(2), io.read, io.eof?, io.getc].inspect
s = StringIO.new("hello\nworld\nx")
lines = []
s.each_line { |l| lines << l }
s.rewind
Nginx.echo [lines, s.readlines, s.lineno].inspect
s.pos = 6
Nginx.echo [s.read(5), s.tell, s.seek(-1, 2), s.read, s.seek(0), s.gets].inspect
Nginx.echo [StringIO.new("ab\ncd").gets(nil), StringIO.new("abcd").gets("c"), StringIO.new("abcd").gets(2)].inspect
Nginx.echo [StringIO.new("abc").tap { |x| x.write("X") }.string, StringIO.new("a").tap { |x| x.pos = 3; x.write("b") }.string.bytes].inspect
buf = "base"
w = StringIO.new(buf, "a")
w.write("+more")
Nginx.echo [buf, w.string.equal?(buf)].inspect
r = StringIO.new("abc")
Nginx.echo [r.read(0), r.read(10), r.read(1), r.read].inspect
def try
  yield.inspect
rescue => e
  "#{e.class}: #{e.message}"
end
c = StringIO.new("x")
c.close
Nginx.echo [c.closed?, try { c.read }, try { StringIO.new("").readline }, try { StringIO.new(5) }].inspect
--- request
GET /t
--- response_body
3
["ab1cdef\ng\n\n\n007", 15, 15, 15, true]
[0, "ab1", "cdef\n", "g\n", "\n\n007", nil, "", true, nil]
[["hello\n", "world\n", "x"], ["hello\n", "world\n", "x"], 3]
["world", 11, 0, "x", 0, "hello\n"]
["ab\ncd", "abc", "ab"]
["Xbc", [97, 0, 0, 98]]
["base+more", true]
["", "abc", nil, ""]
[true, "IOError: closed stream", "EOFError: end of file reached", "TypeError: no implicit conversion of Integer into String"]
--- no_error_log
[error]



=== TEST 18: many Regexp, MatchData and Digest objects are collected cleanly
--- config
    location = /t { mruby_content_handler $TEST_NGINX_HTML_DIR/t.rb; }
--- user_files
>>> t.rb
n = 0
2000.times do |i|
  re = Regexp.new("(\\d+)-#{i % 300}")
  m = re.match("x #{i}-#{i % 300}")
  n += 1 if m && m[1] == i.to_s && "a#{i}b".gsub(/\d/) { |d| d }.size > 0
  Digest::SHA1.new.update(i.to_s).dup.hexdigest
  JSON.parse(JSON.generate({"i" => [i, {"s" => "x" * 10}]}))
end
GC.start
Nginx.echo n
Nginx.echo("a-b-c".split(/-/).size)
--- request eval
["GET /t", "GET /t", "GET /t"]
--- response_body eval
["2000\n3\n", "2000\n3\n", "2000\n3\n"]
--- no_error_log
[error]
[alert]
