//! Per-request accounting: what the tenant path hands over once it has the
//! kernel's figures for the runner that served a request (CPU user and
//! system ms, peak memory). One call does everything: the host's usage in
//! the zone, `resource_checker`'s line when a threshold is passed, and the
//! figures for `$request_cpu_user_ms`, `$request_cpu_sys_ms` and
//! `$request_mem_peak_kb` (not found until then: `-` in an access log).
//!
//! The tenant path measures only when [`wanted`] says something reads the
//! figures.

use ngx::ffi::*;
use ngx::http::HttpModuleMainConf;
use ngx::ngx_string;
use resource_policy::checker::{CheckerRecord, Figures};

use super::request_class::{ctx_of, request_class, request_host, state_of};
use super::HttpResourcesModule;
use crate::ngx_util::{log, pool_str, str_bytes};

/// Whether a request's figures are read by anything: a resource directive
/// in `http{}`, or a figure variable used by the configuration (a log
/// format, `set`, ...). Ruby's `Nginx::Var` looks variables up by name at
/// run time, so a script alone does not turn accounting on.
pub fn wanted(r: &ngx_http_request_t) -> bool {
    HttpResourcesModule::main_conf(r).is_some_and(|m| m.accounting)
}

/// Whether the configuration parsed so far indexed a figure variable
/// (nginx indexes a variable when a directive compiles a reference to it).
pub(super) fn variables_indexed(cf: &mut ngx_conf_t) -> bool {
    let Some(cmcf) = ngx::http::NgxHttpCoreModule::main_conf(cf) else {
        return false;
    };
    let vars = &cmcf.variables;
    if vars.elts.is_null() {
        return false;
    }
    // SAFETY: cmcf->variables is an array of nelts ngx_http_variable_t.
    let vars = unsafe { core::slice::from_raw_parts(vars.elts as *const ngx_http_variable_t, vars.nelts) };
    vars.iter().any(|v| {
        let name = str_bytes(&v.name);
        name == b"request_cpu_user_ms" || name == b"request_cpu_sys_ms" || name == b"request_mem_peak_kb"
    })
}

/// Records one served request: `owner` is the runner's uid, `script` the
/// file it ran.
pub fn record_request(r: &mut ngx_http_request_t, figures: Figures, owner: u32, script: &str) {
    if let Some(state) = state_of(r) {
        state.figures = Some(figures);
    }
    let host = request_host(r);
    super::usage::record_usage(&host, figures.cpu_user_ms, figures.cpu_sys_ms, figures.mem_peak_kb);
    let Some(checker) = HttpResourcesModule::main_conf(&*r).and_then(|m| m.checker.as_ref()) else {
        return;
    };
    if !checker.spec.is_over(&figures) {
        return;
    }
    let uri = String::from_utf8_lossy(str_bytes(&r.unparsed_uri)).into_owned();
    let now = ngx_timeofday();
    let time_ms = now.sec as u64 * 1000 + now.msec as u64;
    let class = request_class(r).map(|(c, _)| c.name.as_str());
    let record = CheckerRecord { time_ms, host: &host, uri: &uri, script, owner, figures, class };
    let line = record.json_line();
    // SAFETY: the connection's log carries the client and request context.
    let request_log = unsafe { (*r.connection).log };
    if checker.log_file.is_null() {
        log(request_log, NGX_LOG_WARN, &format!("resource_checker: {}", line.trim_end()));
        return;
    }
    // SAFETY: nginx opened the file at start (and reopens it on USR1); one
    // write(2) of a line to an O_APPEND file is not interleaved with others.
    let written = unsafe { libc::write((*checker.log_file).fd, line.as_ptr() as *const libc::c_void, line.len()) };
    if written != line.len() as isize {
        let error = std::io::Error::last_os_error();
        log(request_log, NGX_LOG_ERR, &format!("resource_checker: cannot write its log line: {error}"));
    }
}

#[derive(Clone, Copy)]
#[repr(usize)]
enum Field {
    CpuUser,
    CpuSys,
    MemPeak,
}

unsafe extern "C" fn get_figure(r: *mut ngx_http_request_t, v: *mut ngx_variable_value_t, data: usize) -> ngx_int_t {
    // SAFETY: nginx passes a live request and the value to fill.
    let (r, v) = unsafe { (&*r, &mut *v) };
    let Some(figures) = ctx_of(r).and_then(|state| state.figures) else {
        v.set_not_found(1);
        return NGX_OK as ngx_int_t;
    };
    let value = match data {
        0 => figures.cpu_user_ms,
        1 => figures.cpu_sys_ms,
        _ => figures.mem_peak_kb,
    };
    let Some(text) = pool_str(r.pool, value.to_string().as_bytes()) else {
        return NGX_ERROR as ngx_int_t;
    };
    v.data = text.data;
    v.set_len(text.len as u32);
    v.set_valid(1);
    v.set_no_cacheable(1);
    v.set_not_found(0);
    NGX_OK as ngx_int_t
}

/// Registers the figure variables (preconfiguration).
pub(super) fn add_variables(cf: &mut ngx_conf_t) -> Result<(), ()> {
    let vars: [(ngx_str_t, Field); 3] = [
        (ngx_string!("request_cpu_user_ms"), Field::CpuUser),
        (ngx_string!("request_cpu_sys_ms"), Field::CpuSys),
        (ngx_string!("request_mem_peak_kb"), Field::MemPeak),
    ];
    for (mut name, field) in vars {
        // SAFETY: adds a variable to the configuration being parsed.
        let var = unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t) };
        if var.is_null() {
            return Err(());
        }
        // SAFETY: ngx_http_add_variable returned a live variable.
        unsafe {
            (*var).get_handler = Some(get_figure);
            (*var).data = field as usize;
        }
    }
    Ok(())
}
