//! `Nginx::Stream`: constants, logging, module name, `add_listener`.

use mruby_sys::*;

use crate::api::core::nginx::LOG_LEVELS;
use crate::api::{arg_int, arity, to_s_bytes, ARGS_ANY};
use crate::host::{self, Host, ListenSpec};
use crate::ngx_util::log;
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

/// What `Nginx::Stream.module_name` returns (ngx_mruby's stream module).
const MODULE_NAME: &[u8] = b"ngx_mruby-stream-module";

/// `Nginx::Stream.log(level, msg)` / `errlogger`: to the session's log (nginx
/// adds client and server), or to the cycle's log from the process hooks.
fn log_message(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 2, 2)?;
    let level = arg_int(mrb, args[0], "log level")?;
    if !(0..=8).contains(&level) {
        return Err(RubyError::argument(format!("invalid log level {level} (Nginx::Stream::LOG_STDERR..LOG_DEBUG)")));
    }
    let message = to_s_bytes(mrb, args[1])?;
    // the connection's log (nginx adds client and server), or the cycle's in a process hook
    let target = host::current().map(Host::log).ok_or_else(|| RubyError::runtime("no script is running"))?;
    log(target, level as u32, &String::from_utf8_lossy(&message));
    Ok(mrb.nil())
}

fn module_name(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(mrb.str(MODULE_NAME))
}

/// `Nginx::Stream.add_listener({address: "127.0.0.1:12345" | "12345"})`:
/// only in `mruby_stream_server_context_code`, while the server is parsed.
fn add_listener(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let server = match host::current() {
        Some(Host::ServerConfig(server)) => server,
        _ => {
            return Err(RubyError::runtime(
                "Nginx::Stream.add_listener can only be called in mruby_stream_server_context_code",
            ))
        }
    };
    let options = args[0];
    if !mrb.is_hash(options) {
        return Err(RubyError::type_error(format!(
            "add_listener takes a Hash ({{address: \"host:port\"}}), not {}",
            mrb.class_name(options)
        )));
    }
    let by_symbol = mrb.hash_get(options, mrb.sym_value("address"));
    let address = if mrb.is_nil(by_symbol) { mrb.hash_get(options, mrb.str(b"address")) } else { by_symbol };
    let address = mrb
        .str_bytes(address)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| RubyError::argument("add_listener: :address must be a non-empty String"))?
        .to_vec();
    server.add_listener(&ListenSpec { address, ssl: false, http2: false })?;
    Ok(mrb.nil())
}

/// ngx_mruby's stream constants.
const INT_CONSTANTS: &[(&core::ffi::CStr, i64)] =
    &[(c"OK", 0), (c"ERROR", -1), (c"AGAIN", -2), (c"BUSY", -3), (c"DONE", -4), (c"DECLINED", -5), (c"ABORT", -6)];

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let stream = mrb.define_class_under(nginx, c"Stream");
    for (name, value) in INT_CONSTANTS.iter().chain(LOG_LEVELS) {
        mrb.define_const(stream, name, mrb.int(*value));
    }
    mrb.define_class_method(stream, c"log", ruby_fn!(log_message), ARGS_ANY);
    mrb.define_class_method(stream, c"errlogger", ruby_fn!(log_message), ARGS_ANY);
    mrb.define_class_method(stream, c"module_name", ruby_fn!(module_name), ARGS_ANY);
    mrb.define_class_method(stream, c"add_listener", ruby_fn!(add_listener), ARGS_ANY);
}
