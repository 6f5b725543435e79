//! `ngx_http_resources_module`: resource control per tenant and per
//! request (issue 10).
//!
//! # Design
//!
//! The work of a dynamic request happens in its tenant runner (issue 9),
//! never in the event-loop worker, which is never throttled. Classes
//! (`resource_class`) are sets of cgroup limits under the sub-tree
//! `resource_cgroup_root` names; a request's class comes from
//! `resource_class_for` (static or `$variable`), from Ruby
//! (`Nginx::Request#resource_class=`), or from auto-confinement of the
//! hosts that cause load. The supervisor, which holds the privileges,
//! moves the runner that serves the request into the class's group and
//! back; the figures (CPU user/system ms, peak memory) come from the
//! kernel's counters read by the trusted side, never from the runner.
//!
//! What is where: the rules themselves (class limits, checker thresholds,
//! the auto-confine decision over a sliding window) are the plain-Rust
//! `resource-policy` crate, unit-tested without nginx; this folder holds
//! the directive table (`conf.rs`), `resource_stats` (`stats.rs`), the
//! shared zone of per-host usage (`zone.rs`) and what feeds and reads it,
//! with the auto-confine step (`usage.rs`) and its per-worker clock
//! (`confine_timer.rs`).
//! Cgroup layout detection is shared with the supervisor (its
//! `tenant_cgroup`), not written here.
//!
//! May import: `shm/`, `ngx_util` and `shared_conf` (settings other
//! features set, e.g. the supervisor program) only (the tenant path and the Ruby
//! API call into this folder, never the other way).

pub mod accounting;
pub mod cgroup_groups;
pub mod conf;
pub mod confine_timer;
pub mod hierarchy;
pub mod request_class;
pub mod stats;
pub mod usage;
pub mod zone;

pub use accounting::{record_request, wanted as accounting_wanted};
pub use request_class::{fix_request_class, request_class, set_request_class, ClassSource};
pub use usage::{host_usage, is_confined, record_usage};

use core::ffi::{c_char, c_void};
use core::ptr::{addr_of, addr_of_mut};

use ngx::core::Status;
use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf};

use conf::MainConf;

/// The module's type for the `ngx` crate's configuration helpers.
pub struct HttpResourcesModule;

impl HttpModule for HttpResourcesModule {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module table is a static; nginx only writes its indices at load.
        unsafe { &*addr_of!(ngx_http_resources_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a live configuration context.
        let cf = unsafe { &mut *cf };
        match request_class::add_variables(cf).and_then(|()| accounting::add_variables(cf)) {
            Ok(()) => Status::NGX_OK.into(),
            Err(()) => Status::NGX_ERROR.into(),
        }
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a live configuration context.
        let cf = unsafe { &mut *cf };
        match conf::check_main(cf) {
            Ok(()) => Status::NGX_OK.into(),
            Err(()) => Status::NGX_ERROR.into(),
        }
    }

    /// The usual merge, then a static `resource_class_for` name becomes its
    /// class's index (every `resource_class` of `http{}` is parsed by now;
    /// an unknown name is reported by `check_main`).
    unsafe extern "C" fn merge_loc_conf(cf: *mut ngx_conf_t, prev: *mut c_void, conf: *mut c_void) -> *mut c_char {
        // SAFETY: nginx passes the live cf and two LocConfs this module created.
        let (cf_ref, prev, loc) =
            unsafe { (&*cf, &*(prev as *const conf::LocConf), &mut *(conf as *mut conf::LocConf)) };
        if ngx::http::Merge::merge(loc, prev).is_err() {
            return ngx::core::NGX_CONF_ERROR as *mut c_char;
        }
        if let Some(main) = HttpResourcesModule::main_conf(cf_ref) {
            conf::resolve_location(main, loc);
        }
        core::ptr::null_mut()
    }
}

// SAFETY: the associated types are the structs this module allocates.
unsafe impl HttpModuleMainConf for HttpResourcesModule {
    type MainConf = MainConf;
}

// SAFETY: as above; the server level keeps no state of its own.
unsafe impl HttpModuleServerConf for HttpResourcesModule {
    type ServerConf = ();
}

// SAFETY: as above.
unsafe impl HttpModuleLocationConf for HttpResourcesModule {
    type LocationConf = conf::LocConf;
}

static NGX_HTTP_RESOURCES_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(HttpResourcesModule::preconfiguration),
    postconfiguration: Some(HttpResourcesModule::postconfiguration),
    create_main_conf: Some(HttpResourcesModule::create_main_conf),
    init_main_conf: Some(HttpResourcesModule::init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(HttpResourcesModule::create_loc_conf),
    merge_loc_conf: Some(HttpResourcesModule::merge_loc_conf),
};

/// The nginx module table of resource control.
#[no_mangle]
#[used]
pub static mut ngx_http_resources_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_HTTP_RESOURCES_MODULE_CTX) as *mut c_void,
    // SAFETY: only the address of the static table is taken.
    commands: unsafe { addr_of_mut!(conf::COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_process: Some(init_worker),
    exit_process: Some(exit_worker),
    ..ngx_module_t::default()
};

/// `init_process`: a worker with `resource_auto_confine` starts its
/// one-second auto-confine timer.
extern "C" fn init_worker(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the live cycle.
    let cycle = unsafe { &*cycle };
    match confine_timer::start(cycle) {
        Ok(()) => Status::NGX_OK.into(),
        Err(()) => Status::NGX_ERROR.into(),
    }
}

/// `exit_process`: the timer goes (the module may be unloaded after).
extern "C" fn exit_worker(_cycle: *mut ngx_cycle_t) {
    confine_timer::stop();
}
