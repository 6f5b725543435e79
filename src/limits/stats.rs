//! `vlimit_stats`: the zones as JSON or in the Prometheus text format, for
//! operators, scrapers and tests.
//!
//! A zone is copied out under its lock ([`ZoneSnapshot::take`]: plain
//! numbers and key bytes) and formatted after the lock is released, so
//! workers counting requests never wait for the formatting. The formatters
//! take only a snapshot (never the locked table), and each first checks
//! that this worker does not hold the zone's lock ([`ZoneSnapshot::formatting`]):
//! if a change ever formats under it, an `[alert]` says so, and
//! `t/vlimit-prometheus.t` fails.

use serde_json::{json, Map, Value};

use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};

use super::conf::{zone_ctx, MainConf};
use super::counting::{display_key, file_id};
use super::key::KeyKind;
use super::zone::{LockProbe, ZoneCtx, MAX_SLOTS};
use super::HttpVlimitModule;
use crate::metrics::prometheus::{self, Exposition, MetricType};
use crate::ngx_util::send_body;

/// The output formats of `vlimit_stats` (`format=` parameter or query argument).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatsFormat {
    #[default]
    Json,
    Prometheus,
}

impl StatsFormat {
    pub fn parse(name: &[u8]) -> Option<StatsFormat> {
        match name {
            b"json" => Some(StatsFormat::Json),
            b"prometheus" => Some(StatsFormat::Prometheus),
            _ => None,
        }
    }
}

/// One live key of a zone, as copied out under the lock.
struct KeySnapshot {
    kind: KeyKind,
    key: Vec<u8>,
    label: Vec<u8>,
    truncated: bool,
    count: u32,
    limit: u16,
    rejections: u32,
}

impl KeySnapshot {
    /// The key as shown: the address of an ip, the path of a file (its
    /// label), the text of a host or key as it came (JSON and the
    /// Prometheus format escape it themselves; bytes that are not UTF-8
    /// become U+FFFD).
    fn shown(&self) -> String {
        match self.kind {
            KeyKind::Ip => display_key(self.kind, &self.key, &self.label)
                .split_once(' ')
                .map_or(String::new(), |(_, k)| k.to_owned()),
            KeyKind::File => String::from_utf8_lossy(&self.label).into_owned(),
            KeyKind::Path | KeyKind::Host | KeyKind::Key => String::from_utf8_lossy(&self.key).into_owned(),
        }
    }
}

/// One zone's figures and live keys at one moment.
struct ZoneSnapshot {
    /// The zone's lock, only to check it is not held while formatting.
    lock: LockProbe,
    name: String,
    size: u64,
    free: u64,
    live: u32,
    capacity: u32,
    rejections: u64,
    zone_full: u64,
    reclaimed: u64,
    /// pids of the workers registered in the zone's ledger.
    workers: Vec<i32>,
    /// Entries in the longest hash bucket chain.
    longest_chain: u32,
    keys: Vec<KeySnapshot>,
}

impl ZoneSnapshot {
    /// Copies the zone out; only copying happens under the lock.
    fn take(zone: &ZoneCtx) -> Option<ZoneSnapshot> {
        let mut locked = zone.lock()?;
        let table = &mut locked.table;
        let free = table.free_bytes();
        let header = table.header();
        let mut snapshot = ZoneSnapshot {
            lock: zone.lock_probe(),
            name: zone.name.clone(),
            size: header.zone_size,
            free,
            live: header.live_entries,
            capacity: header.entry_capacity,
            rejections: header.rejections,
            zone_full: header.zone_full,
            reclaimed: header.reclaimed,
            workers: Vec::new(),
            longest_chain: 0,
            keys: Vec::with_capacity(header.live_entries as usize),
        };
        snapshot.longest_chain = table.longest_chain();
        snapshot.workers = (0..MAX_SLOTS).map(|slot| table.slot_pid(slot)).filter(|&pid| pid != 0).collect();
        table.for_each(|entry| {
            let Some(kind) = entry.kind().and_then(KeyKind::from_tag) else { return };
            snapshot.keys.push(KeySnapshot {
                kind,
                key: entry.key().to_vec(),
                label: entry.label().to_vec(),
                truncated: entry.key_truncated(),
                count: entry.count,
                limit: entry.limit,
                rejections: entry.rejections,
            });
        });
        drop(locked);
        Some(snapshot)
    }

