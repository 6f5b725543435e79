# A content handler script.
r = Nginx::Request.new
r.content_type = "text/plain"
Nginx.rputs Demo.greeting(r.var.arg_name || "World")
