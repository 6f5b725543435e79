//! Which class a request runs in, and `$resource_class`. In order:
//! auto-confinement (a confined host's requests go to its class whatever
//! else says: the server protects itself), then `Nginx::Request#resource_class=`
//! from a script before content, then `resource_class_for`. The class is
//! decided once per request, at its first read, and kept in the request's
//! state: every later read (`$resource_class`, `r.resource_class`, the
//! `resource_checker` line) gives the same answer, and an unknown
//! `resource_class_for $variable` value is logged once. A script's
//! `resource_class=` decides again; the tenant path fixes the class with
//! [`fix_request_class`] when it asks for the runner (after every Ruby
//! handler before content), and the class is final from then on.

use core::ffi::c_void;

use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf};
use ngx::ngx_string;
use resource_policy::checker::Figures;
use resource_policy::class::ClassSpec;

use super::conf::{ClassChoice, MainConf};
use super::HttpResourcesModule;
use crate::ngx_util::{log, str_bytes};

/// Where a request's class came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassSource {
    AutoConfine,
    Script,
    Config,
}

/// What this module keeps per request (in `r->pool`, no cleanup needed).
#[derive(Default)]
pub(super) struct RequestState {
    /// A script's `resource_class=`; `Some(None)`: it chose no class.
    chosen: Option<Option<usize>>,
    /// The class decided (index in `MainConf::classes`); `Some(None)`: no
    /// class; `None`: not decided yet.
    decided: Option<Option<(usize, ClassSource)>>,
    /// The runner was asked for in the decided class: it no longer changes.
    fixed: bool,
    /// The kernel's figures for the runner that served the request (`accounting.rs`).
    pub figures: Option<Figures>,
}

pub(super) fn ctx_of<'a>(r: &ngx_http_request_t) -> Option<&'a mut RequestState> {
    let index = HttpResourcesModule::module().ctx_index;
    // SAFETY: r->ctx has one slot per HTTP module; ours holds a RequestState (in r->pool) or NULL.
    unsafe { (*r.ctx.add(index) as *mut RequestState).as_mut() }
}

/// The request's state, created on first use; `None` when out of memory.
pub(super) fn state_of<'a>(r: &mut ngx_http_request_t) -> Option<&'a mut RequestState> {
    if let Some(state) = ctx_of(r) {
        return Some(state);
    }
    // SAFETY: r->pool lives as long as the request; the struct needs no cleanup.
    let state = unsafe { ngx_pcalloc(r.pool, core::mem::size_of::<RequestState>()) } as *mut RequestState;
    if state.is_null() {
        return None;
    }
    // SAFETY: state is fresh, aligned pool memory; r->ctx has a slot for this module.
    unsafe {
        state.write(RequestState::default());
        *r.ctx.add(HttpResourcesModule::module().ctx_index) = state as *mut c_void;
        state.as_mut()
    }
}

/// `Nginx::Request#resource_class = name`: an empty name means no class;
/// an unknown one is an error (the script's, raised in Ruby).
pub fn set_request_class(r: &mut ngx_http_request_t, name: &[u8]) -> Result<(), String> {
    let main = HttpResourcesModule::main_conf(&*r).ok_or("resource control is not configured")?;
    if name.len() > resource_policy::class::MAX_NAME {
        return Err(format!(
            "resource class name is {} bytes long, at most {}",
            name.len(),
            resource_policy::class::MAX_NAME
        ));
    }
    let chosen = if name.is_empty() {
        None
    } else {
        let text = String::from_utf8_lossy(name);
        let index = main.classes.iter().position(|c| c.name.as_bytes() == name);
        Some(index.ok_or_else(|| format!("unknown resource class \"{text}\" (no resource_class declares it)"))?)
    };
    let state = state_of(r).ok_or("out of memory")?;
    if state.fixed {
        return Err(String::from("the request has its runner already: its class can no longer change"));
    }
    state.chosen = Some(chosen);
    state.decided = None;
    Ok(())
}

