# Rack-style API (ngx_mruby's rack-based-api gem): `run app` calls
# app.call(env) and turns [status, headers, body] into the response.
class Nginx
  class Rack
    LOGGER_LEVELS = {
      fatal: Nginx::LOG_EMERG, emerg: Nginx::LOG_EMERG, alert: Nginx::LOG_ALERT,
      crit: Nginx::LOG_CRIT, error: Nginx::LOG_ERR, warn: Nginx::LOG_WARN,
      notice: Nginx::LOG_NOTICE, info: Nginx::LOG_INFO, debug: Nginx::LOG_DEBUG
    }

    # rack.logger: logger.info("msg") etc. write to nginx's error_log
    class Logger
      LOGGER_LEVELS.each do |name, level|
        define_method(name) { |message| Nginx.log(level, message) }
      end
    end

    # rack.input: the request body, read on first use
    class LazyInput
      def initialize(request)
        @request = request
      end

      def io
        @io ||= StringIO.new(@request.body.to_s)
      end

      def read(*args) io.read(*args) end
      def gets(*args) io.gets(*args) end
      def each(&block) io.each_line(&block) end
      def rewind() io.rewind end
      def string() io.string end
    end

    def self.env(request)
      var = request.var
      conn = Nginx::Connection.new
      host, port = (request.headers_in["Host"] || var.server_name.to_s).split(":", 2)
      env = {
        "REQUEST_METHOD" => request.method,
        "SCRIPT_NAME" => "",
        "PATH_INFO" => request.uri,
        "REQUEST_URI" => request.unparsed_uri,
        "QUERY_STRING" => request.args.to_s,
        "SERVER_NAME" => host.to_s,
        "SERVER_ADDR" => conn.local_ip,
        "SERVER_PORT" => port || conn.local_port,
        "REMOTE_ADDR" => conn.remote_ip,
        "REMOTE_PORT" => conn.remote_port,
        "rack.url_scheme" => request.scheme,
        "rack.multithread" => false,
        "rack.multiprocess" => true,
        "rack.run_once" => false,
        "rack.hijack?" => false,
        "rack.logger" => Logger.new,
        "server.name" => server_name,
        "server.version" => Nginx.server_version
      }
      if request.method == "POST" || request.method == "PUT" || request.method == "PATCH"
        env["rack.input"] = LazyInput.new(request)
      end
      request.headers_in.all.each do |name, value|
        key = name.upcase.tr("-", "_")
        case key
        when "CONTENT_TYPE", "CONTENT_LENGTH" then env[key] = value
        else env["HTTP_#{key}"] = value
        end
      end
      env
    end

    def self.respond(response)
      unless response.is_a?(Array) && response.size == 3
        raise TypeError, "a Rack app must return [status, headers, body], got #{response.inspect}"
      end
      status, headers, body = response
      unless status.nil? || status.is_a?(Integer)
        raise TypeError, "Rack status must be an Integer, got #{status.class}"
      end
      unless headers.is_a?(Hash) || headers.is_a?(Array)
        raise TypeError, "Rack headers must be a Hash or an Array of pairs, got #{headers.class}"
      end
      out = Nginx::Headers_out.new
      headers.each do |name, value|
        out[name.to_s] = value.is_a?(Array) ? value.map(&:to_s) : value.to_s
      end
      unless body.respond_to?(:each)
        raise TypeError, "Rack body must respond to each, got #{body.class}"
      end
      body.each { |part| Nginx.rputs part.to_s }
      body.close if body.respond_to?(:close)
      Nginx.return status unless status.nil?
    end
  end
end

module Kernel
  # `run app`: the Rack entry point of a content handler.
  def run(app)
    Nginx::Rack.respond(app.call(Nginx::Rack.env(Nginx::Request.new)))
  end
end
