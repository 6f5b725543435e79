# Ruby parts of the Nginx class (ngx_mruby's mrblib, kept compatible).
class Nginx
  def self.var
    Nginx::Var.new
  end
end

module Kernel
  def get_server_class
    Nginx
  end
end
