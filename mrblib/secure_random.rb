# SecureRandom: the Ruby side of src/api/gems/secure_random.rs.
module SecureRandom
  # random_number(n = 0): Integer n > 0 -> 0...n, Float n > 0 -> [0, n),
  # an Integer Range -> a member of it, 0 or nil -> a Float in [0, 1).
  def self.random_number(n = 0)
    return __random_number(n) unless n.is_a?(Range)
    first = n.begin
    last = n.end
    if first.is_a?(Integer) && last.is_a?(Integer)
      span = last - first + (n.exclude_end? ? 0 : 1)
      raise ArgumentError, "invalid argument - #{n.inspect}" if span <= 0
      first + __random_number(span)
    elsif first.is_a?(Numeric) && last.is_a?(Numeric) && last > first
      first + __random_number(0) * (last - first)
    else
      raise ArgumentError, "invalid argument - #{n.inspect}"
    end
  end

  def self.rand(n = 0)
    random_number(n)
  end
end
