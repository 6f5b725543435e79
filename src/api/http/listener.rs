//! `Nginx::Server#add_listener`: adds a listening socket to the server block
//! being parsed, like a `listen` directive. Only inside
//! `mruby_server_context_handler_code`; RuntimeError elsewhere. This file
//! reads the Ruby arguments; `conf/listen.rs` adds the socket.

use mruby_sys::*;
use ngx::ffi::{NGX_HTTP_SSL, NGX_HTTP_V2};

use crate::api::{arity, ARGS_ANY};
use crate::host::{self, Context, Host, ListenSpec};
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

/// An option of the Hash, by Symbol or String key (nil when absent).
fn option(mrb: Mrb, hash: mrb_value, name: &str) -> mrb_value {
    let by_symbol = mrb.hash_get(hash, mrb.sym_value(name));
    if mrb.is_nil(by_symbol) {
        return mrb.hash_get(hash, mrb.str(name.as_bytes()));
    }
    by_symbol
}

/// `add_listener({address: "127.0.0.1:8081" | "8081", ssl: bool, http2: bool})`
fn add_listener(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let misplaced = || RubyError::runtime("add_listener can be called only in mruby_server_context_handler_code");
    let Host::ServerConfig(server) = host::require_or(Context::SERVER_CONFIG, misplaced)? else {
        return Err(misplaced());
    };
    let options = args[0];
    if !mrb.is_hash(options) {
        return Err(RubyError::type_error(format!(
            "add_listener takes a Hash ({{address: \"host:port\", ssl: bool, http2: bool}}), not {}",
            mrb.class_name(options)
        )));
    }
    let address = mrb
        .str_bytes(option(mrb, options, "address"))
        .filter(|a| !a.is_empty())
        .ok_or_else(|| RubyError::argument("add_listener: :address must be a non-empty String"))?
        .to_vec();
    let ssl = mrb.truthy(option(mrb, options, "ssl"));
    let http2 = mrb.truthy(option(mrb, options, "http2"));
    if ssl && NGX_HTTP_SSL == 0 {
        return Err(RubyError::runtime("add_listener: ssl requires ngx_http_ssl_module"));
    }
    if http2 && NGX_HTTP_V2 == 0 {
        return Err(RubyError::runtime("add_listener: http2 requires ngx_http_v2_module"));
    }
    server.add_listener(&ListenSpec { address, ssl, http2 })?;
    Ok(mrb.nil())
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let server = mrb.define_class_under(nginx, c"Server");
    mrb.define_method(server, c"add_listener", ruby_fn!(add_listener), ARGS_ANY);
}
