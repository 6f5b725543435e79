//! ngx-mruby-rs: ngx_mruby-compatible Ruby scripting for nginx.
//!
//! This file holds the module table and the lifecycle hooks only, and is
//! where the layers meet (see README "Layout"): directives live in `conf/`,
//! the VM in `vm/`, whom Ruby runs for in `host/`, the Ruby API in `api/`,
//! phase and filter handlers in `phases/`, the TLS handshake hook in `tls/`,
//! upstream keepalive in `upstream/`, vlimit/lalimit in `limits/` on the
//! shared table of `shm/`, the stream module (`mruby_stream*`) in `stream/`,
//! resource control (`resource_*`) in `resources/`.

pub mod api;
pub mod conf;
pub mod host;
pub mod limits;
pub mod metrics;
pub mod ngx_util;
pub mod phases;
pub mod resources;
pub mod shared_conf;
pub mod shm;
pub mod stream;
pub mod tenants;
pub mod tls;
pub mod upstream;
pub mod vm;

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut};

use ngx::core::Status;
use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf};

use crate::conf::{LocConf, MainConf};

/// The module's type for the `ngx` crate's configuration helpers.
pub struct HttpMrubyModule;

impl HttpModule for HttpMrubyModule {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module table is a static; nginx only writes its indices at load.
        unsafe { &*addr_of!(ngx_http_mruby_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a live configuration context; main confs exist by now.
        let cf = unsafe { &mut *cf };
        conf::reset_process_limits();
        // `conf/` appends mruby_set codes while parsing; the code they run is the phases'
        match HttpMrubyModule::main_conf_mut(cf) {
            Some(main) => {
                main.set_code_runner = Some(phases::set::run_set_code);
                Status::NGX_OK.into()
            }
            None => Status::NGX_ERROR.into(),
        }
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a live configuration context.
        let cf = unsafe { &mut *cf };
        // handlers only for the phases some scope uses, then mruby_init
        let used = HttpMrubyModule::main_conf(cf).map(|main| main.used_slots);
        let registered = match used {
            Some(used) => phases::register(cf, &used),
            None => Ok(()),
        };
        match registered.and_then(|()| conf::postconfiguration(cf)) {
            Ok(()) => Status::NGX_OK.into(),
            Err(()) => Status::NGX_ERROR.into(),
        }
    }
}

// SAFETY: the associated types are the structs this module allocates.
unsafe impl HttpModuleMainConf for HttpMrubyModule {
    type MainConf = MainConf;
}

// SAFETY: as above; the server level keeps no state of its own.
unsafe impl HttpModuleServerConf for HttpMrubyModule {
    type ServerConf = ();
}

// SAFETY: as above.
unsafe impl HttpModuleLocationConf for HttpMrubyModule {
    type LocationConf = LocConf;
}

static NGX_HTTP_MRUBY_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(HttpMrubyModule::preconfiguration),
    postconfiguration: Some(HttpMrubyModule::postconfiguration),
    create_main_conf: Some(HttpMrubyModule::create_main_conf),
    init_main_conf: Some(HttpMrubyModule::init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(HttpMrubyModule::create_loc_conf),
    merge_loc_conf: Some(HttpMrubyModule::merge_loc_conf),
};

/// The nginx module table (`load_module` looks this symbol up by name).
#[no_mangle]
#[used]
pub static mut ngx_http_mruby_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_HTTP_MRUBY_MODULE_CTX) as *mut c_void,
    // SAFETY: only the address of the static table is taken.
    commands: unsafe { addr_of_mut!(conf::COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_process: Some(init_worker),
    exit_process: Some(exit_worker),
    exit_master: Some(exit_master),
    ..ngx_module_t::default()
};

/// `ngx::ngx_modules!` for several modules: the `ngx` 0.5.1 macro's
/// argument counter fails for more than one module, so this one counts
/// with an array length. Emits `ngx_modules`, `ngx_module_names` and
/// `ngx_module_order`, which `load_module` reads. A module declared in a
/// submodule is named with `in`: `ngx_http_vlimit_module in limits`. The
/// optional `order: "a", "b", ...` is nginx's `ngx_module_order`: module
/// "a" is placed before module "b" in the cycle's module list (what
/// nginx's build does for a dynamic filter module, so that filters which
/// run after it, such as the copy filter, come above it in the chain).
#[macro_export]
macro_rules! ngx_modules_list {
    ($( $mod:ident $(in $($seg:ident)::+)? ),+ $(,)? $(; order: $($order:literal),+ )?) => {
        const NGX_MODULES_COUNT: usize = [$( stringify!($mod) ),+].len();

        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static mut ngx_modules: [*const ::ngx::ffi::ngx_module_t; NGX_MODULES_COUNT + 1] = [
            $( ::core::ptr::addr_of!($( $($seg::)+ )? $mod), )+
            ::core::ptr::null()
        ];

        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static mut ngx_module_names: [*const ::core::ffi::c_char; NGX_MODULES_COUNT + 1] = [
            $( concat!(stringify!($mod), "\0").as_ptr() as *const ::core::ffi::c_char, )+
            ::core::ptr::null()
        ];

        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static mut ngx_module_order: [*const ::core::ffi::c_char; [$($($order),+)?].len() + 1] = [
            $($( concat!($order, "\0").as_ptr() as *const ::core::ffi::c_char, )+)?
            ::core::ptr::null()
        ];
    };
}

#[cfg(feature = "export-modules")]
crate::ngx_modules_list!(
    ngx_http_mruby_module,
    ngx_http_vlimit_module in limits,
    ngx_http_mruby_ssl_module in tls,
    ngx_http_tenants_module in tenants,
    ngx_http_resources_module in resources,
    ngx_stream_mruby_module in stream;
    // the body filter sits below nginx's copy filter, which brings file
    // buffers into memory for it (no blocking read in the event loop)
    order: "ngx_http_mruby_module", "ngx_http_copy_filter_module"
);

/// `init_process`: runs `mruby_init_worker` in each worker (not in the
/// cache manager and loader).
extern "C" fn init_worker(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    if !ngx_util::is_serving_process() {
        return Status::NGX_OK.into();
    }
    // SAFETY: nginx passes the live cycle.
    let cycle = unsafe { &mut *cycle };
    match conf::init_worker(cycle) {
        Ok(()) => Status::NGX_OK.into(),
        Err(()) => Status::NGX_ERROR.into(),
    }
}

/// `exit_process`: runs `mruby_exit_worker` (workers only), then stops the
/// CPU-limit timer (the module may be unloaded before the process ends).
extern "C" fn exit_worker(cycle: *mut ngx_cycle_t) {
    if !ngx_util::is_serving_process() {
        return;
    }
    // SAFETY: nginx passes the live cycle.
    let cycle = unsafe { &mut *cycle };
    conf::exit_worker(cycle);
    vm::cpu_limit::stop_timer();
}

/// `exit_master`: the master (or single process) stops its CPU-limit timer
/// before nginx unloads the module, so no tick can reach unmapped code.
extern "C" fn exit_master(_cycle: *mut ngx_cycle_t) {
    vm::cpu_limit::stop_timer();
}
