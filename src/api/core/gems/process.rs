//! `Process`: the worker's ids and `kill`, through nix.

use core::str::FromStr;

use mruby_sys::*;
use nix::sys::signal::{self, Signal};
use nix::unistd::{self, Pid};

use super::{arg_name, errno_error, RubyError, RubyResult};
use crate::api::{arity, ARGS_ANY};
use crate::ruby_fn;
use crate::vm::Mrb;

fn pid(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(mrb.int(unistd::getpid().as_raw().into()))
}

fn ppid(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(mrb.int(unistd::getppid().as_raw().into()))
}

fn uid(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(mrb.int(unistd::getuid().as_raw().into()))
}

fn euid(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(mrb.int(unistd::geteuid().as_raw().into()))
}

fn gid(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(mrb.int(unistd::getgid().as_raw().into()))
}

fn egid(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(mrb.int(unistd::getegid().as_raw().into()))
}

/// A signal as `Process.kill` takes it: `15`, `"TERM"`, `"SIGTERM"`, `:TERM`;
/// a leading `-` (or a negative number) signals process groups. `None` is
/// signal 0, which only checks that the processes exist.
struct KillSignal {
    signal: Option<Signal>,
    group: bool,
}

fn kill_signal(mrb: Mrb, value: mrb_value) -> Result<KillSignal, RubyError> {
    if let Some(number) = mrb.to_int(value) {
        let group = number < 0;
        let number = i32::try_from(number.unsigned_abs()).map_err(|_| unsupported_signal(&number.to_string()))?;
        let signal = match number {
            0 => None,
            n => Some(Signal::try_from(n).map_err(|_| unsupported_signal(&n.to_string()))?),
        };
        return Ok(KillSignal { signal, group });
    }
    let name = arg_name(mrb, value)
        .map_err(|_| RubyError::new("ArgumentError", format!("bad signal type {}", mrb.class_name(value))))?;
    let name = String::from_utf8_lossy(&name).into_owned();
    let (group, bare) = match name.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, name.as_str()),
    };
    let bare = bare.strip_prefix("SIG").unwrap_or(bare);
    if bare == "EXIT" {
        return Ok(KillSignal { signal: None, group });
    }
    let signal = Signal::from_str(&format!("SIG{bare}")).map_err(|_| unsupported_signal(&format!("SIG{bare}")))?;
    Ok(KillSignal { signal: Some(signal), group })
}

fn unsupported_signal(name: &str) -> RubyError {
    RubyError::new("ArgumentError", format!("unsupported signal '{name}'"))
}

/// `Process.kill(signal, pid, ...)` → the number of processes signalled.
fn kill(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    if args.len() < 2 {
        return Err(RubyError::new(
            "ArgumentError",
            format!("wrong number of arguments (given {}, expected 2+)", args.len()),
        ));
    }
    let KillSignal { signal, group } = kill_signal(mrb, args[0])?;
    let mut pids = Vec::with_capacity(args.len() - 1);
    for value in &args[1..] {
        let pid = crate::api::arg_int(mrb, *value, "pid")?;
        let pid = i32::try_from(pid).map_err(|_| RubyError::new("RangeError", format!("pid {pid} out of range")))?;
        pids.push(Pid::from_raw(pid));
    }
    for pid in &pids {
        let sent = if group { signal::killpg(*pid, signal) } else { signal::kill(*pid, signal) };
        sent.map_err(|errno| errno_error(errno, "kill"))?;
    }
    Ok(mrb.int(pids.len() as i64))
}

pub fn init(mrb: Mrb) {
    let process = mrb.define_module(c"Process");
    mrb.define_module_function(process, c"pid", ruby_fn!(pid), ARGS_ANY);
    mrb.define_module_function(process, c"ppid", ruby_fn!(ppid), ARGS_ANY);
    mrb.define_module_function(process, c"uid", ruby_fn!(uid), ARGS_ANY);
    mrb.define_module_function(process, c"euid", ruby_fn!(euid), ARGS_ANY);
    mrb.define_module_function(process, c"gid", ruby_fn!(gid), ARGS_ANY);
    mrb.define_module_function(process, c"egid", ruby_fn!(egid), ARGS_ANY);
    mrb.define_module_function(process, c"kill", ruby_fn!(kill), ARGS_ANY);

    // CRuby's exception classes for failed system calls.
    // SAFETY: live VM; StandardError always exists.
    let standard_error = unsafe { mrb_class_get(mrb.as_ptr(), c"StandardError".as_ptr()) };
    let object = mrb.object_class();
    let system_call_error = super::define_class_under(mrb, object, c"SystemCallError", standard_error);
    let errno = mrb.define_module(c"Errno");
    for (name, number) in [(c"EPERM", 1), (c"ENOENT", 2), (c"ESRCH", 3), (c"EINVAL", 22)] {
        let class = super::define_class_under(mrb, errno, name, system_call_error);
        mrb.define_const(class, c"Errno", mrb.int(number));
    }
}
