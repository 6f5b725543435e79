# JSON: the Ruby side of src/api/core/gems/json.rs (#to_json).
class Object
  # JSON text of the object: Hash, Array, String, Symbol, numbers, true,
  # false and nil as themselves, anything else as its to_s.
  def to_json(*_args)
    JSON.generate(self)
  end
end