/// The request's virtual host (Host header without port, else the server
/// name, so requests without a Host are not all pooled under one name).
pub(super) fn request_host(r: &ngx_http_request_t) -> String {
    let mut host = str_bytes(&r.headers_in.server);
    if host.is_empty() {
        if let Some(cscf) = ngx::http::NgxHttpCoreModule::server_conf(r) {
            host = str_bytes(&cscf.server_name);
        }
    }
    String::from_utf8_lossy(host).into_owned()
}

/// The class `r` runs in, and why; `None`: no class. Decided at the first
/// call (see the top of this file), the same answer afterwards.
pub fn request_class(r: &mut ngx_http_request_t) -> Option<(&'static ClassSpec, ClassSource)> {
    let main: &'static MainConf = HttpResourcesModule::main_conf(&*r)?;
    if main.classes.is_empty() {
        return None;
    }
    let decided = match ctx_of(r).and_then(|state| state.decided) {
        Some(decided) => decided,
        None => {
            let decided = decide(r, main);
            // out of memory: not kept, decided again at the next read
            if let Some(state) = state_of(r) {
                state.decided = Some(decided);
            }
            decided
        }
    };
    decided.and_then(|(i, source)| main.classes.get(i).map(|c| (c, source)))
}

/// The class the tenant path asks the runner for: [`request_class`], which
/// no script can change afterwards.
pub fn fix_request_class(r: &mut ngx_http_request_t) -> Option<(&'static ClassSpec, ClassSource)> {
    let class = request_class(r);
    if let Some(state) = ctx_of(r) {
        state.fixed = true;
    }
    class
}

/// Works the class out from the current state (auto-confinement, the
/// script's choice, the location's `resource_class_for`).
fn decide(r: &mut ngx_http_request_t, main: &'static MainConf) -> Option<(usize, ClassSource)> {
    if let Some(spec) = &main.auto_confine {
        if super::usage::is_confined(&request_host(r)) {
            let index = main.classes.iter().position(|c| c.name == spec.class);
            return index.map(|i| (i, ClassSource::AutoConfine));
        }
    }
    if let Some(chosen) = ctx_of(r).and_then(|ctx| ctx.chosen) {
        return chosen.map(|i| (i, ClassSource::Script));
    }
    let choice = HttpResourcesModule::location_conf(&*r)?.class_for?;
    let class = match choice {
        ClassChoice::Off => None,
        ClassChoice::Static(i) => Some(i),
        ClassChoice::Variable(cv) => {
            let mut value = ngx_str_t::default();
            // SAFETY: cv was compiled at configuration time; the value lives in r->pool.
            if unsafe { ngx_http_complex_value(r, cv, &mut value) } != NGX_OK as ngx_int_t {
                return None;
            }
            let name = str_bytes(&value);
            if name.is_empty() {
                return None;
            }
            let found = main.classes.iter().position(|c| c.name.as_bytes() == name);
            if found.is_none() {
                // SAFETY: the connection's log carries the client and request context.
                let request_log = unsafe { (*r.connection).log };
                log(
                    request_log,
                    NGX_LOG_WARN,
                    &format!(
                        "resource_class_for: unknown class \"{}\", the request runs without a class",
                        String::from_utf8_lossy(name)
                    ),
                );
            }
            found
        }
    };
    class.map(|i| (i, ClassSource::Config))
}

unsafe extern "C" fn get_class_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request and the value to fill.
    let (r, v) = unsafe { (&mut *r, &mut *v) };
    let name: &'static str = request_class(r).map_or("", |(c, _)| c.name.as_str());
    v.data = name.as_ptr() as *mut u8;
    v.set_len(name.len() as u32);
    v.set_valid(1);
    v.set_no_cacheable(1);
    v.set_not_found(0);
    NGX_OK as ngx_int_t
}

/// Registers `$resource_class` (preconfiguration).
pub(super) fn add_variables(cf: &mut ngx_conf_t) -> Result<(), ()> {
    let mut name = ngx_string!("resource_class");
    // SAFETY: adds a variable to the configuration being parsed.
    let var = unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t) };
    if var.is_null() {
        return Err(());
    }
    // SAFETY: ngx_http_add_variable returned a live variable.
    unsafe { (*var).get_handler = Some(get_class_variable) };
    Ok(())
}