    /// Called by each formatter before it starts: formatting must never
    /// make the zone's other users wait. Logs an `[alert]` if it would.
    fn formatting(&self) {
        if self.lock.held_by_this_process() {
            crate::ngx_util::log(
                // SAFETY: ngx_cycle is set for the whole life of a worker.
                unsafe { (*ngx_cycle).log },
                NGX_LOG_ALERT,
                &format!("vlimit_stats: zone \"{}\" is being formatted while this worker holds its lock", self.name),
            );
        }
    }

    fn used(&self) -> u64 {
        self.size.saturating_sub(self.free)
    }

    fn to_json(&self) -> Value {
        self.formatting();
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| {
                let mut key = Map::new();
                key.insert("kind".into(), json!(k.kind.name()));
                key.insert("key".into(), json!(k.shown()));
                if k.kind == KeyKind::File {
                    let (dev, inode) = file_id(&k.key);
                    key.insert("dev".into(), json!(dev));
                    key.insert("inode".into(), json!(inode));
                }
                if k.truncated {
                    key.insert("truncated".into(), json!(true));
                }
                key.insert("count".into(), json!(k.count));
                key.insert("limit".into(), json!(k.limit));
                key.insert("rejections".into(), json!(k.rejections));
                Value::Object(key)
            })
            .collect();
        json!({
            "size": self.size,
            "used": self.used(),
            "free": self.free,
            "keys": self.live,
            "max_keys": self.capacity,
            "rejections": self.rejections,
            "zone_full": self.zone_full,
            "reclaimed": self.reclaimed,
            "workers": self.workers,
            "longest_chain": self.longest_chain,
            "entries": keys,
        })
    }
}

/// The snapshots of every zone, or only of `only` (`None` if it does not exist).
fn snapshots(main: &MainConf, only: Option<&str>) -> Option<Vec<ZoneSnapshot>> {
    let mut zones = Vec::new();
    for &shm_zone in &main.zones {
        let Some(zone) = zone_ctx(shm_zone) else {
            continue;
        };
        if only.is_some_and(|name| name != zone.name) {
            continue;
        }
        zones.push(ZoneSnapshot::take(zone)?);
    }
    if only.is_some() && zones.is_empty() {
        return None;
    }
    Some(zones)
}

/// `{"<zone>": {...}, ...}` for every zone, or only `only`.
pub fn stats_value(main: &MainConf, only: Option<&str>) -> Option<Value> {
    let zones = snapshots(main, only)?;
    Some(Value::Object(zones.iter().map(|zone| (zone.name.clone(), zone.to_json())).collect()))
}

/// One metric of the Prometheus output: its name, type, help and figure.
struct Metric<T> {
    name: &'static str,
    kind: MetricType,
    help: &'static str,
    value: fn(&T) -> u64,
}

/// The zone metrics, labelled `zone`.
const ZONE_METRICS: [Metric<ZoneSnapshot>; 10] = [
    Metric {
        name: "nginx_vlimit_zone_size_bytes",
        kind: MetricType::Gauge,
        help: "Size of the vlimit shared memory zone.",
        value: |z| z.size,
    },
    Metric {
        name: "nginx_vlimit_zone_used_bytes",
        kind: MetricType::Gauge,
        help: "Bytes of the zone holding live keys and the table.",
        value: |z| z.used(),
    },
    Metric {
        name: "nginx_vlimit_zone_free_bytes",
        kind: MetricType::Gauge,
        help: "Bytes of the zone free for new keys.",
        value: |z| z.free,
    },
    Metric {
        name: "nginx_vlimit_zone_keys",
        kind: MetricType::Gauge,
        help: "Keys with requests in flight.",
        value: |z| z.live.into(),
    },
    Metric {
        name: "nginx_vlimit_zone_max_keys",
        kind: MetricType::Gauge,
        help: "Keys the zone can count at once.",
        value: |z| z.capacity.into(),
    },
    Metric {
        name: "nginx_vlimit_zone_workers",
        kind: MetricType::Gauge,
        help: "Worker processes registered in the zone's ledger of held counts.",
        value: |z| z.workers.len() as u64,
    },
    Metric {
        name: "nginx_vlimit_zone_longest_chain",
        kind: MetricType::Gauge,
        help: "Entries in the zone's longest hash bucket chain (idle entries included).",
        value: |z| z.longest_chain.into(),
    },
    Metric {
        name: "nginx_vlimit_rejections_total",
        kind: MetricType::Counter,
        help: "Requests rejected because a key was at its limit, since the zone was created.",
        value: |z| z.rejections,
    },
    Metric {
        name: "nginx_vlimit_zone_full_total",
        kind: MetricType::Counter,
        help: "Requests rejected because the zone had no room for a new key.",
        value: |z| z.zone_full,
    },
    Metric {
        name: "nginx_vlimit_reclaimed_total",
        kind: MetricType::Counter,
        help: "Counts given back for workers that died holding them.",
        value: |z| z.reclaimed,
    },
];

