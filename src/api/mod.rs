//! The Ruby API: one file per class. Each file ends with `init`, the table
//! binding Ruby method names to Rust functions; `mrblib/` adds the parts
//! written in Ruby. `core/` is what every host can use (Kernel, `Nginx`
//! constants/versions/log, the Ruby library in `gems/`); `http/` is what
//! an HTTP request (or handshake, or server block) offers; `stream/` is the
//! stream VM's API (`Nginx::Stream`), installed by [`stream::install`].
//!
//! A method learns whom it runs for from `host::current()` (or
//! [`with_request`] / `host::require(contexts)`), never from phase code.
//!
//! May import: `vm/`, `host/`, and the leaf services it exposes (`limits/`
//! for `Nginx::Vlimit`, `upstream/` for `Nginx::Upstream`). Never
//! `phases/`, `conf/` or `tls/` (`make check` greps for it).

pub mod core;
pub mod http;
pub mod stream;

use crate::host::{self, RequestCtx, RequestHost};
use crate::vm::{Mrb, RubyError, RubyResult};
use mruby_sys::*;

/// A Ruby method implemented in Rust: receiver and arguments in, value or
/// exception out.
pub type Method = fn(Mrb, mrb_value, &[mrb_value]) -> RubyResult;

/// Accept any number of arguments; each method checks its own.
pub const ARGS_ANY: mrb_aspec = 1 << 12;

/// The FFI edge of every Rust-defined method: collects the arguments, runs
/// `method`, and raises its error in Ruby once Rust values are dropped
/// (`Mrb::finish`, the one place a Rust error becomes a Ruby exception).
pub(crate) fn call_method(mrb: *mut mrb_state, self_: mrb_value, method: Method) -> mrb_value {
    let Some((mrb, args)) = method_call(mrb) else {
        // SAFETY: constructs an immediate value.
        return unsafe { mrbsys_nil_value() };
    };
    let result = method(mrb, self_, args);
    mrb.finish(result)
}

/// The VM and the arguments of the method call in progress (the shared
/// start of every Rust-defined method's FFI edge).
pub(crate) fn method_call<'a>(mrb: *mut mrb_state) -> Option<(Mrb, &'a [mrb_value])> {
    // SAFETY: mruby calls methods with its live state.
    let mrb = unsafe { Mrb::from_ptr(mrb) }?;
    // SAFETY: inside a method call, argv/argc describe the call's arguments.
    let args = unsafe {
        // what mrb_get_argc/argv return, read here for the common case (up to
        // 14 arguments on the stack after self); 15 means packed in an Array
        let ci = (*(*mrb.as_ptr()).c).ci;
        let (argc, argv) = match (*ci).n() {
            15 => (mrb_get_argc(mrb.as_ptr()) as usize, mrb_get_argv(mrb.as_ptr())),
            n => (usize::from(n), (*ci).stack.add(1).cast_const()),
        };
        if argc == 0 || argv.is_null() {
            &[][..]
        } else {
            ::core::slice::from_raw_parts(argv, argc)
        }
    };
    Some((mrb, args))
}

/// Keyword arguments given to the running C method, as the one Hash mruby
/// packs them into (`m "/x", a: 1`), or None (also for an empty `**{}`). Methods that take an options
/// Hash read it here too, as a Ruby method would get it as a last argument.
pub(crate) fn keyword_hash(mrb: Mrb) -> Option<mrb_value> {
    // SAFETY: called inside a C method call: its call info and stack are live;
    // with nk == 15 the Hash sits after self and the positional arguments
    // (one slot when they are packed, n == 15).
    unsafe {
        let ci = (*(*mrb.as_ptr()).c).ci;
        if (*ci).nk() != 15 {
            return None;
        }
        let n = (*ci).n();
        let at = 1 + if n == 15 { 1 } else { usize::from(n) };
        let hash = *(*ci).stack.add(at);
        // `**{}` (an Enumerator passes its empty keywords on) is none
        (mrb.is_hash(hash) && !mrb_hash_empty_p(mrb.as_ptr(), hash)).then_some(hash)
    }
}

/// Makes an `mrb_func_t` from a [`Method`].
#[macro_export]
macro_rules! ruby_fn {
    ($method:path) => {{
        unsafe extern "C" fn trampoline(
            mrb: *mut mruby_sys::mrb_state,
            self_: mruby_sys::mrb_value,
        ) -> mruby_sys::mrb_value {
            $crate::api::call_method(mrb, self_, $method)
        }
        Some(
            trampoline as unsafe extern "C" fn(*mut mruby_sys::mrb_state, mruby_sys::mrb_value) -> mruby_sys::mrb_value,
        )
    }};
}

/// Checks the argument count.
pub fn arity(args: &[mrb_value], min: usize, max: usize) -> Result<(), RubyError> {
    if args.len() < min || args.len() > max {
        let expected = if min == max { format!("{min}") } else { format!("{min}..{max}") };
        return Err(RubyError::argument(format!(
            "wrong number of arguments (given {}, expected {expected})",
            args.len()
        )));
    }
    Ok(())
}

/// A String argument (TypeError otherwise).
pub fn arg_bytes<'a>(mrb: Mrb, value: mrb_value, what: &str) -> Result<&'a [u8], RubyError> {
    mrb.str_bytes(value)
        .ok_or_else(|| RubyError::type_error(format!("{what} must be a String, not {}", mrb.class_name(value))))
}

/// An Integer argument (TypeError otherwise).
pub fn arg_int(mrb: Mrb, value: mrb_value, what: &str) -> Result<i64, RubyError> {
    mrb.to_int(value)
        .ok_or_else(|| RubyError::type_error(format!("{what} must be an Integer, not {}", mrb.class_name(value))))
}

