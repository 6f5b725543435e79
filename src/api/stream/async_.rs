//! `Nginx::Stream::Async.sleep(ms)`: waits without blocking the worker
//! (`host/stream.rs` arms the timer and yields the script's Fiber in one
//! call; the handler resumes it when the timer fires).

use mruby_sys::*;
use ngx::ffi::ngx_msec_t;

use super::current_session;
use crate::api::{arg_int, arity, ARGS_ANY};
use crate::host::stream;
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

/// Longer sleeps are a mistake (and nginx timers are 32-bit on some builds).
const MAX_SLEEP_MS: i64 = i32::MAX as i64;

fn sleep(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let ms = arg_int(mrb, args[0], "sleep time")?;
    if ms <= 0 || ms > MAX_SLEEP_MS {
        return Err(RubyError::argument(format!("sleep time must be 1..{MAX_SLEEP_MS} milliseconds, not {ms}")));
    }
    let state = current_session("Nginx::Stream::Async.sleep")?;
    stream::sleep(mrb, state, ms as ngx_msec_t)
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let stream = mrb.define_class_under(nginx, c"Stream");
    let async_class = mrb.define_class_under(stream, c"Async");
    mrb.define_class_method(async_class, c"sleep", ruby_fn!(sleep), ARGS_ANY);
}
