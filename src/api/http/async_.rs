//! `Nginx::Async` and `Nginx::Async::HTTP`: wait without blocking the
//! worker. Each method arms what it waits for and yields the handler's
//! Fiber in one call (`host::wait::wait`); there is no internal half a
//! script could call on its own. `Response` is in mrblib/async.rb.

use mruby_sys::*;

use crate::api::{arg_bytes, arg_int, arity, request_ptr, request_state, ARGS_ANY};
use crate::host::wait::{self, response_value, Wait};
use crate::host::{self, Context};
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

/// The longest sleep (nginx timers compare times as signed 32-bit deltas on some builds).
const MAX_SLEEP_MS: i64 = i32::MAX as i64;

/// The running script's context (where it may or may not wait).
fn context() -> Context {
    host::current().map(|h| h.context()).unwrap_or(Context::INIT)
}

/// `Nginx::Async.sleep(ms)`: waits `ms` milliseconds; returns nil.
fn sleep(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let ms = arg_int(mrb, args[0], "sleep time")?;
    if !(1..=MAX_SLEEP_MS).contains(&ms) {
        return Err(RubyError::argument(format!(
            "sleep time must be a positive number of milliseconds (at most {MAX_SLEEP_MS})"
        )));
    }
    let (r, ctx) = (request_ptr()?, request_state()?);
    wait::wait(mrb, r, ctx, context(), Wait::Sleep(ms as ngx::ffi::ngx_msec_t))
}

/// `Nginx::Async::HTTP.sub_request(path, query = nil)`: runs `path` as an
/// in-memory subrequest and returns its `Response` when it is done.
fn sub_request(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let path = arg_bytes(mrb, args[0], "path")?.to_vec();
    if !path.starts_with(b"/") {
        return Err(RubyError::argument("sub_request path must start with /"));
    }
    let query = match args.get(1).copied().or_else(|| crate::api::keyword_hash(mrb)).as_ref() {
        Some(q) if mrb.is_hash(*q) => {
            let utils = mrb.class_get("Nginx::Utils").ok_or_else(|| RubyError::runtime("Nginx::Utils is missing"))?;
            // SAFETY: a class pointer is a live object of this VM.
            let utils = unsafe { mrbsys_obj_value(utils.cast()) };
            let encoded = mrb.call(utils, "encode_parameters", &[*q]).map_err(RubyError::reraise)?;
            Some(arg_bytes(mrb, encoded, "query")?.to_vec())
        }
        Some(q) if !mrb.is_nil(*q) => Some(arg_bytes(mrb, *q, "query")?.to_vec()),
        _ => None,
    };
    let (r, ctx) = (request_ptr()?, request_state()?);
    wait::wait(mrb, r, ctx, context(), Wait::Subrequest { path: &path, query: query.as_deref() })
}

/// `Nginx::Async::HTTP.last_response` → the last finished subrequest's `Response`, or nil.
fn last_response(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(response_value(mrb, request_state()?))
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let async_class = mrb.define_class_under(nginx, c"Async");
    mrb.define_class_method(async_class, c"sleep", ruby_fn!(sleep), ARGS_ANY);
    let http = mrb.define_class_under(async_class, c"HTTP");
    mrb.define_class_method(http, c"sub_request", ruby_fn!(sub_request), ARGS_ANY);
    mrb.define_class_method(http, c"last_response", ruby_fn!(last_response), ARGS_ANY);
}
