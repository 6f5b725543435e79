//! `ngx_http_tenants_module`: tenant runners. Every site's code runs as the
//! site's owner, in a process that nothing it does can unlock (issue 9).
//!
//! # Design
//!
//! **Who runs what.**
//! - *nginx master* (root): parses the configuration and, at each cycle
//!   (start and reload, never for `nginx -t`), execs the supervisor program
//!   `ngx-mruby-supervisor` (`spawn.rs`): a fresh program image, with fds 0-2
//!   (null, null, error log) and fd 3 (the read end of a *life pipe*)
//!   and nothing else; its options are the `tenant_*` settings of `http{}`.
//!   The master keeps the pipe's write end; the workers inherit it.
//! - *keeper* (root, reduced to CAP_SETUID, SETGID, SETPCAP, KILL, CHOWN,
//!   DAC_READ_SEARCH, bounding set included, `no_new_privs`): detaches,
//!   creates the generation's socket directory (root:worker group, 0710),
//!   creates this generation's cgroups (`tenant_cgroup`; for that it also
//!   keeps CAP_DAC_OVERRIDE, which the supervisor drops), forks the
//!   *supervisor* and starts a new one a second after it dies.
//!   It is a child subreaper, so a killed supervisor's runners (which die
//!   with it, PR_SET_PDEATHSIG) are reaped, never left behind.
//! - *supervisor* (same privileges): listens on `supervisor.sock`,
//!   accepts only peers whose SO_PEERCRED uid and gid are the worker
//!   user's and whose parent is this nginx's master
//!   (`supervisor/src/peers.rs`), and answers a fixed one-line protocol
//!   (the `tenant-protocol` crate, shared by both sides): `A <tag> <kind> <uid> <gid> <docroot>`
//!   asks for a runner, `R <runner> <served>` gives it back, `G <runner>`
//!   asks a worker for one it keeps; `M`/`H` move one of its runners into
//!   a `Cgroup` API group and back, for `Cgroup#attach` in
//!   `mruby_init_worker` (`control.rs`, `supervisor/src/server/attach.rs`). It re-checks the owner
//!   of the document root itself (never trusting the worker for the uid),
//!   refuses and logs anything else, never parses HTTP and never runs
//!   tenant code.
//! - *runners* (in the owner's cgroup below `tenant_cgroup` when set,
//!   entered while still root: `supervisor/src/cgroup.rs`; the owner's uid and gid, no supplementary groups,
//!   `no_new_privs`, every capability set empty including the bounding set,
//!   Landlock: read the document root, write only `tenant_writable`, read
//!   the runtime paths; signals and abstract sockets scoped; RLIMIT_NPROC;
//!   fds beyond 0-2 closed): forked by the supervisor, which binds the
//!   runner's socket (`r<id>.sock`, root:worker group 0660) and hands it
//!   over as fd 0, the FastCGI convention; the runner then execs its
//!   program: `php-cgi` (`tenant_interpreter`), or for `tenant_cgi on` the
//!   supervisor program's own CGI runner, which forks and execs each
//!   requested program (already as the owner), or for `.rb` (and any file
//!   of a location with `mruby_add_handler on`) its Ruby
//!   runner (one mruby VM for the runner's life, the Ruby API built from
//!   the FastCGI parameters). A runner belongs to one
//!   owner, document root and kind for life and serves one request at a
//!   time; it is recycled after `tenant_max_requests`, reaped after
//!   `tenant_idle_timeout`, and the least recently used idle one is reaped
//!   when `tenant_max_runners` would be exceeded (runners being killed count
//!   until reaped, so the process table never holds more than the cap).
//! - *nginx workers* (the `user` of nginx.conf, which must not be root;
//!   `no_new_privs`, no capabilities, checked at start): `tenant_runner on`
//!   makes the precontent handler (`access.rs`) map the URI to a file,
//!   check its owner on descriptors opened with O_PATH (`owner.rs`: thesis
//!   §3.2.4), then ask the supervisor over the worker's one persistent,
//!   non-blocking connection (`link.rs`). The request waits as an nginx
//!   event (NGX_DONE, a request reference, a timer), other requests go on.
//!   The answer sets `$tenant_socket` for `fastcgi_pass unix:$tenant_socket;`
//!   and `$tenant_uid`, `$tenant_runner_pid`, `$tenant_spawn`. A pool
//!   cleanup ends the request's use of the runner however the request
//!   ends: `K` after a 502, a 504 or a client abort (the runner may still
//!   be busy: the supervisor kills it and its whole session); otherwise the
//!   worker keeps it (`tenant_protocol::held`) for its next request of the same owner,
//!   site and kind, which then takes it with no round trip (still one
//!   request at a time, still after the owner checks), and gives it back
//!   (`R`) after about a second idle, when its budget of requests is spent
//!   (`tenant_max_requests`: the supervisor hands out half a runner's life
//!   per lease and starts a standby successor before the last one), when
//!   the supervisor asks (`G`: another worker's request wants it, a cap is
//!   reached, or it died; a busy one is answered `B` and comes back after
//!   its request), and when the worker exits.
//!
//! **Lifetimes.** nginx stops: every holder of the life pipe's write end is
//! gone, the keeper and supervisor read EOF, kill the runners and exit.
//! Reload: the master starts a new keeper for the new configuration (a new
//! generation directory) and closes its end of the old pipe; the old
//! supervisor serves the old workers until the last one exits, then stops
//! with its runners. A supervisor killed: the workers see EOF, log it and
//! answer 503 for tenant requests until the keeper's new supervisor is up;
//! its runners die with it. A worker killed: the supervisor sees EOF and
//! kills the runners that worker's requests held.
//!
//! **What is trusted for what.** The worker's word is trusted for nothing
//! that matters: whatever uid, document root or kind it names, a runner can
//! only be the owner of that document root (checked by the supervisor),
//! confined to that document root. The worker's own owner checks give the
//! operator's rules (403 with the rule named) before anything is spawned.

