//! The one FFI error type of the Ruby API, and the one place where a Rust
//! error becomes a Ruby exception ([`raise`], reached through
//! `Mrb::finish` by every Rust-defined method's trampoline).

use core::ffi::CStr;

use mruby_sys::*;

use super::value::Mrb;

/// A Ruby exception to raise at an API boundary.
#[derive(Debug)]
pub struct RubyError {
    /// Which exception class to raise (or an exception to raise again).
    pub kind: ErrorKind,
    /// The message shown to the script (unused by `Reraise`).
    pub message: String,
}

/// The exception classes the API raises.
#[derive(Debug, Clone, Copy)]
pub enum ErrorKind {
    Argument,
    Type,
    Runtime,
    /// The class at a constant path (`"JSON::ParserError"`, `"Errno::ESRCH"`);
    /// StandardError when this VM has no such class.
    Named(&'static str),
    /// An exception caught from Ruby code (through `Mrb::call`), raised
    /// again unchanged.
    Reraise(mrb_value),
}

impl RubyError {
    pub fn argument(message: impl Into<String>) -> Self {
        RubyError { kind: ErrorKind::Argument, message: message.into() }
    }
    pub fn type_error(message: impl Into<String>) -> Self {
        RubyError { kind: ErrorKind::Type, message: message.into() }
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        RubyError { kind: ErrorKind::Runtime, message: message.into() }
    }
    /// An exception of the class at `class` (a constant path).
    pub fn new(class: &'static str, message: impl Into<String>) -> Self {
        RubyError { kind: ErrorKind::Named(class), message: message.into() }
    }
    /// The exception `Mrb::call` caught, to raise again unchanged.
    pub fn reraise(exc: mrb_value) -> Self {
        RubyError { kind: ErrorKind::Reraise(exc), message: String::new() }
    }
}

/// What an API method returns before it crosses back into mruby.
pub type RubyResult = Result<mrb_value, RubyError>;

/// Raises `err` in Ruby. Never returns: mruby longjmps to the nearest
/// rescue point, so the error is taken apart (and its String dropped)
/// before; callers must hold no values with destructors.
pub(crate) fn raise(mrb: Mrb, err: RubyError) -> ! {
    let class_path: &str = match err.kind {
        ErrorKind::Reraise(exc) => {
            drop(err);
            // SAFETY: live VM; exc is an exception object.
            unsafe { mrb_exc_raise(mrb.as_ptr(), exc) };
            unreachable!("mrb_exc_raise returned")
        }
        ErrorKind::Argument => "ArgumentError",
        ErrorKind::Type => "TypeError",
        ErrorKind::Runtime => "RuntimeError",
        ErrorKind::Named(path) => path,
    };
    let class = match err.kind {
        ErrorKind::Named(_) => {
            mrb.class_get(class_path).or_else(|| mrb.class_get("StandardError")).unwrap_or_else(|| mrb.object_class())
        }
        _ => standard_class(mrb, class_path),
    };
    let message = mrb.str(err.message.as_bytes());
    drop(err);
    // SAFETY: live VM; class is a live exception class.
    unsafe {
        let exc = mrb_exc_new_str(mrb.as_ptr(), class, message);
        mrb_exc_raise(mrb.as_ptr(), exc);
    }
    unreachable!("mrb_exc_raise returned")
}

/// One of the standard exception classes, which always exist.
fn standard_class(mrb: Mrb, name: &str) -> *mut RClass {
    let name: &CStr = match name {
        "ArgumentError" => c"ArgumentError",
        "TypeError" => c"TypeError",
        _ => c"RuntimeError",
    };
    // SAFETY: live VM; the standard exception classes always exist.
    unsafe { mrb_class_get(mrb.as_ptr(), name.as_ptr()) }
}
