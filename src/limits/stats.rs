//! `vlimit_stats`: the zones as JSON, for operators and tests.

use serde_json::{json, Map, Value};

use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};

use super::conf::{zone_ctx, MainConf};
use super::counting::{display_key, file_id};
use super::key::KeyKind;
use super::zone::ZoneCtx;
use super::HttpVlimitModule;

/// One zone's figures and live keys.
pub fn zone_json(zone: &ZoneCtx) -> Option<Value> {
    let mut locked = zone.lock()?;
    let table = &mut locked.table;
    let free = table.free_bytes();
    let header = table.header();
    let (size, capacity, live, rejections, zone_full, reclaimed) = (
        header.zone_size,
        header.entry_capacity,
        header.live_entries,
        header.rejections,
        header.zone_full,
        header.reclaimed,
    );
    let mut keys = Vec::with_capacity(live as usize);
    table.for_each(|entry| {
        let Some(kind) = entry.kind().and_then(KeyKind::from_tag) else { return };
        let mut key = Map::new();
        key.insert("kind".into(), json!(kind.name()));
        let shown = match kind {
            KeyKind::File => String::from_utf8_lossy(entry.label()).into_owned(),
            _ => display_key(kind, entry.key(), entry.label())
                .split_once(' ')
                .map_or(String::new(), |(_, k)| k.to_owned()),
        };
        key.insert("key".into(), json!(shown));
        if kind == KeyKind::File {
            let (dev, inode) = file_id(entry.key());
            key.insert("dev".into(), json!(dev));
            key.insert("inode".into(), json!(inode));
        }
        if entry.key_truncated() {
            key.insert("truncated".into(), json!(true));
        }
        key.insert("count".into(), json!(entry.count));
        key.insert("limit".into(), json!(entry.limit));
        key.insert("rejections".into(), json!(entry.rejections));
        keys.push(Value::Object(key));
    });
    drop(locked);
    Some(json!({
        "size": size,
        "used": size.saturating_sub(free),
        "free": free,
        "keys": live,
        "max_keys": capacity,
        "rejections": rejections,
        "zone_full": zone_full,
        "reclaimed": reclaimed,
        "entries": keys,
    }))
}

/// `{"<zone>": {...}, ...}` for every zone, or only `only`.
pub fn stats_value(main: &MainConf, only: Option<&str>) -> Option<Value> {
    let mut zones = Map::new();
    for &shm_zone in &main.zones {
        let Some(zone) = zone_ctx(shm_zone) else {
            continue;
        };
        if only.is_some_and(|name| name != zone.name) {
            continue;
        }
        zones.insert(zone.name.clone(), zone_json(zone)?);
    }
    if only.is_some() && zones.is_empty() {
        return None;
    }
    Some(Value::Object(zones))
}

/// Content handler of a `vlimit_stats` location.
///
/// # Safety
/// Called by nginx with a live request.
pub unsafe extern "C" fn stats_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let r = unsafe { &mut *r };
    // SAFETY: discarding the body of a live request.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let only = HttpVlimitModule::location_conf(&*r).and_then(|lcf| lcf.stats_zone.clone());
    let body = HttpVlimitModule::main_conf(&*r).and_then(|main| stats_value(main, only.as_deref()));
    let Some(body) = body else {
        return NGX_HTTP_NOT_FOUND as ngx_int_t;
    };
    let mut text = body.to_string();
    text.push('\n');
    send_json(r, text.as_bytes())
}

fn send_json(r: &mut ngx_http_request_t, body: &[u8]) -> ngx_int_t {
    // SAFETY: the buffer is allocated from the request pool and filled
    // before it is handed to the output filters.
    unsafe {
        let b = ngx_create_temp_buf(r.pool, body.len().max(1));
        if b.is_null() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        core::ptr::copy_nonoverlapping(body.as_ptr(), (*b).last, body.len());
        (*b).last = (*b).last.add(body.len());
        (*b).set_last_buf(1);
        (*b).set_last_in_chain(1);
        r.headers_out.status = NGX_HTTP_OK as ngx_uint_t;
        r.headers_out.content_length_n = body.len() as off_t;
        r.headers_out.content_type = ngx::ngx_string!("application/json");
        r.headers_out.content_type_len = r.headers_out.content_type.len;
        let rc = ngx_http_send_header(r);
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
            return rc;
        }
        let mut out = ngx_chain_t { buf: b, next: core::ptr::null_mut() };
        ngx_http_output_filter(r, &mut out)
    }
}
