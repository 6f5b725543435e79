//! `Nginx::Filter`: the response body inside `mruby_output_body_filter`.

use mruby_sys::*;

use crate::api::{arity, current_request, to_s_bytes, ARGS_ANY};
use crate::phases::filter::{filter_body, set_filter_output};
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

/// `body`: the whole response body the handler produced.
fn body(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let r = current_request()?;
    let body = filter_body(r)
        .ok_or_else(|| RubyError::runtime("Nginx::Filter is only available in mruby_output_body_filter"))?;
    Ok(mrb.str(body))
}

/// `body=(str)` / `output(str)`: the body to send instead.
fn set_body(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let bytes = to_s_bytes(mrb, args[0])?;
    let r = current_request()?;
    set_filter_output(r, bytes).map_err(RubyError::runtime)?;
    Ok(args[0])
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let filter = mrb.define_class_under(nginx, c"Filter");
    mrb.define_method(filter, c"body", ruby_fn!(body), ARGS_ANY);
    mrb.define_method(filter, c"body=", ruby_fn!(set_body), ARGS_ANY);
    mrb.define_method(filter, c"output", ruby_fn!(set_body), ARGS_ANY);
}