pub mod access;
pub mod conf;
pub mod control;
pub mod link;
pub mod owner;
pub mod spawn;
pub mod usage;
pub mod variables;

use core::ffi::{c_char, c_void};
use core::ptr::{addr_of, addr_of_mut};

use ngx::core::Status;
use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule};

use crate::ngx_util::log;
use conf::MainConf;

/// The module's type for the `ngx` crate's configuration helpers.
pub struct HttpTenantsModule;

impl HttpModule for HttpTenantsModule {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module table is a static; nginx only writes its indices at load.
        unsafe { &*addr_of!(ngx_http_tenants_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a live configuration context.
        let cf = unsafe { &mut *cf };
        match variables::add_variables(cf) {
            Ok(()) => Status::NGX_OK.into(),
            Err(()) => Status::NGX_ERROR.into(),
        }
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a live configuration context.
        let cf = unsafe { &mut *cf };
        match postconfiguration(cf) {
            Ok(()) => Status::NGX_OK.into(),
            Err(()) => Status::NGX_ERROR.into(),
        }
    }

    /// The usual merge, then the checks that need the location's other
    /// modules (`cf->ctx` holds this location's confs while merging; the
    /// mruby module, listed first, is merged already).
    unsafe extern "C" fn merge_loc_conf(cf: *mut ngx_conf_t, prev: *mut c_void, conf: *mut c_void) -> *mut c_char {
        // SAFETY: nginx passes the live cf and two LocConfs this module created.
        let (cf_ref, prev, loc) =
            unsafe { (&*cf, &*(prev as *const conf::LocConf), &mut *(conf as *mut conf::LocConf)) };
        if ngx::http::Merge::merge(loc, prev).is_err() {
            return ngx::core::NGX_CONF_ERROR as *mut c_char;
        }
        crate::ngx_util::conf_result(cf, conf::check_location(cf_ref, loc))
    }
}

// SAFETY: the associated types are the structs this module allocates.
unsafe impl HttpModuleMainConf for HttpTenantsModule {
    type MainConf = MainConf;
}

// SAFETY: as above; the server level keeps no state of its own.
unsafe impl HttpModuleServerConf for HttpTenantsModule {
    type ServerConf = ();
}

// SAFETY: as above.
unsafe impl HttpModuleLocationConf for HttpTenantsModule {
    type LocationConf = conf::LocConf;
}

/// Registers the runner's handler when some location has `tenant_runner on`:
/// in PRECONTENT, so it runs after the whole ACCESS phase (`allow`/`deny`,
/// `auth_basic`, `mruby_access_handler`, under `satisfy any` as well): a
/// refused request costs no runner, and a class chosen from Ruby before
/// content is the one the runner is put in.
fn postconfiguration(cf: &mut ngx_conf_t) -> Result<(), ()> {
    let used = HttpTenantsModule::main_conf(cf).is_some_and(|m| m.used);
    if !used {
        return Ok(());
    }
    conf::check_main(cf)?;
    let cmcf = NgxHttpCoreModule::main_conf_mut(cf).ok_or(())?;
    let phase = ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE as usize;
    // SAFETY: the phase handler arrays are initialised before postconfiguration.
    unsafe {
        let h = ngx_array_push(&mut cmcf.phases[phase].handlers) as *mut ngx_http_handler_pt;
        if h.is_null() {
            return Err(());
        }
        *h = Some(access::access_handler);
    }
    // the request's figures ($request_cpu_*) are read before the access log
    // writes its line: nginx runs log-phase handlers in array order, and
    // ngx_http_log_module's (a static module) was pushed first
    let log_phase = ngx_http_phases_NGX_HTTP_LOG_PHASE as usize;
    // SAFETY: as above; the array holds ngx_http_handler_pt values, moved within it.
    unsafe {
        let handlers = &mut cmcf.phases[log_phase].handlers;
        let h = ngx_array_push(handlers) as *mut ngx_http_handler_pt;
        if h.is_null() {
            return Err(());
        }
        let first = handlers.elts as *mut ngx_http_handler_pt;
        core::ptr::copy(first, first.add(1), handlers.nelts - 1);
        *first = Some(access::log_handler);
    }
    Ok(())
}

static NGX_HTTP_TENANTS_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(HttpTenantsModule::preconfiguration),
    postconfiguration: Some(HttpTenantsModule::postconfiguration),
    create_main_conf: Some(HttpTenantsModule::create_main_conf),
    init_main_conf: Some(HttpTenantsModule::init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(HttpTenantsModule::create_loc_conf),
    merge_loc_conf: Some(HttpTenantsModule::merge_loc_conf),
};

/// The nginx module table of the tenant runners.
#[no_mangle]
#[used]
pub static mut ngx_http_tenants_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_HTTP_TENANTS_MODULE_CTX) as *mut c_void,
    // SAFETY: only the address of the static table is taken.
    commands: unsafe { addr_of_mut!(conf::COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_module: Some(init_module),
    init_process: Some(init_worker),
    exit_process: Some(exit_worker),
    ..ngx_module_t::default()
};

/// The tenant settings of the running cycle, if any location uses them.
fn active_main_conf(cycle: &ngx_cycle_t) -> Option<&'static MainConf> {
    HttpTenantsModule::main_conf(cycle).filter(|m| m.used)
}

