//! Directives of `ngx_http_mruby_ssl_module`, and the merge step that
//! installs the handshake hook on the server's `SSL_CTX`.

use core::ffi::{c_char, c_void};
use core::ptr;
use std::rc::Rc;

use ngx::ffi::*;
use ngx::http::{HttpModuleServerConf, NgxHttpSslModule};
use ngx::ngx_string;

use crate::conf::{args, conf_result, conf_vm, parse_file_script, parse_inline_script};
use crate::ngx_util::{log, str_lossy};
use crate::vm::{Script, Vm};

/// Server-level state of the module.
#[derive(Default)]
pub struct SslSrvConf {
    /// `mruby_ssl_handshake_handler[_code]`: runs in every TLS handshake of
    /// this server (after SNI picked the server).
    pub handshake: Option<Rc<Script>>,
    /// The VM the handshake script was compiled in (the `http{}` VM).
    pub vm: Option<Rc<Vm>>,
    /// `file:line` of the handshake directive, for errors found at merge time.
    pub handshake_at: String,
}

/// `file:line` of the directive being parsed.
fn directive_location(cf: &ngx_conf_t) -> String {
    // SAFETY: conf_file is set while a file is being parsed.
    unsafe { format!("{}:{}", str_lossy(&(*cf.conf_file).file.name), (*cf.conf_file).line) }
}

fn set_handshake(cf: &mut ngx_conf_t, cmd: &ngx_command_t, conf: &mut SslSrvConf, inline: bool) -> Result<(), String> {
    if conf.handshake.is_some() {
        return Err(format!(
            "\"{}\" directive is duplicate: a server has one mruby_ssl_handshake_handler or \
             mruby_ssl_handshake_handler_code",
            str_lossy(&cmd.name)
        ));
    }
    let script = if inline { parse_inline_script(cf, cmd, &args(cf)[0])? } else { parse_file_script(cf, cmd)? };
    conf.vm = Some(conf_vm(cf)?);
    conf.handshake = Some(script);
    conf.handshake_at = directive_location(cf);
    Ok(())
}

extern "C" fn set_handshake_file(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf, this command, and our SslSrvConf (SRV_CONF_OFFSET).
    let (cf_ref, cmd, conf) = unsafe { (&mut *cf, &*cmd, &mut *(conf as *mut SslSrvConf)) };
    conf_result(cf, set_handshake(cf_ref, cmd, conf, false))
}

extern "C" fn set_handshake_inline(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as above.
    let (cf_ref, cmd, conf) = unsafe { (&mut *cf, &*cmd, &mut *(conf as *mut SslSrvConf)) };
    conf_result(cf, set_handshake(cf_ref, cmd, conf, true))
}

/// `merge_srv_conf`: nginx's SSL module (a static module, merged before us)
/// has built this server's `SSL_CTX` by now; hook the handshake into it.
///
/// # Safety
/// Called by nginx with its live `cf` and this module's server conf.
pub(super) unsafe extern "C" fn merge_srv_conf(
    cf: *mut ngx_conf_t,
    _prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the live cf (its ctx is this server's) and our SslSrvConf.
    let (cf_ref, conf) = unsafe { (&mut *cf, &mut *(conf as *mut SslSrvConf)) };
    match install_handshake_hook(cf_ref, conf) {
        Ok(()) => ptr::null_mut(),
        Err(message) => {
            log(cf_ref.log, NGX_LOG_EMERG, &message);
            ngx::core::NGX_CONF_ERROR as *mut c_char
        }
    }
}

fn install_handshake_hook(cf: &mut ngx_conf_t, conf: &mut SslSrvConf) -> Result<(), String> {
    if conf.handshake.is_none() {
        return Ok(());
    }
    let at = &conf.handshake_at;
    let sscf = NgxHttpSslModule::server_conf(cf)
        .filter(|sscf| !sscf.ssl.ctx.is_null())
        .ok_or_else(|| format!("mruby_ssl_handshake_handler: no ssl configured for the server in {at}"))?;
    if !sscf.certificate_values.is_null() {
        // nginx installed its own certificate callback; an SSL_CTX has one
        return Err(format!(
            "mruby_ssl_handshake_handler: cannot be combined with variables in \"ssl_certificate\" in {at}"
        ));
    }
    // SAFETY: ctx is the server's live SSL_CTX; `conf` lives in the
    // configuration pool, as long as the SSL_CTX (freed by its pool cleanup).
    unsafe {
        SSL_CTX_set_cert_cb(
            sscf.ssl.ctx.cast(),
            Some(super::handshake::cert_callback),
            (conf as *mut SslSrvConf).cast(),
        )
    };
    Ok(())
}

const SRV: u32 = NGX_HTTP_SRV_CONF;
const SRV_OFF: ngx_uint_t = NGX_HTTP_SRV_CONF_OFFSET as ngx_uint_t;

type SetFn = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

const fn command(name: ngx_str_t, kind: u32, set: SetFn) -> ngx_command_t {
    ngx_command_t { name, type_: kind as ngx_uint_t, set: Some(set), conf: SRV_OFF, offset: 0, post: ptr::null_mut() }
}

/// The directive table.
pub static mut COMMANDS: [ngx_command_t; 3] = [
    command(ngx_string!("mruby_ssl_handshake_handler"), SRV | NGX_CONF_TAKE12, set_handshake_file),
    command(ngx_string!("mruby_ssl_handshake_handler_code"), SRV | NGX_CONF_TAKE1, set_handshake_inline),
    ngx_command_t::empty(),
];
