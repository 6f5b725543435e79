//! `Nginx::Async` and `Nginx::Async::HTTP` (the Ruby halves, which yield
//! the Fiber, are in mrblib/async.rb).

use mruby_sys::*;

use crate::api::{arg_bytes, arg_int, arity, current_request_state, ARGS_ANY};
use crate::host::wait::{last_response, start_sleep, start_subrequest};
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

/// `Nginx::Async.__sleep(ms)`: arms the timer the Fiber then waits for.
fn sleep(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let ms = arg_int(mrb, args[0], "sleep time")?;
    if ms <= 0 {
        return Err(RubyError::argument("sleep time must be a positive number of milliseconds"));
    }
    let (r, ctx) = current_request_state()?;
    start_sleep(r, ctx, ms as u64).map_err(RubyError::runtime)?;
    Ok(mrb.nil())
}

/// `Nginx::Async::HTTP.__sub_request(path, query)`
fn sub_request(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let path = arg_bytes(mrb, args[0], "path")?.to_vec();
    if !path.starts_with(b"/") {
        return Err(RubyError::argument("sub_request path must start with /"));
    }
    let query = match args.get(1) {
        Some(q) if !mrb.is_nil(*q) => Some(arg_bytes(mrb, *q, "query")?.to_vec()),
        _ => None,
    };
    let (r, ctx) = current_request_state()?;
    start_subrequest(r, ctx, &path, query.as_deref()).map_err(RubyError::runtime)?;
    Ok(mrb.nil())
}

/// `Nginx::Async::HTTP.__last_response` → `[status, headers, body]` or nil.
fn last(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let (_, ctx) = current_request_state()?;
    let Some(response) = last_response(ctx) else {
        return Ok(mrb.nil());
    };
    let headers = mrb.hash_new();
    for (name, value) in &response.headers {
        mrb.hash_set(headers, mrb.str(name), mrb.str(value));
    }
    let result = mrb.ary_new();
    mrb.ary_push(result, mrb.int(response.status));
    mrb.ary_push(result, headers);
    mrb.ary_push(result, mrb.str(&response.body));
    Ok(result)
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let async_class = mrb.define_class_under(nginx, c"Async");
    mrb.define_class_method(async_class, c"__sleep", ruby_fn!(sleep), ARGS_ANY);
    let http = mrb.define_class_under(async_class, c"HTTP");
    mrb.define_class_method(http, c"__sub_request", ruby_fn!(sub_request), ARGS_ANY);
    mrb.define_class_method(http, c"__last_response", ruby_fn!(last), ARGS_ANY);
}
