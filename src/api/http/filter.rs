//! `Nginx::Filter`: the response body inside `mruby_output_body_filter`.

use mruby_sys::*;

use crate::api::{arity, request_state, to_s_bytes, with_request, ARGS_ANY};
use crate::host::filter;
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

/// `body`: the whole response body the handler produced.
fn body(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let ctx = request_state()?;
    let body = filter::body(ctx).map_err(RubyError::runtime)?;
    Ok(mrb.str(body))
}

/// `body=(str)` / `output(str)`: the body to send instead.
fn set_body(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let bytes = to_s_bytes(mrb, args[0])?;
    with_request(|r, ctx| filter::set_output(r.pool, ctx, bytes))?.map_err(RubyError::runtime)?;
    Ok(args[0])
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let class = mrb.define_class_under(nginx, c"Filter");
    mrb.define_method(class, c"body", ruby_fn!(body), ARGS_ANY);
    mrb.define_method(class, c"body=", ruby_fn!(set_body), ARGS_ANY);
    mrb.define_method(class, c"output", ruby_fn!(set_body), ARGS_ANY);
}
