# Rack-style API (ngx_mruby's rack-based-api gem): `run app` calls
# app.call(env) and turns [status, headers, body] into the response.
class Nginx
  class Rack
    LOGGER_LEVELS = {
      fatal: Nginx::LOG_EMERG, emerg: Nginx::LOG_EMERG, alert: Nginx::LOG_ALERT,
      crit: Nginx::LOG_CRIT, error: Nginx::LOG_ERR, warn: Nginx::LOG_WARN,
      notice: Nginx::LOG_NOTICE, info: Nginx::LOG_INFO, debug: Nginx::LOG_DEBUG
    }

    # rack.logger: logger.info("msg") or, as Ruby's Logger, logger.info {
    # "msg" } and logger.info("progname") { "msg" }; lines go to error_log.
    class Logger
      LOGGER_LEVELS.each do |name, level|
        define_method(name) do |*args, &block|
          if args.size > 1
            raise ArgumentError, "wrong number of arguments (given #{args.size}, expected 0..1)"
          end
          message =
            if block
              text = block.call.to_s
              args.empty? ? text : "#{args[0]}: #{text}"
            elsif args.empty?
              raise ArgumentError, "rack.logger.#{name} needs a message or a block"
            else
              args[0].to_s
            end
          Nginx.log(level, message)
          true
        end
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

    # Checks the whole response against the Rack contract before anything
    # reaches nginx: a broken response is a TypeError (500, one log line
    # saying what was wrong), never a half-sent or garbled reply.
    def self.respond(response)
      unless response.is_a?(Array) && response.size == 3
        raise TypeError, "a Rack app must return [status, headers, body], got #{brief(response)}"
      end
      status, headers, body = response
      # nil keeps the status nginx would send (ngx_mruby's rack-based-api)
      unless status.nil? || (status.is_a?(Integer) && status >= 100 && status <= 999)
        raise TypeError, "Rack status must be an Integer in 100-999, got #{brief(status)}"
      end
      pairs = header_pairs(headers)
      unless body.respond_to?(:each)
        raise TypeError, "Rack body must respond to each, got #{brief(body)}"
      end
      out = Nginx::Headers_out.new
      pairs.each do |name, value|
        out[name.to_s] = value.is_a?(Array) ? value.map(&:to_s) : value.to_s
      end
      body.each { |part| Nginx.rputs part.to_s }
      body.close if body.respond_to?(:close)
      Nginx.return status unless status.nil?
    end

    # A Hash, or (as ngx_mruby accepts) an Array of [name, value] pairs;
    # header names are Strings or Symbols.
    def self.header_pairs(headers)
      pairs =
        if headers.is_a?(Hash)
          headers.to_a
        elsif headers.is_a?(Array) && headers.all? { |pair| pair.is_a?(Array) && pair.size == 2 }
          headers
        else
          raise TypeError, "Rack headers must be a Hash, got #{brief(headers)}"
        end
      pairs.each do |name, _value|
        unless name.is_a?(String) || name.is_a?(Symbol)
          raise TypeError, "Rack header names must be Strings, got #{brief(name)}"
        end
      end
      pairs
    end

    # `Class value` with the value cut short, for the error line.
    def self.brief(value)
      text = value.inspect
      text = text[0, 60] + "..." if text.size > 63
      "#{value.class} #{text}"
    end
  end
end

module Kernel
  # `run app`: the Rack entry point of a content handler.
  def run(app)
    Nginx::Rack.respond(app.call(Nginx::Rack.env(Nginx::Request.new)))
  end
end
