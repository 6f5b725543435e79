//! `lalimit`: turn requests away while the load average is at or above a
//! threshold. The load is read at most once a second per worker.

use std::cell::Cell;

use ngx::ffi::*;

use super::conf::{LaLimit, LoadSource};
use super::rate_limited_log;

/// The last reading: the second it was taken and the three averages in
/// hundredths (`None`: the reading failed).
#[derive(Clone, Copy)]
struct Reading {
    second: i64,
    loads: Option<[u64; 3]>,
}

thread_local! {
    static LAST_READING: Cell<Reading> = const { Cell::new(Reading { second: i64::MIN, loads: None }) };
}

/// Parses the first three fields of a `/proc/loadavg` line.
fn parse_loadavg(text: &str) -> Option<[u64; 3]> {
    let mut fields = text.split_ascii_whitespace();
    let mut loads = [0u64; 3];
    for load in &mut loads {
        *load = super::conf::parse_hundredths(fields.next()?.as_bytes())?;
    }
    Some(loads)
}

fn read_loads(source: &LoadSource) -> Result<[u64; 3], String> {
    match source {
        LoadSource::Getloadavg => {
            let mut loads = [0f64; 3];
            // SAFETY: getloadavg writes at most 3 doubles into the array.
            let n = unsafe { getloadavg(loads.as_mut_ptr(), 3) };
            if n < 3 {
                return Err(String::from("lalimit: getloadavg() failed"));
            }
            Ok(loads.map(|l| (l * 100.0).round().max(0.0) as u64))
        }
        LoadSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("lalimit: cannot read \"{path}\": {e}"))?;
            parse_loadavg(&text).ok_or_else(|| format!("lalimit: \"{path}\" is not in /proc/loadavg format"))
        }
    }
}

/// The current averages, re-read when the cached reading is from an
/// earlier second. A failed reading is logged and lets requests through.
fn current_loads(log: *mut ngx_log_t, source: &LoadSource) -> Option<[u64; 3]> {
    let now = ngx_time();
    let cached = LAST_READING.with(Cell::get);
    if cached.second == now {
        return cached.loads;
    }
    let loads = match read_loads(source) {
        Ok(loads) => Some(loads),
        Err(message) => {
            rate_limited_log(log, NGX_LOG_ERR, &message);
            None
        }
    };
    LAST_READING.with(|c| c.set(Reading { second: now, loads }));
    loads
}

fn hundredths(v: u64) -> String {
    format!("{}.{:02}", v / 100, v % 100)
}

/// `Some(status)` when the request must be turned away.
pub fn check(r: &ngx_http_request_t, la: &LaLimit, source: &LoadSource) -> Option<ngx_uint_t> {
    // SAFETY: the connection's log carries the client and request context.
    let log = unsafe { (*r.connection).log };
    let load = current_loads(log, source)?[la.period];
    if load < la.threshold {
        return None;
    }
    let minutes = [1, 5, 15][la.period];
    rate_limited_log(
        log,
        NGX_LOG_WARN,
        &format!(
            "lalimit: load average {} ({minutes} min) is at or above the threshold {}, rejecting with {}",
            hundredths(load),
            hundredths(la.threshold),
            la.status
        ),
    );
    Some(la.status)
}
