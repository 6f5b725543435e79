# mruby_init: define helpers once; workers inherit them through fork.
module Demo
  def self.greeting(name)
    "Hello #{name}\n"
  end
end
$boot_message = "booted"
