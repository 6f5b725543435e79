# Nginx::Async: wait without blocking the worker. The handler's script runs
# in a Fiber (any script that mentions Nginx::Async does); these methods arm
# a timer or start a subrequest in Rust, then yield until nginx resumes us.
class Nginx
  class Async
    def self.sleep(ms)
      __sleep(ms)
      Fiber.yield
      nil
    end

    class HTTP
      class Response
        attr_reader :status, :headers, :body

        def initialize(status, headers, body)
          @status = status
          @headers = headers
          @body = body
        end
      end

      def self.sub_request(path, query = nil)
        query = Nginx::Utils.encode_parameters(query) if query.is_a?(Hash)
        __sub_request(path, query)
        Fiber.yield
        last_response
      end

      def self.last_response
        response = __last_response
        response && Response.new(*response)
      end
    end
  end
end