/// `init_module`: in the master (start and reload; not `nginx -t`), starts
/// this configuration's supervisor.
extern "C" fn init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the live cycle.
    let cycle = unsafe { &mut *cycle };
    // SAFETY: plain reads of nginx globals set before configuration.
    if unsafe { ngx_test_config } != 0 {
        return Status::NGX_OK.into();
    }
    let Some(main) = active_main_conf(cycle) else {
        spawn::retire_previous();
        return Status::NGX_OK.into();
    };
    match spawn::start_supervisor(cycle, main) {
        Ok(()) => Status::NGX_OK.into(),
        Err(message) => {
            log(cycle.log, NGX_LOG_EMERG, &format!("tenant_runner: {message}"));
            Status::NGX_ERROR.into()
        }
    }
}

/// `exit_process`: the runners the worker kept idle go back to the
/// supervisor (which would otherwise kill them as held by a lost worker).
extern "C" fn exit_worker(_cycle: *mut ngx_cycle_t) {
    link::give_all_back();
}

/// `init_process`: a worker that serves tenants holds no capability and
/// can never gain one (`no_new_privs`), whatever nginx was told.
extern "C" fn init_worker(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the live cycle.
    let cycle = unsafe { &*cycle };
    if active_main_conf(cycle).is_none() {
        return Status::NGX_OK.into();
    }
    if let Err(message) = spawn::confine_worker() {
        log(cycle.log, NGX_LOG_EMERG, &format!("tenant_runner: {message}"));
        return Status::NGX_ERROR.into();
    }
    Status::NGX_OK.into()
}
