# Served by mruby_add_handler: GET /info.rb
Nginx.rputs "uri=#{Nginx::Request.new.uri} nginx=#{Nginx.nginx_version}\n"
