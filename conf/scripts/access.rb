# Access handler: only requests with the right token pass; the name is
# handed to the content handler in a per-request global.
r = Nginx::Request.new
if r.headers_in["X-Token"] == "secret"
  $user = "operator"
else
  Nginx.return Nginx::HTTP_FORBIDDEN
end
