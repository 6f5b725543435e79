//! `mruby_stream_server_context_code`: Ruby runs while a stream server block
//! is parsed, and `Nginx::Stream.add_listener` adds listening sockets to
//! that server, as a `listen` directive would.

use core::ptr;

use ngx::ffi::*;

use crate::host::server_config::{ListenSpec, ListenerTarget, ServerConfigHost};
use crate::host::{self, Host};
#[cfg(nginx_stream_add_listen)]
use crate::ngx_util::{listen_addresses, str_lossy};
use crate::vm::{RubyError, Script, Vm};

/// The configuration context and the stream server being parsed.
#[cfg_attr(not(nginx_stream_add_listen), allow(dead_code))]
struct ServerBeingParsed {
    cf: *mut ngx_conf_t,
    cscf: *mut ngx_stream_core_srv_conf_t,
}

/// Runs `script` now, with a server-configuration host whose target is the
/// stream server being parsed. Returns the exception report on failure.
pub(crate) fn run_server_context(cf: &mut ngx_conf_t, vm: &Vm, script: &Script) -> Result<(), String> {
    // SAFETY: inside a stream server block cf->ctx is its conf context, whose
    // srv_conf array holds the core module's server conf.
    let cscf = unsafe {
        let ctx = cf.ctx as *mut ngx_stream_conf_ctx_t;
        let index = (*ptr::addr_of!(ngx_stream_core_module)).ctx_index;
        *(*ctx).srv_conf.add(index) as *mut ngx_stream_core_srv_conf_t
    };
    let proc_ = script.current(vm.mrb(), true).map_err(|err| err.to_string())?;
    let cycle = cf.cycle;
    let server = ServerBeingParsed { cf: ptr::from_mut(cf), cscf };
    let result = host::enter(&Host::ServerConfig(&ServerConfigHost::new(&server, cycle)), || {
        // a script that names Async compiles to a Fiber: run_to_end runs it
        vm.mrb().arena_scope(|| crate::vm::run::run_to_end(vm, proc_, script.suspendable()).map(|_| ()))
    });
    // the script ran once; its bytecode is not needed again
    script.release(vm.mrb());
    result.map_err(|failure| failure.report)
}

impl ListenerTarget for ServerBeingParsed {
    /// `Nginx::Stream.add_listener`: listen on `address` (`host:port` or
    /// `port`) in the stream server being parsed, as `listen` would.
    fn add_listener(&self, spec: &ListenSpec) -> Result<(), RubyError> {
        if spec.ssl || spec.http2 {
            return Err(RubyError::argument("Nginx::Stream.add_listener takes only :address"));
        }
        add_stream_listener(self, &spec.address)
    }
}

/// Before nginx 1.25.5 (virtual servers in stream) a stream server had no
/// listen options of its own for a module to add (`ngx_stream_add_listen`):
/// compiled out, the method says so.
#[cfg(not(nginx_stream_add_listen))]
fn add_stream_listener(_server: &ServerBeingParsed, _address: &[u8]) -> Result<(), RubyError> {
    Err(RubyError::runtime(
        "Nginx::Stream.add_listener needs nginx 1.25.5 or newer (the module was built for an older nginx)",
    ))
}

#[cfg(nginx_stream_add_listen)]
fn add_stream_listener(server: &ServerBeingParsed, address: &[u8]) -> Result<(), RubyError> {
    // SAFETY: the server is set only while its directive runs, so cf and
    // cscf are the live configuration and the server being parsed.
    let (cf, cscf) = unsafe { (&mut *server.cf, &mut *server.cscf) };
    let addrs = listen_addresses(cf.pool, address, 0).map_err(|e| RubyError::argument(format!("add_listener: {e}")))?;
    // SAFETY: all-zero is the state ngx_stream_core_listen starts from.
    let mut lsopt: ngx_stream_listen_opt_t = unsafe { core::mem::zeroed() };
    lsopt.backlog = NGX_LISTEN_BACKLOG as i32;
    lsopt.type_ = __socket_type_SOCK_STREAM as i32;
    lsopt.rcvbuf = -1;
    lsopt.sndbuf = -1;
    lsopt.fastopen = -1;
    lsopt.set_ipv6only(1);
    cscf.set_listen(1);
    for addr in &addrs {
        lsopt.sockaddr = addr.sockaddr;
        lsopt.socklen = addr.socklen;
        lsopt.addr_text = addr.name;
        // SAFETY: sockaddr is a parsed address.
        lsopt.set_wildcard(unsafe { ngx_inet_wildcard(addr.sockaddr) } as u32);
        // SAFETY: cf/cscf are live (see above); nginx copies what it keeps.
        if unsafe { ngx_stream_add_listen(cf, cscf, &mut lsopt) } != NGX_OK as ngx_int_t {
            return Err(RubyError::runtime(format!(
                "add_listener: cannot listen on \"{}\" (see the previous error)",
                str_lossy(&addr.name)
            )));
        }
    }
    Ok(())
}
