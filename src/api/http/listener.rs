//! `Nginx::Server#add_listener`: adds a listening socket to the server block
//! being parsed, like a `listen` directive. Only inside
//! `mruby_server_context_handler_code`; RuntimeError elsewhere.

use mruby_sys::*;
use ngx::ffi::*;

use crate::api::{arity, ARGS_ANY};
use crate::conf::listen as server_context;
use crate::ngx_util::{pool_str, str_lossy};
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
    let context = server_context::current()
        .ok_or_else(|| RubyError::runtime("add_listener can be called only in mruby_server_context_handler_code"))?;
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
    let shown = String::from_utf8_lossy(&address).into_owned();
    // SAFETY: the context is set only while the directive runs, so cf and
    // cscf are the live configuration and the server being parsed.
    let (cf, cscf) = unsafe { (&mut *context.cf, &mut *context.cscf) };
    let url = pool_str(cf.pool, &address).ok_or_else(|| RubyError::runtime("out of memory"))?;
    // SAFETY: ngx_url_t is a plain C struct; all-zero is its initial state.
    let mut u: ngx_url_t = unsafe { core::mem::zeroed() };
    u.url = url;
    u.set_listen(1);
    u.default_port = 80;
    // SAFETY: cf.pool is the configuration pool; u is initialised above.
    if unsafe { ngx_parse_url(cf.pool, &mut u) } != NGX_OK as ngx_int_t {
        let reason = if u.err.is_null() {
            String::from("invalid address")
        } else {
            // SAFETY: u.err is a static NUL-terminated message.
            unsafe { core::ffi::CStr::from_ptr(u.err) }.to_string_lossy().into_owned()
        };
        return Err(RubyError::argument(format!("add_listener: {reason} in \"{shown}\"")));
    }
    // SAFETY: all-zero is the state ngx_http_core_listen starts from.
    let mut lsopt: ngx_http_listen_opt_t = unsafe { core::mem::zeroed() };
    lsopt.backlog = NGX_LISTEN_BACKLOG as i32;
    lsopt.type_ = __socket_type_SOCK_STREAM as i32;
    lsopt.rcvbuf = -1;
    lsopt.sndbuf = -1;
    lsopt.fastopen = -1;
    lsopt.set_ipv6only(1);
    lsopt.set_ssl(u32::from(ssl));
    lsopt.set_http2(u32::from(http2));
    cscf.set_listen(1);
    // SAFETY: u.addrs holds u.naddrs parsed addresses in cf.pool.
    let addrs = unsafe { core::slice::from_raw_parts(u.addrs, u.naddrs) };
    for (n, addr) in addrs.iter().enumerate() {
        // SAFETY: the sockaddrs are the parsed addresses, live in cf.pool.
        let duplicate = addrs[..n]
            .iter()
            .any(|earlier| unsafe { ngx_cmp_sockaddr(addr.sockaddr, addr.socklen, earlier.sockaddr, earlier.socklen, 1) } == NGX_OK as ngx_int_t);
        if duplicate {
            continue;
        }
        lsopt.sockaddr = addr.sockaddr;
        lsopt.socklen = addr.socklen;
        lsopt.addr_text = addr.name;
        // SAFETY: sockaddr is a parsed address.
        lsopt.set_wildcard(unsafe { ngx_inet_wildcard(addr.sockaddr) } as u32);
        // SAFETY: cf/cscf are live (see above); nginx copies what it keeps.
        if unsafe { ngx_http_add_listen(cf, cscf, &mut lsopt) } != NGX_OK as ngx_int_t {
            return Err(RubyError::runtime(format!(
                "add_listener: cannot listen on \"{}\" (see the previous error)",
                str_lossy(&addr.name)
            )));
        }
    }
    Ok(mrb.nil())
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let server = mrb.define_class_under(nginx, c"Server");
    mrb.define_method(server, c"add_listener", ruby_fn!(add_listener), ARGS_ANY);
}
