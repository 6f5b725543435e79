//! `Nginx` core: logging, versions, constants, globals; what every host
//! can use (the response methods are in `api/http/response.rs`).

use mruby_sys::*;
use ngx::ffi::*;

use crate::api::{arg_int, arity, to_s_bytes, ARGS_ANY};
use crate::host;
use crate::ngx_util::log;
use crate::ruby_fn;
use crate::vm::{Mrb, RubyResult};

/// The ngx_mruby API level this module implements.
pub const COMPAT_VERSION: &str = "2.7.0";

/// `Nginx.log(level, msg)` / `Nginx.errlogger`: to the request's log, or to
/// the cycle's log from init hooks.
fn log_message(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 2, 2)?;
    let level = arg_int(mrb, args[0], "log level")?;
    let message = to_s_bytes(mrb, args[1])?;
    let message = String::from_utf8_lossy(&message);
    // SAFETY: the host's cycle is live while its script runs.
    let target_log = host::current().map_or_else(|| unsafe { (*host::cycle()).log }, |h| h.log());
    if !(0..=8).contains(&level) {
        log(target_log, NGX_LOG_ERR, &format!("Nginx.log: invalid log level {level}: {message}"));
        return Ok(mrb.nil());
    }
    log(target_log, level as u32, &message);
    Ok(mrb.nil())
}

fn cstr_value(mrb: Mrb, value: &core::ffi::CStr) -> mrb_value {
    mrb.str(value.to_bytes())
}

fn module_name(mrb: Mrb, _self: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(b"ngx_mruby"))
}

fn module_version(mrb: Mrb, _self: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(COMPAT_VERSION.as_bytes()))
}

fn nginx_version(mrb: Mrb, _self: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(cstr_value(mrb, NGINX_VERSION))
}

fn configure(mrb: Mrb, _self: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(cstr_value(mrb, NGX_CONFIGURE))
}

/// `Nginx.remove_global_variable(:$name)` → the remaining globals.
fn remove_global_variable(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let sym = match mrb.to_sym(args[0]) {
        Some(sym) => Some(sym),
        // a name never interned names no global: look it up, do not create it
        None => mrb.existing_sym(crate::api::arg_bytes(mrb, args[0], "name")?),
    };
    if let Some(sym) = sym {
        crate::vm::remove_global(mrb, sym);
    }
    // SAFETY: live VM; Kernel#global_variables does not raise.
    Ok(unsafe { mrb_f_global_variables(mrb.as_ptr(), mrb.nil()) })
}

/// ngx_mruby's constants on `Nginx` (TRUE/FALSE are Strings, as there).
/// nginx's log levels, `Nginx::LOG_*` and `Nginx::Stream::LOG_*` alike.
pub const LOG_LEVELS: &[(&core::ffi::CStr, i64)] = &[
    (c"LOG_STDERR", 0),
    (c"LOG_EMERG", 1),
    (c"LOG_ALERT", 2),
    (c"LOG_CRIT", 3),
    (c"LOG_ERR", 4),
    (c"LOG_WARN", 5),
    (c"LOG_NOTICE", 6),
    (c"LOG_INFO", 7),
    (c"LOG_DEBUG", 8),
];

const INT_CONSTANTS: &[(&core::ffi::CStr, i64)] = &[
    (c"OK", 0),
    (c"ERROR", -1),
    (c"AGAIN", -2),
    (c"BUSY", -3),
    (c"DONE", -4),
    (c"DECLINED", -5),
    (c"ABORT", -6),
    (c"HTTP_CONTINUE", 100),
    (c"HTTP_SWITCHING_PROTOCOLS", 101),
    (c"HTTP_PROCESSING", 102),
    (c"HTTP_OK", 200),
    (c"HTTP_CREATED", 201),
    (c"HTTP_ACCEPTED", 202),
    (c"HTTP_NO_CONTENT", 204),
    (c"HTTP_PARTIAL_CONTENT", 206),
    (c"HTTP_SPECIAL_RESPONSE", 300),
    (c"HTTP_MOVED_PERMANENTLY", 301),
    (c"HTTP_MOVED_TEMPORARILY", 302),
    (c"HTTP_SEE_OTHER", 303),
    (c"HTTP_NOT_MODIFIED", 304),
    (c"HTTP_TEMPORARY_REDIRECT", 307),
    (c"HTTP_BAD_REQUEST", 400),
    (c"HTTP_UNAUTHORIZED", 401),
    (c"HTTP_FORBIDDEN", 403),
    (c"HTTP_NOT_FOUND", 404),
    (c"HTTP_NOT_ALLOWED", 405),
    (c"HTTP_REQUEST_TIME_OUT", 408),
    (c"HTTP_CONFLICT", 409),
    (c"HTTP_LENGTH_REQUIRED", 411),
    (c"HTTP_PRECONDITION_FAILED", 412),
    (c"HTTP_REQUEST_ENTITY_TOO_LARGE", 413),
    (c"HTTP_REQUEST_URI_TOO_LARGE", 414),
    (c"HTTP_UNSUPPORTED_MEDIA_TYPE", 415),
    (c"HTTP_RANGE_NOT_SATISFIABLE", 416),
    (c"HTTP_TOO_MANY_REQUESTS", 429),
    (c"HTTP_CLOSE", 444),
    (c"HTTP_NGINX_CODES", 494),
    (c"HTTP_REQUEST_HEADER_TOO_LARGE", 494),
    (c"HTTPS_CERT_ERROR", 495),
    (c"HTTPS_NO_CERT", 496),
    (c"HTTP_TO_HTTPS", 497),
    (c"HTTP_CLIENT_CLOSED_REQUEST", 499),
    (c"HTTP_INTERNAL_SERVER_ERROR", 500),
    (c"HTTP_NOT_IMPLEMENTED", 501),
    (c"HTTP_BAD_GATEWAY", 502),
    (c"HTTP_SERVICE_UNAVAILABLE", 503),
    (c"HTTP_GATEWAY_TIME_OUT", 504),
    (c"HTTP_INSUFFICIENT_STORAGE", 507),
];

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    mrb.define_const(nginx, c"TRUE", mrb.str(b"1"));
    mrb.define_const(nginx, c"FALSE", mrb.str(b"0"));
    for (name, value) in INT_CONSTANTS.iter().chain(LOG_LEVELS) {
        mrb.define_const(nginx, name, mrb.int(*value));
    }
    mrb.define_class_method(nginx, c"log", ruby_fn!(log_message), ARGS_ANY);
    mrb.define_class_method(nginx, c"errlogger", ruby_fn!(log_message), ARGS_ANY);
    mrb.define_class_method(nginx, c"module_name", ruby_fn!(module_name), ARGS_ANY);
    mrb.define_class_method(nginx, c"module_version", ruby_fn!(module_version), ARGS_ANY);
    mrb.define_class_method(nginx, c"nginx_version", ruby_fn!(nginx_version), ARGS_ANY);
    mrb.define_class_method(nginx, c"server_version", ruby_fn!(nginx_version), ARGS_ANY);
    mrb.define_class_method(nginx, c"configure", ruby_fn!(configure), ARGS_ANY);
    mrb.define_class_method(nginx, c"remove_global_variable", ruby_fn!(remove_global_variable), ARGS_ANY);
}
