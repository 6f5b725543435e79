//! `ngx_http_mruby_ssl_module`: the TLS handshake hook.
//! `mruby_ssl_handshake_handler[_code]` (server): Ruby chooses the
//! certificate during the TLS handshake (`handshake.rs`), with a handshake
//! host installed (`host/handshake.rs`, what `Nginx::SSL` reads and sets).
//!
//! This file holds the module table only; directives are in `conf.rs`.
//! May import: `conf/` (script parsing), `host/`, `vm/`.

pub mod conf;
pub mod handshake;

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut};

use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleServerConf};

pub use conf::SslSrvConf;

/// The module's type for the `ngx` crate's configuration helpers.
pub struct HttpMrubySslModule;

impl HttpModule for HttpMrubySslModule {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module table is a static; nginx only writes its indices at load.
        unsafe { &*addr_of!(ngx_http_mruby_ssl_module) }
    }
}

// SAFETY: the server conf is the struct `create_srv_conf` allocates.
unsafe impl HttpModuleServerConf for HttpMrubySslModule {
    type ServerConf = SslSrvConf;
}

static NGX_HTTP_MRUBY_SSL_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: None,
    postconfiguration: None,
    create_main_conf: None,
    init_main_conf: None,
    create_srv_conf: Some(HttpMrubySslModule::create_srv_conf),
    merge_srv_conf: Some(conf::merge_srv_conf),
    create_loc_conf: None,
    merge_loc_conf: None,
};

/// The nginx module table.
#[no_mangle]
#[used]
pub static mut ngx_http_mruby_ssl_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_HTTP_MRUBY_SSL_MODULE_CTX) as *mut c_void,
    // SAFETY: only the address of the static table is taken.
    commands: unsafe { addr_of_mut!(conf::COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    ..ngx_module_t::default()
};
