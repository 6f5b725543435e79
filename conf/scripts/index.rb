# The demo's front page: what each location of conf/nginx.conf shows.
# t/005-demo-conf.t checks that every exact location is listed here and
# that every listed path answers.
LOCATIONS = [
  ["/hello",         "an inline content handler"],
  ["/cached",        "a file script compiled once (cache)"],
  ["/live?name=Ada", "a file script recompiled when the file changes"],
  ["/private",       "an access handler in Ruby (403; send X-Token: secret)"],
  ["/set",           "mruby_set feeding add_header and return"],
  ["/old",           "a rewrite handler redirecting to /hello"],
  ["/logged",        "a log handler (a line in the error log)"],
  ["/info.rb",       "mruby_add_handler: a .rb file run as the script"],
  ["/plain",         "no Ruby at all"],
  ["/upstream/x",    "proxy_pass; a header filter reads Nginx::Upstream"],
  ["/filtered",      "header and body filters"],
  ["/echo-body",     "the request body (POST something)"],
  ["/async",         "Nginx::Async.sleep and a subrequest, without blocking"],
  ["/rack",          "a Rack application"],
  ["/vlimit-status", "vlimit counters as JSON (?format=prometheus)"],
  ["/metrics",       "vlimit counters in the Prometheus text format"],
]

host = Nginx::Request.new.headers_in["Host"] || "127.0.0.1:8080"
Nginx::Request.new.content_type = "text/plain"
Nginx.rputs "ngx-mruby-rs demo (conf/nginx.conf), e.g. curl http://#{host}/hello\n\n"
LOCATIONS.each { |path, what| Nginx.rputs format("  %-16s %s\n", path, what) }
