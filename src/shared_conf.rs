//! Settings of `http{}` that more than one feature reads. Each is set by
//! its feature's directive and read through here, so no feature folder
//! reads another's configuration (`tenants/` and `resources/` both import
//! this, never each other's conf, nor `conf/`). The values live in the
//! `http{}` main conf of the core module (a field only this file touches).
//!
//! - The supervisor program: `tenant_supervisor <path>;`, else
//!   `ngx-mruby-supervisor` next to the nginx binary. The tenant runners
//!   start it and ask it about `tenant_cgroup` at `nginx -t`; resource
//!   control asks it about `resource_cgroup_root` (at `nginx -t`, and for
//!   the `Cgroup` API's layout). One program for both.
//! - `tenant_cgroup <path>;`: resource control checks at `nginx -t` that
//!   `resource_cgroup_root` is apart from it (their groups would collide).

use std::path::{Path, PathBuf};

use ngx::ffi::*;
use ngx::http::HttpModuleMainConf;

use crate::HttpMrubyModule;

/// The supervisor's file name, next to the nginx binary unless `tenant_supervisor` says otherwise.
pub const SUPERVISOR_NAME: &str = "ngx-mruby-supervisor";

/// The shared settings (a field of the `http{}` main conf).
#[derive(Default)]
pub struct SharedConf {
    /// `tenant_supervisor`, as configured (absolute, checked by its directive).
    supervisor_program: Option<String>,
    /// `tenant_cgroup`, as configured.
    tenant_cgroup: Option<String>,
}

impl SharedConf {
    /// The supervisor program: `tenant_supervisor`, else next to the nginx binary.
    pub fn supervisor_program(&self) -> PathBuf {
        if let Some(path) = &self.supervisor_program {
            return PathBuf::from(path);
        }
        let nginx = std::fs::read_link("/proc/self/exe").unwrap_or_default();
        nginx.parent().unwrap_or(Path::new("/")).join(SUPERVISOR_NAME)
    }
}

/// Records `tenant_supervisor`'s path for the configuration `cf` parses.
pub fn set_supervisor_program(cf: &ngx_conf_t, path: String) -> Result<(), String> {
    let main = HttpMrubyModule::main_conf_mut(cf).ok_or("tenant_supervisor: no http main conf")?;
    if main.shared.supervisor_program.is_some() {
        return Err(String::from("\"tenant_supervisor\" directive is duplicate"));
    }
    main.shared.supervisor_program = Some(path);
    Ok(())
}

/// The supervisor program of the configuration `cf` parses.
pub fn supervisor_program(cf: &ngx_conf_t) -> PathBuf {
    HttpMrubyModule::main_conf(cf).map(|m| m.shared.supervisor_program()).unwrap_or_else(default_program)
}

/// The supervisor program of `cycle`'s configuration.
pub fn supervisor_program_of(cycle: &ngx_cycle_t) -> PathBuf {
    HttpMrubyModule::main_conf(cycle).map(|m| m.shared.supervisor_program()).unwrap_or_else(default_program)
}

/// Records `tenant_cgroup`'s path (its directive checks it is given once).
pub fn set_tenant_cgroup(cf: &ngx_conf_t, path: String) -> Result<(), String> {
    let main = HttpMrubyModule::main_conf_mut(cf).ok_or("tenant_cgroup: no http main conf")?;
    main.shared.tenant_cgroup = Some(path);
    Ok(())
}

/// `tenant_cgroup` of the configuration `cf` parses.
pub fn tenant_cgroup(cf: &ngx_conf_t) -> Option<String> {
    HttpMrubyModule::main_conf(cf).and_then(|m| m.shared.tenant_cgroup.clone())
}

fn default_program() -> PathBuf {
    SharedConf::default().supervisor_program()
}