/// The key metrics, labelled `zone`, `kind`, `key` (plus `dev`/`inode`
/// for a file, `truncated="true"` for a key cut to fit the zone's entry).
const KEY_METRICS: [Metric<KeySnapshot>; 3] = [
    Metric {
        name: "nginx_vlimit_requests_in_flight",
        kind: MetricType::Gauge,
        help: "Requests counted on the key now.",
        value: |k| k.count.into(),
    },
    Metric {
        name: "nginx_vlimit_requests_limit",
        kind: MetricType::Gauge,
        help: "The limit of the last request admitted on the key.",
        value: |k| k.limit.into(),
    },
    Metric {
        name: "nginx_vlimit_key_rejections_total",
        kind: MetricType::Counter,
        help: "Requests rejected on the key while it stayed live.",
        value: |k| k.rejections.into(),
    },
];

/// The zones in the Prometheus text format.
fn prometheus_text(zones: &[ZoneSnapshot]) -> String {
    zones.iter().for_each(ZoneSnapshot::formatting);
    let mut out = Exposition::new();
    for metric in &ZONE_METRICS {
        let mut family = out.family(metric.name, metric.kind, metric.help);
        for zone in zones {
            family.sample(&[("zone", &zone.name)], (metric.value)(zone));
        }
    }
    // The labels of every live key, worked out once for the key metrics.
    let keys: Vec<(Vec<(&str, String)>, &KeySnapshot)> = zones
        .iter()
        .flat_map(|zone| {
            zone.keys.iter().map(|k| {
                let mut labels =
                    vec![("zone", zone.name.clone()), ("kind", k.kind.name().to_owned()), ("key", k.shown())];
                if k.kind == KeyKind::File {
                    let (dev, inode) = file_id(&k.key);
                    labels.push(("dev", dev.to_string()));
                    labels.push(("inode", inode.to_string()));
                }
                if k.truncated {
                    labels.push(("truncated", "true".to_owned()));
                }
                (labels, k)
            })
        })
        .collect();
    for metric in &KEY_METRICS {
        let mut family = out.family(metric.name, metric.kind, metric.help);
        for (labels, key) in &keys {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(name, value)| (*name, value.as_str())).collect();
            family.sample(&labels, (metric.value)(key));
        }
    }
    out.into_text()
}

/// The format a request asks for: `?format=` wins over the directive's.
/// `Err` carries the unknown value.
fn requested_format(r: &mut ngx_http_request_t, configured: StatsFormat) -> Result<StatsFormat, String> {
    let mut value = ngx_str_t::default();
    let name = b"format";
    // SAFETY: r is live; ngx_http_arg only reads r->args and points value into it.
    let rc = unsafe { ngx_http_arg(r, name.as_ptr() as *mut u8, name.len(), &mut value) };
    if rc != NGX_OK as ngx_int_t {
        return Ok(configured);
    }
    let bytes = if value.len == 0 {
        &[][..]
    } else {
        // SAFETY: value points into r->args, alive for the request.
        unsafe { core::slice::from_raw_parts(value.data, value.len) }
    };
    StatsFormat::parse(bytes).ok_or_else(|| String::from_utf8_lossy(bytes).into_owned())
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
    let (only, configured) = HttpVlimitModule::location_conf(&*r)
        .map_or((None, StatsFormat::Json), |lcf| (lcf.stats_zone.clone(), lcf.stats_format));
    let format = match requested_format(r, configured) {
        Ok(format) => format,
        Err(unknown) => {
            let text = format!("vlimit_stats: unknown format \"{unknown}\", use \"json\" or \"prometheus\"\n");
            return send_body(r, NGX_HTTP_BAD_REQUEST as ngx_uint_t, "text/plain", text.as_bytes());
        }
    };
    let Some(zones) = HttpVlimitModule::main_conf(&*r).and_then(|main| snapshots(main, only.as_deref())) else {
        return NGX_HTTP_NOT_FOUND as ngx_int_t;
    };
    match format {
        StatsFormat::Json => {
            let value = Value::Object(zones.iter().map(|zone| (zone.name.clone(), zone.to_json())).collect());
            let mut text = value.to_string();
            text.push('\n');
            send_body(r, NGX_HTTP_OK as ngx_uint_t, "application/json", text.as_bytes())
        }
        StatsFormat::Prometheus => {
            send_body(r, NGX_HTTP_OK as ngx_uint_t, prometheus::CONTENT_TYPE, prometheus_text(&zones).as_bytes())
        }
    }
}
