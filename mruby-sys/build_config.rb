# mruby as ngx-mruby-rs links it: built by mruby-sys/build.rs from Debian's
# mruby 3.3.0 source package (`make setup` fetches it into mruby-sys/vendor/).
#
# The gems are the ones Debian's libmruby ships (its default gembox) minus the
# command-line tools; MRB_USE_DEBUG_HOOK adds the code-fetch hook that
# `mruby_cpu_limit` uses to stop a runaway script. build.rs passes every `-D`
# of this build to bindgen and to the C shim, so `mrb_state` has one layout.
MRuby::Lockfile.disable

MRuby::Build.new do |conf|
  conf.toolchain :gcc
  conf.build_dir = ENV.fetch('MRUBY_SYS_BUILD_DIR')

  conf.gembox 'stdlib'      # pack, sprintf, time, struct, data, random
  conf.gembox 'stdlib-ext'  # *-ext, fiber, enumerator, set, objectspace, ...
  conf.gembox 'stdlib-io'   # io, socket, print, errno, dir
  conf.gembox 'math'        # math, rational, complex, cmath, bigint
  conf.gembox 'metaprog'    # metaprog, method, eval, compiler

  conf.cc.defines << 'MRB_USE_DEBUG_HOOK'
  conf.cc.flags = [%w(-std=gnu99 -O2 -g -fPIC -Wall -Wundef -Wwrite-strings)]
end
