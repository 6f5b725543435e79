//! `Nginx::SSL`: the TLS handshake in progress, inside
//! `mruby_ssl_handshake_handler` only; elsewhere every method raises
//! RuntimeError (ngx_mruby returned garbage or crashed, #339).
//!
//! The certificate chosen applies to this handshake only; `new` does not
//! reset anything (each handshake starts with nothing chosen).

use mruby_sys::*;

use crate::api::{arg_bytes, arg_int, arity, to_s_bytes, ARGS_ANY};
use crate::host::handshake::{resolve_path, HandshakeHost, PemSource};
use crate::host::{self, Context, Host};
use crate::ngx_util::log;
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

/// Runs `f` on the handshake in progress, or raises RuntimeError.
fn handshake<R>(f: impl FnOnce(&HandshakeHost) -> R) -> Result<R, RubyError> {
    current_handshake()
        .map(f)
        .ok_or_else(|| RubyError::runtime("Nginx::SSL is available only in mruby_ssl_handshake_handler"))
}

/// The handshake the running script serves, if it serves one.
fn current_handshake<'a>() -> Option<&'a HandshakeHost> {
    match host::require_or(Context::SSL_HANDSHAKE, || RubyError::runtime("")) {
        Ok(Host::Handshake(handshake)) => Some(handshake),
        _ => None,
    }
}

fn initialize(_mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    handshake(|_| ())?;
    Ok(self_)
}

fn servername(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let name = handshake(|h| h.servername())?;
    Ok(mrb.str(&name))
}

fn local_port(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(mrb.int(handshake(|h| h.local_port())?))
}

fn tls_version(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let version = handshake(|h| h.tls_version())?;
    Ok(mrb.str(&version))
}

/// Which of the four setters.
#[derive(Clone, Copy)]
enum Setting {
    CertificateFile,
    KeyFile,
    CertificateData,
    KeyData,
}

fn set(mrb: Mrb, args: &[mrb_value], setting: Setting) -> RubyResult {
    arity(args, 1, 1)?;
    let what = match setting {
        Setting::CertificateFile => "certificate path",
        Setting::KeyFile => "certificate_key path",
        Setting::CertificateData => "certificate data",
        Setting::KeyData => "certificate_key data",
    };
    let bytes = arg_bytes(mrb, args[0], what)?.to_vec();
    let source = match setting {
        Setting::CertificateFile | Setting::KeyFile => PemSource::File(resolve_path(&bytes)),
        Setting::CertificateData | Setting::KeyData => PemSource::Data(bytes),
    };
    handshake(|h| match setting {
        Setting::CertificateFile | Setting::CertificateData => *h.certificate.borrow_mut() = Some(source),
        Setting::KeyFile | Setting::KeyData => *h.certificate_key.borrow_mut() = Some(source),
    })?;
    Ok(args[0])
}

fn set_certificate(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    set(mrb, args, Setting::CertificateFile)
}
fn set_certificate_key(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    set(mrb, args, Setting::KeyFile)
}
fn set_certificate_data(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    set(mrb, args, Setting::CertificateData)
}
fn set_certificate_key_data(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    set(mrb, args, Setting::KeyData)
}

/// `Nginx::SSL.log(level, msg)` / `errlogger`: to the connection's log
/// during a handshake, to the cycle's log elsewhere.
fn log_message(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 2, 2)?;
    let level = arg_int(mrb, args[0], "log level")?;
    let message = to_s_bytes(mrb, args[1])?;
    let message = String::from_utf8_lossy(&message);
    // SAFETY: the host's cycle (the running one outside a script) is live.
    let target_log = current_handshake().map(|h| h.log()).unwrap_or_else(|| unsafe { (*host::cycle()).log });
    if !(0..=8).contains(&level) {
        log(target_log, ngx::ffi::NGX_LOG_ERR, &format!("Nginx::SSL.log: invalid log level {level}: {message}"));
        return Ok(mrb.nil());
    }
    log(target_log, level as u32, &message);
    Ok(mrb.nil())
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let ssl = mrb.define_class_under(nginx, c"SSL");
    mrb.define_method(ssl, c"initialize", ruby_fn!(initialize), ARGS_ANY);
    mrb.define_method(ssl, c"servername", ruby_fn!(servername), ARGS_ANY);
    mrb.define_method(ssl, c"local_port", ruby_fn!(local_port), ARGS_ANY);
    mrb.define_method(ssl, c"tls_version", ruby_fn!(tls_version), ARGS_ANY);
    mrb.define_method(ssl, c"certificate=", ruby_fn!(set_certificate), ARGS_ANY);
    mrb.define_method(ssl, c"certificate_key=", ruby_fn!(set_certificate_key), ARGS_ANY);
    mrb.define_method(ssl, c"certificate_data=", ruby_fn!(set_certificate_data), ARGS_ANY);
    mrb.define_method(ssl, c"certificate_key_data=", ruby_fn!(set_certificate_key_data), ARGS_ANY);
    mrb.define_class_method(ssl, c"log", ruby_fn!(log_message), ARGS_ANY);
    mrb.define_class_method(ssl, c"errlogger", ruby_fn!(log_message), ARGS_ANY);
}
