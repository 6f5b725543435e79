//! The Ruby library ngx_mruby users rely on beyond Debian's libmruby:
//! Process, JSON, Regexp, Digest, ENV, SecureRandom (StringIO is in mrblib).

use crate::vm::Mrb;

pub fn init(_mrb: Mrb) {}
