//! Top-level methods ngx_mruby adds to `Kernel`.

use mruby_sys::*;

use crate::api::ARGS_ANY;
use crate::ruby_fn;
use crate::vm::{Mrb, RubyResult};

/// `server_name`: "NGINX" (mod_mruby portability).
fn server_name(mrb: Mrb, _s: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(b"NGINX"))
}

pub fn init(mrb: Mrb) {
    // SAFETY: live VM; the Kernel module always exists.
    let kernel = unsafe { mrbsys_kernel_module(mrb.as_ptr()) };
    mrb.define_module_function(kernel, c"server_name", ruby_fn!(server_name), ARGS_ANY);
}
