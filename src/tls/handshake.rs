//! The TLS handshake hook: OpenSSL's certificate callback runs the server's
//! script, then installs the certificate and key the script chose on this
//! connection only.
//!
//! The script runs with a [`HandshakeHost`] installed (`host/handshake.rs`):
//! the choice lives there, per handshake, so nothing carries over to the
//! next one; outside a handshake `Nginx::SSL` raises instead of reading
//! stale state (ngx_mruby #339).

use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr;

use ngx::ffi::*;

use super::SslSrvConf;
use crate::host::handshake::{HandshakeHost, PemSource};
use crate::host::{self, Host};
use crate::ngx_util::log;
use crate::vm::run::run_to_end;

/// `SSL_CTX_set_cert_cb` callback: 1 continues the handshake, 0 fails it.
///
/// # Safety
/// Called by OpenSSL with an SSL object nginx created and the `SslSrvConf`
/// given to `SSL_CTX_set_cert_cb`.
pub(super) unsafe extern "C" fn cert_callback(ssl: *mut SSL, arg: *mut c_void) -> c_int {
    // SAFETY: arg is the SslSrvConf registered in merge_srv_conf; it lives as long as the SSL_CTX.
    let conf = unsafe { &*(arg as *const SslSrvConf) };
    // SAFETY: nginx stores its connection in every SSL object it creates.
    let connection = unsafe { SSL_get_ex_data(ssl, ngx_ssl_connection_index) } as *mut ngx_connection_t;
    if connection.is_null() {
        return 0;
    }
    match run_handshake(ssl, connection, conf) {
        Ok(()) => 1,
        Err(message) => {
            // SAFETY: the connection is live during its handshake.
            let connection_log = unsafe { (*connection).log };
            log(connection_log, NGX_LOG_ERR, &format!("mruby_ssl_handshake_handler: {message}"));
            0
        }
    }
}

fn run_handshake(ssl: *mut SSL, connection: *mut ngx_connection_t, conf: &SslSrvConf) -> Result<(), String> {
    let (Some(vm), Some(script)) = (&conf.vm, &conf.handshake) else {
        return Ok(());
    };
    let proc_ = script.current(vm.mrb(), false).map_err(|err| format!("failed to recompile {err}"))?;
    // a request between phases may have globals in the VM: keep them out of
    // the handshake's sight, and the handshake's globals out of the request
    let request_globals = vm.stash_request_globals();
    let handshake = HandshakeHost::new(ssl, connection);
    // a script that names Async compiles to a Fiber: run_to_end runs it
    let result = host::enter(&Host::Handshake(&handshake), || {
        vm.mrb().arena_scope(|| run_to_end(vm, proc_, script.suspendable()).map(|_| ()))
    });
    vm.remove_request_globals();
    if let Some(stash) = request_globals {
        vm.restore_request_globals(stash);
    }
    result.map_err(|failure| failure.report)?;
    match (handshake.certificate.take(), handshake.certificate_key.take()) {
        (None, None) => Ok(()),
        (Some(certificate), Some(key)) => {
            let certificate = read_pem(&certificate, "cert")?;
            let key = read_pem(&key, "key")?;
            use_certificate(ssl, &certificate)?;
            use_private_key(ssl, &key)
        }
        (Some(_), None) => Err(String::from("a certificate was set without certificate_key")),
        (None, Some(_)) => Err(String::from("a certificate_key was set without certificate")),
    }
}

fn read_pem(source: &PemSource, what: &str) -> Result<Vec<u8>, String> {
    match source {
        PemSource::Data(pem) => Ok(pem.clone()),
        PemSource::File(path) => {
            std::fs::read(path).map_err(|_| format!("{what} {} not exists or not read", path.display()))
        }
    }
}

/// PEM password callback: encrypted keys are not supported (the default
/// callback would prompt on the terminal).
unsafe extern "C" fn no_password(_buf: *mut c_char, _size: c_int, _rwflag: c_int, _userdata: *mut c_void) -> c_int {
    0
}

/// The first queued OpenSSL error, as text; clears the queue.
fn openssl_error(what: &str) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: ERR_* use the thread's error queue; buf is writable for its length.
    let reason = unsafe {
        let code = ERR_get_error();
        ERR_error_string_n(code, buf.as_mut_ptr().cast(), buf.len());
        ERR_clear_error();
        CStr::from_bytes_until_nul(&buf).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    };
    format!("{what}: {reason}")
}

/// A read-only memory BIO over `pem`, freed on drop.
struct MemBio(*mut BIO);

impl MemBio {
    fn new(pem: &[u8]) -> Result<MemBio, String> {
        let len = c_int::try_from(pem.len()).map_err(|_| String::from("PEM data too large"))?;
        // SAFETY: the BIO only reads `len` bytes of `pem`, which outlives it.
        let bio = unsafe { BIO_new_mem_buf(pem.as_ptr().cast(), len) };
        if bio.is_null() {
            return Err(openssl_error("BIO_new_mem_buf() failed"));
        }
        Ok(MemBio(bio))
    }
}

impl Drop for MemBio {
    fn drop(&mut self) {
        // SAFETY: the BIO was created by BIO_new_mem_buf and is freed once.
        unsafe { BIO_free(self.0) };
    }
}

/// Installs the leaf certificate and its chain (the rest of the PEM) on `ssl`.
fn use_certificate(ssl: *mut SSL, pem: &[u8]) -> Result<(), String> {
    let bio = MemBio::new(pem)?;
    // SAFETY: bio and ssl are live; every X509 read is freed after
    // SSL_use_certificate / SSL_add1_chain_cert took their own reference.
    unsafe {
        let leaf = PEM_read_bio_X509_AUX(bio.0, ptr::null_mut(), Some(no_password), ptr::null_mut());
        if leaf.is_null() {
            return Err(openssl_error("cannot read certificate"));
        }
        let used = SSL_use_certificate(ssl, leaf);
        X509_free(leaf);
        if used != 1 {
            return Err(openssl_error("cannot use certificate"));
        }
        // drop the chain of the server's default certificate (SSL_set0_chain(ssl, NULL))
        SSL_ctrl(ssl, SSL_CTRL_CHAIN as c_int, 0, ptr::null_mut());
        loop {
            let extra = PEM_read_bio_X509(bio.0, ptr::null_mut(), Some(no_password), ptr::null_mut());
            if extra.is_null() {
                break;
            }
            // SSL_add1_chain_cert(ssl, extra)
            let added = SSL_ctrl(ssl, SSL_CTRL_CHAIN_CERT as c_int, 1, extra.cast());
            X509_free(extra);
            if added == 0 {
                return Err(openssl_error("cannot add chain certificate"));
            }
        }
        // the end of the PEM data leaves a "no start line" error queued
        ERR_clear_error();
    }
    Ok(())
}

/// Installs the private key; OpenSSL checks it matches the certificate.
fn use_private_key(ssl: *mut SSL, pem: &[u8]) -> Result<(), String> {
    let bio = MemBio::new(pem)?;
    // SAFETY: bio and ssl are live; the key is freed after SSL_use_PrivateKey took a reference.
    unsafe {
        let key = PEM_read_bio_PrivateKey(bio.0, ptr::null_mut(), Some(no_password), ptr::null_mut());
        if key.is_null() {
            return Err(openssl_error("cannot read certificate key"));
        }
        let used = SSL_use_PrivateKey(ssl, key);
        EVP_PKEY_free(key);
        if used != 1 {
            return Err(openssl_error("cannot use certificate key"));
        }
    }
    Ok(())
}
