//! `resource_stats;`: one JSON document with the classes, the tenant class,
//! the checker and auto-confinement settings, the current load, and each
//! host's usage with whether (and why) it is confined (like `vlimit_stats`).

use ngx::ffi::*;
use ngx::http::HttpModuleMainConf;
use resource_policy::confine::Signal;
use serde_json::{json, Map, Value};

use super::conf::MainConf;
use super::HttpResourcesModule;
use crate::ngx_util::send_body;

fn class_json(spec: &resource_policy::class::ClassSpec) -> Value {
    json!({
        "cpu_percent": spec.cpu_percent,
        "memory_bytes": spec.memory_bytes,
        "io_read_bps": spec.io_read_bps,
        "io_write_bps": spec.io_write_bps,
        "pids": spec.pids,
    })
}

/// The document `resource_stats` answers with.
pub fn stats_value(main: &MainConf) -> Value {
    let classes: Map<String, Value> = main.classes.iter().map(|c| (c.name.clone(), class_json(c))).collect();
    let checker = main.checker.as_ref().map(|c| {
        json!({
            "cpu_user_ms": c.spec.cpu_user_ms,
            "cpu_sys_ms": c.spec.cpu_sys_ms,
            "memory_bytes": c.spec.memory_bytes,
            "log": c.spec.log.as_deref().unwrap_or("error_log"),
        })
    });
    // the signal's reading now (or why it cannot be read)
    let current = main.auto_confine.as_ref().map(|spec| match super::usage::read_load(spec) {
        Ok(load) => Value::from(spec.signal.format(load)),
        Err(message) => Value::from(message),
    });
    let auto_confine = main.auto_confine.as_ref().map(|s| {
        let key = s.signal.key();
        let mut fields = Map::new();
        fields.insert("class".into(), json!(s.class));
        fields.insert(key.into(), json!(s.signal.format(s.threshold)));
        fields.insert("top".into(), json!(s.top));
        fields.insert("hold_seconds".into(), json!(s.hold_secs));
        fields.insert("window_seconds".into(), json!(s.window_secs));
        fields.insert(format!("{key}_source"), json!(super::usage::signal_source(s)));
        fields.insert("current".into(), current.clone().unwrap_or(Value::Null));
        Value::Object(fields)
    });
    let (hosts, capacity) = super::usage::all_hosts().unwrap_or_default();
    let mut hosts_json = Map::new();
    for record in &hosts {
        let reason = (record.confined != 0).then(|| {
            json!({
                "since": record.reason.since,
                "usage_ms": record.reason.usage_ms,
                "rank": record.reason.rank,
                (main.auto_confine.as_ref().map_or("load", |s| s.signal.key())): main.auto_confine.as_ref().map_or_else(
                    || resource_policy::units::format_load(record.reason.load),
                    |s| s.signal.format(record.reason.load)
                ),
            })
        });
        hosts_json.insert(
            record.name().to_string(),
            json!({
                "requests": record.requests,
                "cpu_user_ms": record.cpu_user_ms,
                "cpu_sys_ms": record.cpu_sys_ms,
                "mem_peak_kb": record.mem_peak_kb,
                "window_cpu_ms": super::usage::window_total(record),
                "confined": reason,
            }),
        );
    }
    // the current load at the top, as before `pressure=` existed (null with `pressure=`)
    let load = main.auto_confine.as_ref().filter(|s| s.signal == Signal::Load).and(current);
    json!({
        "cgroup_root": main.cgroup_root,
        "classes": classes,
        "tenant_class": main.tenant_class,
        "checker": checker,
        "auto_confine": auto_confine,
        "load": load,
        "zone": {"capacity": capacity, "hosts": hosts.len()},
        "hosts": hosts_json,
    })
}

/// Content handler of a `resource_stats` location.
///
/// # Safety
/// Called by nginx with a live request.
pub unsafe extern "C" fn stats_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let r = unsafe { &mut *r };
    if r.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t == 0 {
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    // SAFETY: discarding the body of a live request.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let Some(main) = HttpResourcesModule::main_conf(&*r) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let mut text = stats_value(main).to_string();
    text.push('\n');
    send_body(r, NGX_HTTP_OK as ngx_uint_t, "application/json", text.as_bytes())
}
