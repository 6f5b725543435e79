# Ruby parts of Nginx::Request, Headers_in and Server (ngx_mruby's mrblib).
class Nginx
  class Request
    def var
      @iv_var ||= Nginx::Var.new
    end

    def headers_in
      @iv_headers_in ||= Nginx::Headers_in.new
    end

    def headers_out
      @iv_headers_out ||= Nginx::Headers_out.new
    end

    def hostname
      var.host
    end

    def authority
      var.http_host
    end

    def filename
      var.request_filename
    end

    def user
      var.remote_user
    end

    def scheme
      var.scheme
    end

    def document_root
      Nginx::Server.new.document_root
    end

    # "a=1&b=2" => {"a"=>"1", "b"=>"2"}; a key without "=" maps to nil
    # (ngx_mruby misaligned the pairs there).
    def uri_args
      Nginx::Request.parse_query(args.to_s)
    end

    def uri_args=(params)
      raise ArgumentError, "uri_args= takes a Hash" unless params.is_a?(Hash)
      self.args = params.map { |k, v| "#{k}=#{v}" }.join("&")
    end

    def body
      get_body
    end

    # Kept for ngx_mruby compatibility: the body is read by
    # `mruby_enable_read_request_body on`, before the handler runs.
    def read_body
      Nginx::OK
    end

    def post_args
      Nginx::Request.parse_query(body.to_s)
    end

    def self.parse_query(query)
      result = {}
      query.split("&").each do |pair|
        next if pair.empty?
        key, value = pair.split("=", 2)
        result[key] = value
      end
      result
    end
  end

  class Headers_in
    def user_agent
      self["User-Agent"]
    end
  end
end
