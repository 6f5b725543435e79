# Conveniences on top of src/api/core/gems/regexp.rs, match_data.rs and
# string.rs (where Regexp, MatchData and the String methods taking a Regexp
# are): public methods only, each built on public methods.
class Regexp
  def self.compile(*args)
    new(*args)
  end

  # $~, or its group n.
  def self.last_match(n = nil)
    m = $~
    n.nil? || m.nil? ? m : m[n]
  end

  # One Regexp matching any of the patterns (Strings are taken literally).
  def self.union(*patterns)
    patterns = patterns[0] if patterns.size == 1 && patterns[0].is_a?(Array)
    return new("(?!)") if patterns.empty?
    return patterns[0] if patterns.size == 1 && patterns[0].is_a?(Regexp)
    new(patterns.map { |p| p.is_a?(Regexp) ? p.to_s : escape(p) }.join("|"))
  end
end

class MatchData
  def values_at(*indexes)
    indexes.map { |i| self[i] }
  end
end

class NilClass
  def =~(_other)
    nil
  end
end

class Symbol
  def =~(other)
    to_s =~ other
  end

  def match(*args, &block)
    to_s.match(*args, &block)
  end

  def match?(*args)
    to_s.match?(*args)
  end
end
