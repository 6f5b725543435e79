//! `mruby_stream_server_context_code`: Ruby runs while a stream server block
//! is parsed, and `Nginx::Stream.add_listener` adds listening sockets to
//! that server, as a `listen` directive would.

use core::ptr;

use ngx::ffi::*;

use crate::host::server_config::{ListenSpec, ListenerTarget, ServerConfigHost};
use crate::host::{self, Host};
use crate::ngx_util::{pool_str, str_lossy};
use crate::vm::{RubyError, Script, Vm};

/// The configuration context and the stream server being parsed.
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

fn add_stream_listener(server: &ServerBeingParsed, address: &[u8]) -> Result<(), RubyError> {
    let shown = String::from_utf8_lossy(address).into_owned();
    // SAFETY: the server is set only while its directive runs, so cf and
    // cscf are the live configuration and the server being parsed.
    let (cf, cscf) = unsafe { (&mut *server.cf, &mut *server.cscf) };
    let url = pool_str(cf.pool, address).ok_or_else(|| RubyError::runtime("out of memory"))?;
    // SAFETY: ngx_url_t is a plain C struct; all-zero is its initial state.
    let mut u: ngx_url_t = unsafe { core::mem::zeroed() };
    u.url = url;
    u.set_listen(1);
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
    // SAFETY: all-zero is the state ngx_stream_core_listen starts from.
    let mut lsopt: ngx_stream_listen_opt_t = unsafe { core::mem::zeroed() };
    lsopt.backlog = NGX_LISTEN_BACKLOG as i32;
    lsopt.type_ = __socket_type_SOCK_STREAM as i32;
    lsopt.rcvbuf = -1;
    lsopt.sndbuf = -1;
    lsopt.fastopen = -1;
    lsopt.set_ipv6only(1);
    cscf.set_listen(1);
    // SAFETY: u.addrs holds u.naddrs parsed addresses in cf.pool.
    let addrs = unsafe { core::slice::from_raw_parts(u.addrs, u.naddrs) };
    for (n, addr) in addrs.iter().enumerate() {
        // SAFETY: the sockaddrs are the parsed addresses, live in cf.pool.
        let duplicate = addrs[..n].iter().any(|earlier| unsafe {
            ngx_cmp_sockaddr(addr.sockaddr, addr.socklen, earlier.sockaddr, earlier.socklen, 1) == NGX_OK as ngx_int_t
        });
        if duplicate {
            continue;
        }
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
