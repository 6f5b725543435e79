# The Ruby API of a tenant's Ruby runner, built from the FastCGI
# parameters of the request (this process has no nginx in it): read-only
# Nginx::Request, Nginx::Var, Nginx::Headers_in; Nginx.rputs, Nginx.echo,
# Nginx.return, Nginx::Headers_out; Rack's `run app`. Loaded once per
# runner, into the runner's own VM: nothing here is shared between owners.

module Nginx
  OK = 0
  DECLINED = -5
  HTTP_OK = 200
  HTTP_MOVED_TEMPORARILY = 302
  HTTP_BAD_REQUEST = 400
  HTTP_FORBIDDEN = 403
  HTTP_NOT_FOUND = 404
  HTTP_INTERNAL_SERVER_ERROR = 500
  HTTP_SERVICE_UNAVAILABLE = 503

  READ_ONLY = 'is read-only in a tenant runner'

  class << self
    def rputs(text)
      @__out << text.to_s
      nil
    end

    def echo(text)
      @__out << text.to_s << "\n"
      nil
    end

    def return(status)
      status = Integer(status)
      raise ArgumentError, "invalid status #{status}" unless status >= 100 && status <= 999
      @__status = status
    end

    def __begin
      @__out = []
      @__status = nil
      @__headers_out = {}
      @__app = nil
    end

    def __headers_out
      @__headers_out
    end

    def __app=(app)
      @__app = app
    end

    # The response as a CGI-style header block and body.
    def __finish
      if @__app
        status, headers, body = @__app.call(Nginx::Request.new.__rack_env)
        status = Integer(status)
        headers.each { |name, value| @__headers_out[name.to_s] = value.to_s }
        text = ''
        body.each { |part| text << part.to_s }
        body.close if body.respond_to?(:close)
      else
        status = @__status || 200
        text = @__out.join
      end
      head = "Status: #{status}\r\n"
      @__headers_out['Content-Type'] ||= 'text/html' unless @__headers_out.keys.any? { |k| k.downcase == 'content-type' }
      @__headers_out.each do |name, value|
        # no Regexp in the runner's VM; CR/LF would split the response
        if ["\r", "\n", ':'].any? { |c| name.include?(c) } || ["\r", "\n"].any? { |c| value.include?(c) }
          raise ArgumentError, "invalid response header #{name.inspect}"
        end
        head << "#{name}: #{value}\r\n"
      end
      head << "\r\n" << text
    end
  end

  class Request
    def initialize
      @params = $__ngx_params
    end

    def uri
      @params['DOCUMENT_URI'] || @params['SCRIPT_NAME']
    end
    def unparsed_uri
      @params['REQUEST_URI']
    end
    def method
      @params['REQUEST_METHOD']
    end
    def args
      @params['QUERY_STRING']
    end
    def hostname
      @params['HTTP_HOST'] || @params['SERVER_NAME']
    end
    def protocol
      @params['SERVER_PROTOCOL']
    end
    def filename
      @params['SCRIPT_FILENAME']
    end
    def body
      $__ngx_body
    end
    def headers_in
      Headers_in.new
    end
    def headers_out
      Headers_out.new
    end
    def var
      Var.new
    end

    %w[uri= unparsed_uri= method= args= filename= content_type=].each do |setter|
      define_method(setter) { |_| raise NotImplementedError, "Nginx::Request##{setter} #{READ_ONLY}" }
    end

    def __rack_env
      env = {}
      @params.each { |k, v| env[k] = v }
      env['PATH_INFO'] ||= uri
      env['rack.input'] = $__ngx_body
      env['rack.url_scheme'] = @params['HTTPS'] ? 'https' : 'http'
      env
    end
  end

  class Var
    def method_missing(name, *args)
      name = name.to_s
      raise NotImplementedError, "Nginx::Var##{name} #{READ_ONLY}" if name.end_with?('=')
      $__ngx_params[name.upcase]
    end

    def respond_to_missing?(_name, _private = false)
      true
    end

    def [](name)
      $__ngx_params[name.to_s.upcase]
    end

    def set(*)
      raise(NotImplementedError, "Nginx::Var#set #{READ_ONLY}")
    end
  end

  class Headers_in
    def [](name)
      $__ngx_params['HTTP_' + name.to_s.upcase.tr('-', '_')]
    end

    def all
      headers = {}
      $__ngx_params.each do |key, value|
        next unless key.start_with?('HTTP_')
        headers[key[5..].split('_').map(&:capitalize).join('-')] = value
      end
      headers
    end

    def []=(*)
      raise NotImplementedError, "Nginx::Headers_in#[]= #{READ_ONLY}"
    end
    def delete(*)
      raise(NotImplementedError, "Nginx::Headers_in#delete #{READ_ONLY}")
    end
  end

  class Headers_out
    def [](name)
      Nginx.__headers_out[name.to_s]
    end
    def []=(name, value)
      Nginx.__headers_out[name.to_s] = value.to_s
    end
    def delete(name)
      Nginx.__headers_out.delete(name.to_s)
    end
    def all
      Nginx.__headers_out.dup
    end
  end
end

# Rack: `run app` in the script hands the application to the runner.
def run(app)
  raise ArgumentError, 'run needs an object that responds to call' unless app.respond_to?(:call)
  Nginx.__app = app
end
