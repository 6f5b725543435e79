//! Running compiled bytecode and turning an exception into one log line.

use mruby_sys::*;

use super::value::Mrb;

/// A Ruby exception, rendered for `error_log`.
#[derive(Debug)]
pub struct ScriptFailure {
    /// `file:line: message (Class), backtrace: [...]`, on one line.
    pub report: String,
}

/// Runs `proc_` at top level. The pending exception is always cleared and
/// the GC arena restored, so nothing leaks into the next run.
pub fn run(mrb: Mrb, proc_: *mut RProc) -> Result<mrb_value, ScriptFailure> {
    let arena = mrb.arena_save();
    // SAFETY: live VM; proc_ is GC-registered bytecode of this VM.
    let value = unsafe { mrb_top_run(mrb.as_ptr(), proc_, mrb.top_self(), 0) };
    let result = match mrb.pending_exception() {
        Some(exc) => Err(ScriptFailure { report: describe_exception(mrb, exc) }),
        None => Ok(value),
    };
    mrb.clear_exception();
    mrb.arena_restore(arena);
    if let Ok(v) = result {
        // keep the result alive in the arena for the caller's conversion
        // SAFETY: live VM; protects v until the caller's next arena restore.
        unsafe { mrb_gc_protect(mrb.as_ptr(), v) };
    }
    result
}

/// `path:line: message (Class), backtrace: [a, b]`
pub fn describe_exception(mrb: Mrb, exc: mrb_value) -> String {
    let class = mrb.class_name(exc);
    let message = mrb
        .call(exc, "message", &[])
        .ok()
        .and_then(|m| mrb.str_bytes(m).map(|b| String::from_utf8_lossy(b).into_owned()))
        .unwrap_or_default();
    // SAFETY: live VM; exc is an exception object.
    let backtrace = unsafe { mrb_exc_backtrace(mrb.as_ptr(), exc) };
    let frames: Vec<String> = (0..mrb.ary_len(backtrace))
        .filter_map(|i| mrb.str_bytes(mrb.ary_ref(backtrace, i)).map(|b| String::from_utf8_lossy(b).into_owned()))
        .collect();
    let location = frames
        .first()
        .map(|frame| frame.split(":in ").next().unwrap_or(frame).to_owned())
        .unwrap_or_else(|| String::from("(unknown)"));
    let message = message.replace(['\n', '\r'], " ");
    format!("{location}: {message} ({class}), backtrace: [{}]", frames.join(", "))
}
