# StringIO: an IO-like reader and writer over a String, with CRuby's
# behaviour for the common calls. Positions are byte offsets.
class StringIO
  # Positions and lengths past this raise ArgumentError: padding a String
  # that far cannot fit a worker's memory cap, and would end in NoMemoryError.
  MAX_SIZE = 1 << 31

  attr_reader :lineno

  # StringIO.new(string = "", mode = nil): reads and writes `string` in
  # place; mode "a" appends every write.
  def initialize(string = "", mode = nil)
    raise TypeError, "no implicit conversion of #{string.class} into String" unless string.is_a?(String)
    @string = string
    @pos = 0
    @lineno = 0
    @closed = false
    @append = mode.to_s.start_with?("a")
  end

  def string
    @string
  end

  def string=(string)
    @string = string
    @pos = 0
    @lineno = 0
    string
  end

  def pos
    @pos
  end
  alias tell pos

  def pos=(pos)
    raise ArgumentError, "negative position" if pos < 0
    raise ArgumentError, "position too large" if pos > MAX_SIZE
    @pos = pos
  end

  def lineno=(n)
    @lineno = n
  end

  def rewind
    @pos = 0
    @lineno = 0
    0
  end

  # seek(offset, whence = 0): whence 0 from the start, 1 from pos, 2 from
  # the end.
  def seek(offset, whence = 0)
    base = case whence
           when 0, :SET then 0
           when 1, :CUR then @pos
           when 2, :END then size
           else raise ArgumentError, "unknown whence: #{whence}"
           end
    raise ArgumentError, "negative position" if base + offset < 0
    raise ArgumentError, "position too large" if base + offset > MAX_SIZE
    @pos = base + offset
    0
  end

  def eof?
    @pos >= @string.bytesize
  end
  alias eof eof?

  def size
    @string.bytesize
  end
  alias length size

  # read -> the rest ("" at the end); read(n) -> up to n bytes, nil at the
  # end (read(0) is "").
  def read(length = nil, outbuf = nil)
    check_open
    rest = eof? ? "" : @string.byteslice(@pos, size - @pos)
    if length.nil?
      data = rest
    else
      raise ArgumentError, "negative length #{length} given" if length < 0
      if length == 0
        data = ""
      elsif rest.empty?
        outbuf.replace("") if outbuf
        return nil
      else
        data = rest.byteslice(0, length)
      end
    end
    @pos += data.bytesize
    outbuf ? outbuf.replace(data) : data
  end

  # gets(sep = "\n", limit = nil) -> the next line with its separator, nil
  # at the end; gets(nil) reads the rest.
  def gets(sep = "\n", limit = nil)
    check_open
    if sep.is_a?(Integer)
      limit = sep
      sep = "\n"
    end
    return nil if eof?
    stop = sep.nil? || sep.empty? ? nil : @string.index(sep, @pos)
    len = stop ? stop + sep.bytesize - @pos : size - @pos
    len = limit if limit && limit >= 0 && limit < len
    line = @string.byteslice(@pos, len)
    @pos += line.bytesize
    @lineno += 1
    line
  end

  def readline(*args)
    line = gets(*args)
    raise EOFError, "end of file reached" if line.nil?
    line
  end

  def each_line(*args, &block)
    return to_enum(:each_line, *args) unless block
    while (line = gets(*args))
      block.call(line)
    end
    self
  end
  alias each each_line

  def readlines(*args)
    lines = []
    each_line(*args) { |line| lines << line }
    lines
  end

  def getc
    check_open
    return nil if eof?
    c = @string.byteslice(@pos, 1)
    @pos += 1
    c
  end

  # write(obj, ...) -> bytes written; overwrites at pos (appends at the end).
  def write(*objs)
    check_open
    written = 0
    objs.each do |obj|
      s = obj.to_s
      next if s.empty?
      @pos = size if @append
      @string << ("\0" * (@pos - size)) if @pos > size
      if @pos == size
        @string << s
      else
        @string[@pos, s.bytesize] = s
      end
      @pos += s.bytesize
      written += s.bytesize
    end
    written
  end
  alias syswrite write

  def <<(obj)
    write(obj)
    self
  end

  def print(*objs)
    objs.each { |obj| write(obj) }
    nil
  end

  def puts(*objs)
    if objs.empty?
      write("\n")
      return nil
    end
    objs.each do |obj|
      if obj.is_a?(Array)
        obj.empty? ? write("\n") : puts(*obj)
        next
      end
      s = obj.nil? ? "" : obj.to_s
      write(s)
      write("\n") unless s.end_with?("\n")
    end
    nil
  end

  def printf(format_string, *args)
    write(format(format_string, *args))
    nil
  end

  def putc(obj)
    write(obj.is_a?(Integer) ? (obj & 0xff).chr : obj.to_s.byteslice(0, 1))
    obj
  end

  def truncate(length)
    raise ArgumentError, "negative length" if length < 0
    raise ArgumentError, "length too large" if length > MAX_SIZE
    if length < size
      @string.replace(@string.byteslice(0, length))
    else
      @string << ("\0" * (length - size))
    end
    0
  end

  def close
    @closed = true
    nil
  end

  def closed?
    @closed
  end

  def flush
    self
  end

  def sync
    true
  end

  def sync=(value)
    value
  end

  def tty?
    false
  end
  alias isatty tty?

  def fileno
    nil
  end

  def binmode
    self
  end

  private

  def check_open
    raise IOError, "closed stream" if @closed
  end
end
