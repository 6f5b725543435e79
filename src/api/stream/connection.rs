//! `Nginx::Stream::Connection`: the session's addresses, its
//! `stream_status`, and the upstream server it connects to.
//!
//! `new(upstream_name)` names an `upstream{}` block; `upstream_server=`
//! then chooses the server this session connects to (for this session
//! only: other sessions keep theirs, see README). The address and status
//! methods exist both as class and instance methods, as in ngx_mruby.

use mruby_sys::*;
use ngx::ffi::*;

use super::current_session;
use crate::api::core::gems::{make_data_class, ConfRefType};
use crate::api::{arg_bytes, arg_int, arity, ARGS_ANY};
use crate::host::StreamSession;
use crate::ngx_util::str_bytes;
use crate::ruby_fn;
use crate::upstream::stream::{find, first_server_name, parse_server};
use crate::vm::{Mrb, RubyError, RubyResult};

/// What a `Nginx::Stream::Connection` object points at: the upstream block
/// it was created for (configuration memory, alive as long as the VM).
static CONNECTION: ConfRefType<ngx_stream_upstream_srv_conf_t> = ConfRefType::new(c"Nginx::Stream::Connection");

fn session<'a>() -> Result<&'a StreamSession, RubyError> {
    current_session("Nginx::Stream::Connection")
}

/// `new(upstream_name)`
fn initialize(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let name = arg_bytes(mrb, args[0], "upstream name")?;
    let upstream = find(session()?.session(), name)
        .ok_or_else(|| RubyError::argument(format!("upstream \"{}\" not found", String::from_utf8_lossy(name))))?;
    CONNECTION.set(mrb, self_, upstream).map_err(|_| RubyError::type_error("not a Nginx::Stream::Connection"))?;
    Ok(self_)
}

/// The upstream block this object was created for.
fn upstream_of(mrb: Mrb, self_: mrb_value) -> Result<*mut ngx_stream_upstream_srv_conf_t, RubyError> {
    CONNECTION
        .get(mrb, self_)
        .ok_or_else(|| RubyError::runtime("Nginx::Stream::Connection was created without an upstream name"))
}

/// `upstream_server`: the server this session connects to, `"ip:port"`.
fn upstream_server(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let state = session()?;
    let upstream = upstream_of(mrb, self_)?;
    if let Some(chosen) = state.chosen_for(upstream) {
        return Ok(mrb.str(str_bytes(&chosen.name)));
    }
    Ok(first_server_name(upstream).map(|name| mrb.str(name)).unwrap_or_else(|| mrb.nil()))
}

/// `upstream_server = "ip:port"`: this session connects there instead of
/// the upstream's servers. No DNS lookup (a worker must not block).
fn set_upstream_server(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let address = arg_bytes(mrb, args[0], "upstream server")?;
    let state = session()?;
    let upstream = upstream_of(mrb, self_)?;
    let server = parse_server(state.pool(), address).map_err(RubyError::argument)?;
    state.choose(upstream, server.sockaddr, server.socklen, server.name)?;
    Ok(args[0])
}

fn stream_status(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(mrb.int(session()?.status.get() as i64))
}

/// `stream_status = code`: OK ends the access phase (later access rules are
/// skipped), DECLINED lets it go on, ABORT closes the connection, ERROR
/// closes it as an internal error. Anything else would hang the session.
fn set_stream_status(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let code = arg_int(mrb, args[0], "stream_status")?;
    let allowed = [NGX_OK as i64, NGX_DECLINED as i64, NGX_ABORT as i64, NGX_ERROR as i64];
    if !allowed.contains(&code) {
        return Err(RubyError::argument(format!(
            "stream_status must be Nginx::Stream::OK, DECLINED, ABORT or ERROR, not {code}"
        )));
    }
    session()?.status.set(code as ngx_int_t);
    Ok(args[0])
}

fn connection<'a>(args: &[mrb_value]) -> Result<&'a ngx_connection_t, RubyError> {
    arity(args, 0, 0)?;
    // SAFETY: the session's connection is live while its script runs.
    Ok(unsafe { &*session()?.connection() })
}

fn remote_ip(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(str_bytes(&connection(args)?.addr_text)))
}

fn remote_port(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    let c = connection(args)?;
    // SAFETY: sockaddr is the connection's peer address.
    Ok(mrb.int(i64::from(unsafe { ngx_inet_get_port(c.sockaddr) })))
}

/// The local address as text, `with_port` as `ip:port` (`[v6]:port`).
fn local_text(c: &ngx_connection_t, with_port: bool) -> Result<Vec<u8>, RubyError> {
    // NGX_SOCKADDR_STRLEN is a macro bindgen cannot see; a unix path fits in 256
    let mut buf = [0u8; 256];
    let mut text = ngx_str_t { len: buf.len(), data: buf.as_mut_ptr() };
    let c = core::ptr::from_ref(c).cast_mut();
    // SAFETY: c is live; nginx writes at most text.len bytes into buf (and
    // fills c->local_sockaddr for wildcard listeners).
    if unsafe { ngx_connection_local_sockaddr(c, &mut text, ngx_uint_t::from(with_port)) } != NGX_OK as ngx_int_t {
        return Err(RubyError::runtime("cannot get the local address"));
    }
    Ok(str_bytes(&text).to_vec())
}

fn local_ip(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(&local_text(connection(args)?, false)?))
}

fn local_ip_port(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(&local_text(connection(args)?, true)?))
}

fn local_port(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    let c = connection(args)?;
    local_text(c, false)?;
    // SAFETY: local_sockaddr was filled by ngx_connection_local_sockaddr.
    Ok(mrb.int(i64::from(unsafe { ngx_inet_get_port(c.local_sockaddr) })))
}

/// The client address the PROXY protocol header gave, or nil.
fn proxy_protocol_ip(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    let c = connection(args)?;
    // SAFETY: proxy_protocol is NULL or the header nginx parsed, in the connection pool.
    Ok(match unsafe { c.proxy_protocol.as_ref() } {
        Some(header) => mrb.str(str_bytes(&header.src_addr)),
        None => mrb.nil(),
    })
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let stream = mrb.define_class_under(nginx, c"Stream");
    let connection = mrb.define_class_under(stream, c"Connection");
    make_data_class(connection);
    mrb.define_method(connection, c"initialize", ruby_fn!(initialize), ARGS_ANY);
    mrb.define_method(connection, c"upstream_server", ruby_fn!(upstream_server), ARGS_ANY);
    mrb.define_method(connection, c"upstream_server=", ruby_fn!(set_upstream_server), ARGS_ANY);
    // both class and instance methods, as in ngx_mruby
    macro_rules! shared {
        ($name:literal, $method:path) => {
            mrb.define_method(connection, $name, ruby_fn!($method), ARGS_ANY);
            mrb.define_class_method(connection, $name, ruby_fn!($method), ARGS_ANY);
        };
    }
    shared!(c"stream_status", stream_status);
    shared!(c"stream_status=", set_stream_status);
    shared!(c"remote_ip", remote_ip);
    shared!(c"remote_addr", remote_ip);
    shared!(c"remote_port", remote_port);
    shared!(c"local_ip", local_ip);
    shared!(c"local_addr", local_ip);
    shared!(c"local_port", local_port);
    shared!(c"local_ip_port", local_ip_port);
    shared!(c"proxy_protocol_ip", proxy_protocol_ip);
    shared!(c"proxy_protocol_addr", proxy_protocol_ip);
}