/// `value.to_s` as bytes (copied, so later Ruby code cannot move them).
pub fn to_s_bytes(mrb: Mrb, value: mrb_value) -> Result<Vec<u8>, RubyError> {
    match mrb.to_s(value) {
        Ok(s) => Ok(mrb.str_bytes(s).unwrap_or_default().to_vec()),
        Err(exc) => Err(RubyError::runtime(format!("to_s failed: {}", mrb.inspect(exc)))),
    }
}

fn not_in_request() -> RubyError {
    RubyError::runtime("can't use this method at this phase. only use at request phase")
}

/// Runs `f` with the request the running script serves and its state; the
/// request is borrowed for `f` only ([`RequestHost::with_request`]), so no
/// `&mut` to it outlives the call: `f` copies out what it needs, and Ruby
/// values are built (and Ruby called) after. `f` must be `Send`, which the
/// VM handle (`Mrb`) and raw pointers are not: it cannot capture what it
/// would need to call back into Ruby while it holds the request.
/// RuntimeError outside a request.
#[inline]
pub fn with_request<R>(
    f: impl FnOnce(&mut ngx::ffi::ngx_http_request_t, &RequestCtx) -> R + Send,
) -> Result<R, RubyError> {
    let request = host::current_request().ok_or_else(not_in_request)?;
    Ok(request.with_request(|r| f(r, request.state())))
}

/// The state of the request the running script serves (output, status,
/// filter, waits: `Cell`s, so a shared reference may be held across Ruby
/// calls); RuntimeError outside a request.
#[inline]
pub fn request_state<'a>() -> Result<&'a RequestCtx, RubyError> {
    host::current_request().map(RequestHost::state).ok_or_else(not_in_request)
}

/// The request the running script serves, as the raw pointer nginx calls
/// take (to arm a wait on it); RuntimeError outside a request.
pub fn request_ptr() -> Result<*mut ngx::ffi::ngx_http_request_t, RubyError> {
    host::current_request_ptr().ok_or_else(not_in_request)
}

/// Ruby sources of the library every VM has (`mrblib/`).
const LIBRARY_MRBLIB: &[(&str, &str)] = &[
    ("mrblib/userdata.rb", include_str!("../../mrblib/userdata.rb")),
    ("mrblib/stringio.rb", include_str!("../../mrblib/stringio.rb")),
    ("mrblib/json.rb", include_str!("../../mrblib/json.rb")),
    ("mrblib/regexp.rb", include_str!("../../mrblib/regexp.rb")),
];

/// Ruby sources of the HTTP VM (`mrblib/`, the library's included), loaded
/// after the Rust classes.
const HTTP_MRBLIB: &[(&str, &str)] = &[
    ("mrblib/nginx.rb", include_str!("../../mrblib/nginx.rb")),
    ("mrblib/request.rb", include_str!("../../mrblib/request.rb")),
    ("mrblib/utils.rb", include_str!("../../mrblib/utils.rb")),
    ("mrblib/async.rb", include_str!("../../mrblib/async.rb")),
    ("mrblib/userdata.rb", include_str!("../../mrblib/userdata.rb")),
    ("mrblib/stringio.rb", include_str!("../../mrblib/stringio.rb")),
    ("mrblib/json.rb", include_str!("../../mrblib/json.rb")),
    ("mrblib/regexp.rb", include_str!("../../mrblib/regexp.rb")),
    ("mrblib/rack.rb", include_str!("../../mrblib/rack.rb")),
];

/// Defines the HTTP API in a fresh VM (the installer `Vm::open` receives).
pub fn install(mrb: Mrb) -> Result<(), String> {
    let arena = mrb.arena_save();
    core::nginx::init(mrb);
    http::response::init(mrb);
    http::request::init(mrb);
    http::var::init(mrb);
    http::vlimit::init(mrb);
    http::resource::init(mrb);
    core::cgroup::init(mrb);
    http::headers::init(mrb);
    http::connection::init(mrb);
    http::filter::init(mrb);
    http::async_::init(mrb);
    http::server::init(mrb);
    http::ssl::init(mrb);
    http::upstream::init(mrb);
    http::listener::init(mrb);
    core::kernel::init(mrb);
    core::gems::init(mrb);
    mrb.arena_restore(arena);
    load_mrblib(mrb, HTTP_MRBLIB)
}

/// Defines what every VM has, HTTP or stream: `Kernel#server_name`, the
/// Ruby library (`core/gems/`) and its Ruby halves (the stream VM's base).
pub fn install_library(mrb: Mrb) -> Result<(), String> {
    let arena = mrb.arena_save();
    core::kernel::init(mrb);
    core::gems::init(mrb);
    mrb.arena_restore(arena);
    load_mrblib(mrb, LIBRARY_MRBLIB)
}

/// Compiles and runs each Ruby source once.
pub fn load_mrblib(mrb: Mrb, sources: &[(&str, &str)]) -> Result<(), String> {
    let arena = mrb.arena_save();
    for (name, source) in sources {
        let proc_ = crate::vm::compile::compile(mrb, source.as_bytes(), name).map_err(|err| err.to_string())?;
        let result = crate::vm::run::run(mrb, proc_).map(|_| ()).map_err(|failure| failure.report);
        // SAFETY: proc_ was registered by compile(); it is not needed again.
        mrb.gc_unregister(unsafe { mrbsys_obj_value(proc_.cast()) });
        result?;
        mrb.arena_restore(arena);
    }
    Ok(())
}
