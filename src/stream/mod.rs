//! `ngx_stream_mruby_module`: Ruby in nginx's `stream{}` (TCP/UDP), as
//! ngx_mruby's stream module, in the same `.so` as the HTTP module.
//!
//! * `conf.rs`: the directive table, the configuration structs, the
//!   process hooks (`mruby_stream_init[_worker]`, `mruby_stream_exit_worker`).
//! * `access.rs`: `mruby_stream[_code]`, run in the stream ACCESS phase.
//! * `listen.rs`: `Nginx::Stream.add_listener` from
//!   `mruby_stream_server_context_code`.
//! * `upstream.rs`: the upstream server a session's script chose
//!   (`Nginx::Stream::Connection#upstream_server=`), applied when the proxy
//!   connects.
//! * `module_ctx.rs`: the session's ctx slot holding its host state.
//!
//! Each `stream{}` configuration has its own VM (not the HTTP one), with the
//! stream API (`api/stream/`) and the Ruby library defined in it. A session
//! is one more kind of host (`host/stream.rs`).
//!
//! This file holds the module table and the lifecycle hooks only.

pub mod access;
pub mod conf;
pub mod listen;
pub mod module_ctx;
pub mod upstream;

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut};

use ngx::core::Status;
use ngx::ffi::*;

pub use conf::{StreamMainConf, StreamSrvConf};

static NGX_STREAM_MRUBY_MODULE_CTX: ngx_stream_module_t = ngx_stream_module_t {
    preconfiguration: None,
    postconfiguration: Some(conf::postconfiguration),
    create_main_conf: Some(conf::create_main_conf),
    init_main_conf: None,
    create_srv_conf: Some(conf::create_srv_conf),
    merge_srv_conf: Some(conf::merge_srv_conf),
};

/// The nginx module table (listed in `ngx_modules` by lib.rs).
#[no_mangle]
#[used]
pub static mut ngx_stream_mruby_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_STREAM_MRUBY_MODULE_CTX) as *mut c_void,
    // SAFETY: only the address of the static table is taken.
    commands: unsafe { addr_of_mut!(conf::COMMANDS[0]) },
    type_: NGX_STREAM_MODULE as ngx_uint_t,
    init_process: Some(init_worker),
    exit_process: Some(exit_worker),
    ..ngx_module_t::default()
};

/// This module's table (its indices are set by nginx at load).
pub(crate) fn module() -> &'static ngx_module_t {
    // SAFETY: the module table is a static; nginx only writes its indices at load.
    unsafe { &*addr_of!(ngx_stream_mruby_module) }
}

/// `init_process`: runs `mruby_stream_init_worker` in each worker.
extern "C" fn init_worker(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the live cycle.
    let cycle = unsafe { &mut *cycle };
    conf::init_worker(cycle);
    Status::NGX_OK.into()
}

/// `exit_process`: runs `mruby_stream_exit_worker`.
extern "C" fn exit_worker(cycle: *mut ngx_cycle_t) {
    // SAFETY: nginx passes the live cycle.
    let cycle = unsafe { &mut *cycle };
    conf::exit_worker(cycle);
}
