# Userdata (matsumotory/mruby-userdata): a per-worker Hash, shared between
# phases and requests, and inherited from mruby_init. Kept outside the
# global variable table so per-request global cleanup never touches it.
class Userdata
  STORE = {}

  def initialize(key = "mrb_userdata_default_key")
    @key = key.to_s
    STORE[@key] ||= {}
  end

  def method_missing(name, *args)
    attr = name.to_s
    if attr.end_with?("=")
      STORE[@key][attr[0..-2].to_sym] = args[0]
    else
      STORE[@key][name]
    end
  end

  def respond_to_missing?(_name, _include_private = false)
    true
  end
end
