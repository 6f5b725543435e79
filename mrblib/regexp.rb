# Regexp, MatchData and the String methods that take a Regexp: the Ruby
# side of src/api/gems/regexp.rs, for the forms that call blocks. Offsets
# are byte offsets, like mruby's String#[].
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

  # The pattern a String method was given: a Regexp, or a String compiled
  # as a pattern (String#match) or taken literally (String#scan).
  def self.__from(pattern, literal = false)
    return pattern if pattern.is_a?(Regexp)
    unless pattern.is_a?(String) || pattern.is_a?(Symbol)
      raise TypeError, "wrong argument type #{pattern.class} (expected Regexp)"
    end
    new(literal ? escape(pattern) : pattern.to_s)
  end

  # re.match(str, pos = 0) -> MatchData or nil (sets $~); with a block,
  # yields the MatchData and returns the block's value.
  def match(str, pos = 0, &block)
    m = __match(str, pos)
    m && block ? block.call(m) : m
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

class String
  alias __mruby_sub sub
  alias __mruby_gsub gsub
  alias __mruby_sub! sub!
  alias __mruby_gsub! gsub!
  alias __mruby_split split
  alias __mruby_index index
  alias __mruby_aref []

  def =~(other)
    raise TypeError, "wrong argument type String (expected Regexp)" if other.is_a?(String)
    other =~ self
  end

  def match(pattern, pos = 0, &block)
    Regexp.__from(pattern).match(self, pos, &block)
  end

  def match?(pattern, pos = 0)
    Regexp.__from(pattern).match?(self, pos)
  end

  # sub/gsub with a Regexp (or a Hash replacement): replacement String with
  # \1 \k<name> \0 \& \` \' \\, Hash of match => replacement, or a block
  # (with $~ set) whose value replaces the match.
  def sub(pattern, *rest, &block)
    return __mruby_sub(pattern, *rest, &block) unless pattern.is_a?(Regexp) || rest[0].is_a?(Hash)
    __regexp_sub(Regexp.__from(pattern, true), rest, block, false)
  end

  def gsub(pattern, *rest, &block)
    return __mruby_gsub(pattern, *rest, &block) unless pattern.is_a?(Regexp) || rest[0].is_a?(Hash)
    __regexp_sub(Regexp.__from(pattern, true), rest, block, true)
  end

  def sub!(pattern, *rest, &block)
    return __mruby_sub!(pattern, *rest, &block) unless pattern.is_a?(Regexp) || rest[0].is_a?(Hash)
    result = sub(pattern, *rest, &block)
    $~ ? replace(result) : nil
  end

  def gsub!(pattern, *rest, &block)
    return __mruby_gsub!(pattern, *rest, &block) unless pattern.is_a?(Regexp) || rest[0].is_a?(Hash)
    result = gsub(pattern, *rest, &block)
    $~ ? replace(result) : nil
  end

  def __regexp_sub(re, rest, block, global)
    if rest.size > 1
      raise ArgumentError, "wrong number of arguments (given #{rest.size + 1}, expected 1..2)"
    end
    if rest.empty?
      return to_enum(global ? :gsub : :sub, re) unless block
    else
      return re.__replace(self, rest[0], global) unless rest[0].is_a?(Hash)
      table = rest[0]
    end
    matches = global ? re.__scan(self) : [re.__match(self)].compact
    out = ""
    last = 0
    matches.each do |m|
      out << byteslice(last, m.begin(0) - last)
      if table
        out << table[m[0]].to_s
      else
        Regexp.__set_last_match(m)
        out << block.call(m[0]).to_s
      end
      last = m.end(0)
    end
    out << byteslice(last, bytesize - last)
    Regexp.__set_last_match(matches.last)
    out
  end

  # scan(pattern) -> every match (the groups' texts when the pattern has
  # groups); with a block, yields each and returns self.
  def scan(pattern, &block)
    matches = Regexp.__from(pattern, true).__scan(self)
    if block
      matches.each do |m|
        Regexp.__set_last_match(m)
        block.call(m.size > 1 ? m.captures : m[0])
      end
      Regexp.__set_last_match(matches.last)
      self
    else
      Regexp.__set_last_match(matches.last)
      matches.map { |m| m.size > 1 ? m.captures : m[0] }
    end
  end

  def split(*args, &block)
    pattern = args[0]
    return __mruby_split(*args, &block) unless pattern.is_a?(Regexp)
    fields = pattern.__split(self, args[1] || 0)
    return fields unless block
    fields.each { |f| block.call(f) }
    self
  end

  def index(pattern, *rest)
    return __mruby_index(pattern, *rest) unless pattern.is_a?(Regexp)
    m = pattern.__match(self, rest[0] || 0)
    m && m.begin(0)
  end

  # str[regexp] / str[regexp, group]; other indexes as mruby's String#[].
  def [](index, length = (no_length = true; nil))
    unless index.is_a?(Regexp)
      return no_length ? __mruby_aref(index) : __mruby_aref(index, length)
    end
    m = index.__match(self)
    return nil unless m
    no_length ? m[0] : m[length]
  end
  alias slice []
end
