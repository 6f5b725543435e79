//! `mruby_server_context_handler_code`: Ruby runs while the server block
//! is parsed, with a server-configuration host installed, and
//! `Nginx::Server#add_listener` adds listening sockets to that server here,
//! as a `listen` directive would.

use core::ptr;

use ngx::ffi::*;
use ngx::http::{HttpModuleServerConf, NgxHttpCoreModule};

use super::{args, conf_vm, parse_inline_script};
use crate::host::server_config::{ListenSpec, ListenerTarget, ServerConfigHost};
use crate::host::{self, Host};
use crate::ngx_util::{conf_result, listen_addresses, str_lossy};
use crate::vm::RubyError;

/// The configuration context and the server being parsed.
struct ServerBeingParsed {
    cf: *mut ngx_conf_t,
    cscf: *mut ngx_http_core_srv_conf_t,
}

impl ListenerTarget for ServerBeingParsed {
    fn add_listener(&self, spec: &ListenSpec) -> Result<(), RubyError> {
        let ListenSpec { address, ssl, http2 } = spec;
        let (ssl, http2) = (*ssl, *http2);
        // SAFETY: a ServerBeingParsed exists only while its directive runs, so
        // cf and cscf are the live configuration and the server being parsed.
        let (cf, cscf) = unsafe { (&mut *self.cf, &mut *self.cscf) };
        let addrs =
            listen_addresses(cf.pool, address, 80).map_err(|e| RubyError::argument(format!("add_listener: {e}")))?;
        // SAFETY: all-zero is the state ngx_http_core_listen starts from.
        let mut lsopt: ngx_http_listen_opt_t = unsafe { core::mem::zeroed() };
        lsopt.backlog = NGX_LISTEN_BACKLOG as i32;
        #[cfg(nginx_listen_type)]
        {
            lsopt.type_ = __socket_type_SOCK_STREAM as i32;
        }
        lsopt.rcvbuf = -1;
        lsopt.sndbuf = -1;
        lsopt.fastopen = -1;
        lsopt.set_ipv6only(1);
        lsopt.set_ssl(u32::from(ssl));
        lsopt.set_http2(u32::from(http2));
        cscf.set_listen(1);
        for addr in &addrs {
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
        Ok(())
    }
}

/// `mruby_server_context_handler_code 'code'`: runs now, with the server
/// being parsed as the target of `Nginx::Server#add_listener`.
fn run_server_context(cf: &mut ngx_conf_t, cmd: &ngx_command_t) -> Result<(), String> {
    let script = parse_inline_script(cf, cmd, &args(cf)[0])?;
    let vm = conf_vm(cf)?;
    let cscf: *mut ngx_http_core_srv_conf_t =
        NgxHttpCoreModule::server_conf_mut(cf).ok_or("mruby_server_context_handler_code: no server conf")?;
    let cycle = cf.cycle;
    let server = ServerBeingParsed { cf: ptr::from_mut(cf), cscf };
    let result = script.current(vm.mrb(), true).map_err(|err| err.to_string()).and_then(|proc_| {
        host::enter(&Host::ServerConfig(&ServerConfigHost::new(&server, cycle)), || {
            // a script that names Async compiles to a Fiber: run_to_end runs it
            vm.mrb().arena_scope(|| crate::vm::run::run_to_end(&vm, proc_, script.suspendable()).map(|_| ()))
        })
        .map_err(|failure| failure.report)
    });
    script.release(vm.mrb());
    result.map_err(|report| format!("{} failed: {report}", str_lossy(&cmd.name)))
}

pub(crate) extern "C" fn set_server_context(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    _conf: *mut core::ffi::c_void,
) -> *mut core::ffi::c_char {
    // SAFETY: nginx passes the live cf and this command.
    let (cf_ref, cmd) = unsafe { (&mut *cf, &*cmd) };
    conf_result(cf, run_server_context(cf_ref, cmd))
}
