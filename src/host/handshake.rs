//! The TLS handshake host: one handshake in progress, as `Nginx::SSL` sees
//! it. The hook that runs the script and installs the chosen certificate is
//! in `tls/handshake.rs`.
//!
//! Unlike ngx_mruby, the choice lives in this per-handshake host, not in the
//! server configuration, so nothing carries over to the next handshake.

use core::cell::RefCell;
use core::ffi::{c_int, CStr};
use core::ptr;
use std::path::PathBuf;

use ngx::ffi::*;

use crate::ngx_util::str_lossy;

/// Where a certificate or key the script chose comes from.
#[derive(Clone)]
pub enum PemSource {
    /// `certificate=` / `certificate_key=`: a PEM file.
    File(PathBuf),
    /// `certificate_data=` / `certificate_key_data=`: PEM text.
    Data(Vec<u8>),
}

/// One handshake in progress, as `Nginx::SSL` sees it: the connection and
/// what the script chose (read by the hook after the script ran).
pub struct HandshakeHost {
    ssl: *mut SSL,
    connection: *mut ngx_connection_t,
    pub certificate: RefCell<Option<PemSource>>,
    pub certificate_key: RefCell<Option<PemSource>>,
}

impl HandshakeHost {
    /// A host for the handshake of `connection` on `ssl`, nothing chosen yet.
    pub fn new(ssl: *mut SSL, connection: *mut ngx_connection_t) -> HandshakeHost {
        HandshakeHost { ssl, connection, certificate: RefCell::new(None), certificate_key: RefCell::new(None) }
    }

    /// The SNI name the client sent, or empty.
    pub fn servername(&self) -> Vec<u8> {
        // SAFETY: ssl is the live SSL object of the handshake; the name is NUL-terminated.
        unsafe {
            let name = SSL_get_servername(self.ssl, TLSEXT_NAMETYPE_host_name as c_int);
            if name.is_null() {
                return Vec::new();
            }
            CStr::from_ptr(name).to_bytes().to_vec()
        }
    }

    /// The port the client connected to.
    pub fn local_port(&self) -> i64 {
        // SAFETY: connection is live during its handshake; the call fills
        // local_sockaddr when the listener was a wildcard.
        unsafe {
            if ngx_connection_local_sockaddr(self.connection, ptr::null_mut(), 0) != NGX_OK as ngx_int_t {
                return 0;
            }
            i64::from(ngx_inet_get_port((*self.connection).local_sockaddr))
        }
    }

    /// The negotiated protocol, e.g. `TLSv1.3`.
    pub fn tls_version(&self) -> Vec<u8> {
        // SAFETY: ssl is live; SSL_get_version returns a static string.
        unsafe {
            let version = SSL_get_version(self.ssl);
            if version.is_null() {
                return Vec::new();
            }
            CStr::from_ptr(version).to_bytes().to_vec()
        }
    }

    /// The connection's log, for `Nginx::SSL.log`.
    pub fn log(&self) -> *mut ngx_log_t {
        // SAFETY: connection is live during its handshake.
        unsafe { (*self.connection).log }
    }
}

/// Resolves a certificate path the way nginx resolves `ssl_certificate`:
/// relative paths are relative to the configuration prefix.
pub fn resolve_path(path: &[u8]) -> PathBuf {
    let path = PathBuf::from(String::from_utf8_lossy(path).into_owned());
    if path.is_absolute() {
        return path;
    }
    // SAFETY: the running cycle is live during a handshake.
    let prefix = unsafe { str_lossy(&(*super::cycle()).conf_prefix) };
    PathBuf::from(prefix).join(path)
}
