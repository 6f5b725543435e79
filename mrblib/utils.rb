# Nginx::Utils: percent-encoding helpers (ngx_mruby's mrblib).
class Nginx
  module Utils
    UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"

    def self.escape(str)
      out = ""
      str.to_s.each_byte do |b|
        c = b.chr
        out << (UNRESERVED.include?(c) ? c : format("%%%02X", b))
      end
      out
    end

    def self.encode_parameters(params, delimiter = "&", quote = nil)
      params.map do |key, value|
        value = quote ? "#{quote}#{escape(value)}#{quote}" : escape(value)
        "#{escape(key)}=#{value}"
      end.join(delimiter)
    end
  end
end
