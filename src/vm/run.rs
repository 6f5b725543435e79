//! Running compiled bytecode and turning an exception into one log line.

use mruby_sys::*;

use super::cpu_limit::{with_stop_lifted, RunGuard};
use super::memory;
use super::value::Mrb;
use super::Vm;

/// Ruby code of the resumer proc (see [`resume`]). It runs with `self` =
/// `[fiber]` (first resume) or `[fiber, value]` (`Fiber.yield` returns
/// `value` in the script), so nothing passes through a global.
pub const RESUMER_CODE: &str =
    "__fiber = self[0]; [(self.size > 1 ? __fiber.resume(self[1]) : __fiber.resume), __fiber.alive?]";

/// A Ruby exception, rendered for `error_log`.
#[derive(Debug)]
pub struct ScriptFailure {
    /// `file:line: message (Class), backtrace: [...]`, on one line.
    pub report: String,
}

/// Runs `proc_` at top level. The pending exception is always cleared and
/// the GC arena restored, so nothing leaks into the next run; the result is
/// kept in the arena for the caller, who restores it (`Mrb::arena_scope`).
pub(crate) fn run(mrb: Mrb, proc_: *mut RProc) -> Result<mrb_value, ScriptFailure> {
    execute(mrb, proc_, mrb.top_self(), true)
}

/// Runs a script whose value nobody reads (phase handlers): the arena is
/// left exactly as it was.
pub fn run_for_effect(vm: &Vm, proc_: *mut RProc, suspendable: bool) -> Result<(), ScriptFailure> {
    if suspendable {
        // the Fiber and the values kept for a caller are not needed here
        return vm.mrb().arena_scope(|| run_to_end(vm, proc_, true).map(|_| ()));
    }
    execute(vm.mrb(), proc_, vm.mrb().top_self(), false).map(|_| ())
}

fn execute(mrb: Mrb, proc_: *mut RProc, self_: mrb_value, keep_result: bool) -> Result<mrb_value, ScriptFailure> {
    let _budget = RunGuard::enter(mrb);
    let arena = mrb.arena_save();
    // SAFETY: live VM; reads whether a VM run is already in progress.
    let nested = unsafe { !(*mrb.as_ptr()).jmp.is_null() };
    let outcome = if nested {
        // Inside another VM run (a C method running a script), an exception
        // would longjmp to that run's handler, past our callers' cleanup
        // (the host guard, the request's globals): catch it here.
        // SAFETY: inside protect; proc_ is GC-registered bytecode of this VM.
        mrb.protect(|mrb| unsafe { mrb_top_run(mrb.as_ptr(), proc_, self_, 0) })
    } else {
        // At top level an exception stops the run and is left pending.
        // SAFETY: live VM; proc_ is GC-registered bytecode of this VM.
        let value = unsafe { mrb_top_run(mrb.as_ptr(), proc_, self_, 0) };
        mrb.pending_exception().map_or(Ok(value), Err)
    };
    let result = outcome.map_err(|exc| ScriptFailure {
        report: memory::explain_refusal(mrb.as_ptr(), &mrb.class_name(exc))
            .unwrap_or_else(|| with_stop_lifted(mrb, || describe_exception(mrb, exc))),
    });
    mrb.clear_exception();
    mrb.arena_restore(arena);
    if let (true, Ok(v)) = (keep_result, &result) {
        let v = *v;
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

/// How a (possibly suspendable) script run ended.
pub enum Completion {
    /// The script finished with this value.
    Finished(mrb_value),
    /// The script waits (sleep, subrequest); resume this Fiber later.
    Suspended(mrb_value),
}

/// Runs a script: directly, or for a suspendable script by creating its
/// Fiber and resuming it once.
pub fn start(vm: &Vm, proc_: *mut RProc, suspendable: bool) -> Result<Completion, ScriptFailure> {
    let value = run(vm.mrb(), proc_)?;
    if !suspendable {
        return Ok(Completion::Finished(value));
    }
    resume(vm, value, None)
}

/// Resumes a suspended script's Fiber. The resume is made by Ruby code
/// (the VM's resumer proc), not by a C call: mruby 3.1 corrupts its call
/// stack when a Fiber resumed from C yields back.
/// `value` is what the script's pending `Fiber.yield` returns (none on the
/// first resume, which starts the script).
pub fn resume(vm: &Vm, fiber: mrb_value, value: Option<mrb_value>) -> Result<Completion, ScriptFailure> {
    let mrb = vm.mrb();
    let arena = mrb.arena_save();
    let resumer_self = mrb.ary_new();
    mrb.ary_push(resumer_self, fiber);
    if let Some(value) = value {
        mrb.ary_push(resumer_self, value);
    }
    let outcome = execute(mrb, vm.resumer(), resumer_self, true);
    let result = outcome.map(|pair| {
        let value = mrb.ary_ref(pair, 0);
        if mrb.truthy(mrb.ary_ref(pair, 1)) {
            Completion::Suspended(fiber)
        } else {
            Completion::Finished(value)
        }
    });
    mrb.arena_restore(arena);
    if let Ok(Completion::Finished(v) | Completion::Suspended(v)) = &result {
        // SAFETY: live VM; keeps the value alive until the caller's next arena restore.
        unsafe { mrb_gc_protect(mrb.as_ptr(), *v) };
    }
    result
}

/// Runs a script where waiting is impossible (init hooks, mruby_set,
/// filters, log phase): a script that tries to wait is an error.
pub fn run_to_end(vm: &Vm, proc_: *mut RProc, suspendable: bool) -> Result<mrb_value, ScriptFailure> {
    match start(vm, proc_, suspendable)? {
        Completion::Finished(value) => Ok(value),
        Completion::Suspended(_) => Err(ScriptFailure {
            report: String::from("Nginx::Async can only wait in rewrite, access and content handlers"),
        }),
    }
}

/// The execution context of a Fiber object (what `mrb->c` is while the
/// Fiber runs).
pub fn fiber_context(fiber: mrb_value) -> *mut mrb_context {
    // SAFETY: `fiber` is a Fiber object (the value a suspendable script's
    // bytecode returns); its context exists once Fiber.new initialized it.
    unsafe { (*(mrbsys_ptr(fiber) as *mut RFiber)).cxt }
}

/// Why a C method running now cannot `Fiber.yield` back to the resumer of
/// the script whose Fiber context is `script_fiber`, or `None` when it can.
/// The same checks `mrb_fiber_yield` makes before it raises, made before
/// anything is armed.
pub fn yield_blocker(mrb: Mrb, script_fiber: *mut mrb_context) -> Option<&'static str> {
    // SAFETY: live VM; the current context and its call-info stack are valid
    // while a method of this VM runs.
    unsafe {
        let c = (*mrb.as_ptr()).c;
        if script_fiber.is_null() || c != script_fiber {
            return Some("from another Fiber (one the script made, or a script that does not name Nginx::Async)");
        }
        if (*c).prev.is_null() {
            return Some("while the handler's Fiber was not resumed");
        }
        let mut ci = (*c).ci;
        while ci >= (*c).cibase {
            if (*ci).cci > 0 {
                return Some("inside Ruby code called back from C (a to_s, or a block, that a C method calls)");
            }
            ci = ci.sub(1);
        }
    }
    None
}
