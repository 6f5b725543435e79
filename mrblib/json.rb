# JSON: the Ruby side of src/api/gems/json.rs (parse options, #to_json).
module JSON
  # JSON.parse(source, symbolize_names: false) -> Hash, Array or scalar.
  # Raises JSON::ParserError on malformed input.
  def self.parse(source, opts = nil)
    __parse(source, opts.is_a?(Hash) && opts[:symbolize_names])
  end

  def self.load(source)
    source.nil? ? nil : parse(source)
  end
end

class Object
  # JSON text of the object: Hash, Array, String, Symbol, numbers, true,
  # false and nil as themselves, anything else as its to_s.
  def to_json(*_args)
    JSON.generate(self)
  end
end
