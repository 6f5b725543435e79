# Nginx::Async: wait without blocking the worker. The handler's script runs
# in a Fiber (any script that mentions Nginx::Async does); `sleep` and
# `HTTP.sub_request` are Rust methods that arm what they wait for and yield
# in one call (src/api/http/async_.rs). Only the response type is Ruby.
class Nginx
  class Async
    class HTTP
      class Response
        attr_reader :status, :headers, :body

        def initialize(status, headers, body)
          @status = status
          @headers = headers
          @body = body
        end
      end
    end
  end
end
