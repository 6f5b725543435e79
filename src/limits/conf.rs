//! Directives of the limits module: `vlimit_zone`, `vlimit`,
//! `vlimit_dry_run`, `vlimit_stats`, `lalimit`, `lalimit_source`.

use core::ffi::{c_char, c_void};
use core::ptr;

use ngx::core::Pool;
use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Merge, MergeConfigError, NgxHttpCoreModule};
use ngx::ngx_string;

use super::stats::StatsFormat;
use super::zone::{init_zone, ZoneCtx};
use super::HttpVlimitModule;
use crate::ngx_util::{conf_log, str_bytes, str_lossy};

/// Largest `N` of a `vlimit` (as limit_conn).
const MAX_LIMIT: i64 = 65535;

/// Where `lalimit` reads the load average.
#[derive(Clone, Default)]
pub enum LoadSource {
    /// `getloadavg(3)`.
    #[default]
    Getloadavg,
    /// A file in `/proc/loadavg` format (`lalimit_source file=<path>`).
    File(String),
}

/// A zone named by a `vlimit`, with where, for the "unknown zone" error.
pub struct ZoneRef {
    pub shm_zone: *mut ngx_shm_zone_t,
    pub name: String,
    pub file: String,
    pub line: usize,
}

/// `http{}`-level state.
#[derive(Default)]
pub struct MainConf {
    /// Zones declared by `vlimit_zone`, in order.
    pub zones: Vec<*mut ngx_shm_zone_t>,
    /// Zones referenced by `vlimit`, checked after parsing.
    pub zone_refs: Vec<ZoneRef>,
    pub load_source: LoadSource,
    /// Whether any scope uses `vlimit` or `lalimit` (registers the handler).
    pub used: bool,
}

impl MainConf {
    /// The zone context of a declared zone, by name.
    pub fn zone(&self, name: &str) -> Option<&ZoneCtx> {
        self.zones.iter().filter_map(|&z| zone_ctx(z)).find(|ctx| ctx.name == name)
    }
}

/// The `ZoneCtx` of a shared zone (`None` if it was never declared).
pub(super) fn zone_ctx<'a>(shm_zone: *mut ngx_shm_zone_t) -> Option<&'a ZoneCtx> {
    if shm_zone.is_null() {
        return None;
    }
    // SAFETY: our zones' data is a ZoneCtx allocated in the cycle pool (or NULL).
    unsafe { ((*shm_zone).data as *const ZoneCtx).as_ref() }
}

/// What a `vlimit` counts.
#[derive(Clone, Copy)]
pub enum LimitKind {
    Ip,
    File,
    Host,
    /// `key=<complex value>`, compiled in the configuration pool.
    Key(*mut ngx_http_complex_value_t),
}

/// One `vlimit` directive.
#[derive(Clone)]
pub struct Limit {
    pub kind: LimitKind,
    pub max: u32,
    pub shm_zone: *mut ngx_shm_zone_t,
    pub status: ngx_uint_t,
}

/// One `lalimit` directive.
#[derive(Clone, Copy)]
pub struct LaLimit {
    /// Threshold in hundredths.
    pub threshold: u64,
    /// 0, 1, 2 for the 1, 5, 15 minute average.
    pub period: usize,
    pub status: ngx_uint_t,
}

/// Location-level (also server- and http-level) settings.
#[derive(Default)]
pub struct LocConf {
    /// The limits of this scope; a scope with none inherits its parent's.
    pub limits: Vec<Limit>,
    /// The distinct zones of `limits` (at most `MAX_ZONES`), worked out
    /// once by the directive so a request does not.
    pub limit_zones: Vec<*mut ngx_shm_zone_t>,
    pub dry_run: Option<bool>,
    /// `Some(None)` is `lalimit off`.
    pub lalimit: Option<Option<LaLimit>>,
    /// `vlimit_stats zone=<name>`: the one zone this stats location shows.
    pub stats_zone: Option<String>,
    /// `vlimit_stats format=<json|prometheus>`: the default output format.
    pub stats_format: StatsFormat,
}

impl LocConf {
    pub fn dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &Self) -> Result<(), MergeConfigError> {
        if self.limits.is_empty() {
            self.limits = prev.limits.clone();
            self.limit_zones = prev.limit_zones.clone();
        }
        self.dry_run = self.dry_run.or(prev.dry_run);
        if self.lalimit.is_none() {
            self.lalimit = prev.lalimit;
        }
        Ok(())
    }
}

/// The directive arguments (without the name).
fn args<'a>(cf: &ngx_conf_t) -> &'a [ngx_str_t] {
    // SAFETY: cf->args is the array nginx filled for this directive.
    unsafe {
        let array = &*cf.args;
        let all = core::slice::from_raw_parts(array.elts as *const ngx_str_t, array.nelts);
        &all[1..]
    }
}

fn conf_result(cf: *mut ngx_conf_t, result: Result<(), String>) -> *mut c_char {
    match result {
        Ok(()) => ptr::null_mut(),
        Err(message) => {
            conf_log(cf, NGX_LOG_EMERG, &message);
            ngx::core::NGX_CONF_ERROR as *mut c_char
        }
    }
}

fn main_conf(cf: &ngx_conf_t) -> Result<&'static mut MainConf, String> {
    HttpVlimitModule::main_conf_mut(cf).ok_or_else(|| String::from("vlimit: no http main conf"))
}

/// `status=<code>`, 400..599.
fn parse_status(directive: &str, value: &[u8]) -> Result<ngx_uint_t, String> {
    let code: Option<ngx_uint_t> = core::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
    match code {
        Some(code) if (400..=599).contains(&code) => Ok(code),
        _ => Err(format!(
            "{directive}: invalid status \"status={}\", must be between 400 and 599",
            String::from_utf8_lossy(value)
        )),
    }
}

/// `vlimit_zone <name> <size>`.
fn set_zone(cf: &mut ngx_conf_t) -> Result<(), String> {
    let a = args(cf);
    let name = &a[0];
    if name.len == 0 {
        return Err(String::from("vlimit_zone: empty zone name"));
    }
    let mut size_arg = a[1];
    // SAFETY: ngx_parse_size reads the argument's bytes only.
    let size = unsafe { ngx_parse_size(&mut size_arg) };
    if size == NGX_ERROR as isize {
        return Err(format!("vlimit_zone: invalid zone size \"{}\"", str_lossy(&a[1])));
    }
    // SAFETY: ngx_pagesize is set at startup, before configuration.
    let min = 8 * unsafe { ngx_pagesize };
    if (size as usize) < min {
        return Err(format!("vlimit_zone: zone \"{}\" is too small ({} bytes, minimum {min})", str_lossy(name), size));
    }
    let mut zone_name = *name;
    // SAFETY: the tag is our module table; nginx checks name/size/tag conflicts.
    let shm_zone = unsafe {
        ngx_shared_memory_add(
            cf,
            &mut zone_name,
            size as usize,
            ptr::addr_of_mut!(super::ngx_http_vlimit_module) as *mut c_void,
        )
    };
    if shm_zone.is_null() {
        // nginx logged the conflict (size or owner) already
        return Err(format!("vlimit_zone: cannot declare zone \"{}\"", str_lossy(name)));
    }
    // SAFETY: ngx_shared_memory_add returned a live zone of this cycle.
    let zone = unsafe { &mut *shm_zone };
    if !zone.data.is_null() {
        return Err(format!("vlimit_zone: zone \"{}\" is already declared", str_lossy(name)));
    }
    // SAFETY: cf->pool is the live configuration pool.
    let pool = unsafe { Pool::from_ngx_pool(cf.pool) };
    let ctx = pool.allocate(ZoneCtx::new("vlimit_zone", str_lossy(name), size as usize));
    if ctx.is_null() {
        return Err(String::from("vlimit_zone: out of memory"));
    }
    zone.data = ctx as *mut c_void;
    zone.init = Some(init_zone);
    main_conf(cf)?.zones.push(shm_zone);
    Ok(())
}

fn parse_kind(cf: &mut ngx_conf_t, arg: &ngx_str_t) -> Result<LimitKind, String> {
    let bytes = str_bytes(arg);
    match bytes {
        b"ip" => return Ok(LimitKind::Ip),
        b"file" => return Ok(LimitKind::File),
        b"host" => return Ok(LimitKind::Host),
        _ => {}
    }
    let Some(expr) = bytes.strip_prefix(b"key=").filter(|e| !e.is_empty()) else {
        return Err(format!(
            "vlimit: invalid parameter \"{}\", the kind must be ip, file, host or key=<value>",
            String::from_utf8_lossy(bytes)
        ));
    };
    // SAFETY: allocations from the configuration pool; the ccv is zeroed as nginx expects.
    unsafe {
        let cv =
            ngx_pcalloc(cf.pool, core::mem::size_of::<ngx_http_complex_value_t>()) as *mut ngx_http_complex_value_t;
        if cv.is_null() {
            return Err(String::from("vlimit: out of memory"));
        }
        let mut value = ngx_str_t { len: expr.len(), data: arg.data.add(4) };
        let mut ccv: ngx_http_compile_complex_value_t = core::mem::zeroed();
        ccv.cf = cf;
        ccv.value = &mut value;
        ccv.complex_value = cv;
        if ngx_http_compile_complex_value(&mut ccv) != NGX_OK as ngx_int_t {
            return Err(format!("vlimit: invalid parameter \"{}\"", String::from_utf8_lossy(bytes)));
        }
        Ok(LimitKind::Key(cv))
    }
}

/// `vlimit <kind> <N> zone=<name> [status=<code>]`.
fn set_limit(cf: &mut ngx_conf_t, conf: &mut LocConf) -> Result<(), String> {
    let a = args(cf);
    let kind = parse_kind(cf, &a[0])?;
    let n_bytes = str_bytes(&a[1]);
    let max = core::str::from_utf8(n_bytes).ok().and_then(|s| s.parse::<i64>().ok());
    let max = match max {
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n as u32,
        _ => {
            return Err(format!(
                "vlimit: invalid number \"{}\", must be between 1 and {MAX_LIMIT}",
                String::from_utf8_lossy(n_bytes)
            ))
        }
    };
    let mut zone_name: Option<ngx_str_t> = None;
    let mut status = NGX_HTTP_SERVICE_UNAVAILABLE as ngx_uint_t;
    for arg in &a[2..] {
        let bytes = str_bytes(arg);
        if let Some(name) = bytes.strip_prefix(b"zone=").filter(|n| !n.is_empty()) {
            // SAFETY: the name is a suffix of the argument, which lives in the cf pool.
            zone_name = Some(ngx_str_t { len: name.len(), data: unsafe { arg.data.add(5) } });
        } else if let Some(code) = bytes.strip_prefix(b"status=") {
            status = parse_status("vlimit", code)?;
        } else {
            return Err(format!("vlimit: invalid parameter \"{}\"", String::from_utf8_lossy(bytes)));
        }
    }
    let Some(mut name) = zone_name else {
        return Err(String::from("vlimit: the \"zone=<name>\" parameter is required"));
    };
    // SAFETY: size 0 references a zone that vlimit_zone declares (before or after).
    let shm_zone = unsafe {
        ngx_shared_memory_add(cf, &mut name, 0, ptr::addr_of_mut!(super::ngx_http_vlimit_module) as *mut c_void)
    };
    if shm_zone.is_null() {
        return Err(format!("vlimit: cannot use zone \"{}\"", str_lossy(&name)));
    }
    let same_kind = |l: &Limit| {
        matches!(
            (l.kind, kind),
            (LimitKind::Ip, LimitKind::Ip) | (LimitKind::File, LimitKind::File) | (LimitKind::Host, LimitKind::Host)
        )
    };
    if conf.limits.iter().any(|l| l.shm_zone == shm_zone && same_kind(l)) {
        return Err(format!("vlimit: duplicate \"{}\" limit in zone \"{}\"", str_lossy(&a[0]), str_lossy(&name)));
    }
    conf.limits.push(Limit { kind, max, shm_zone, status });
    if !conf.limit_zones.contains(&shm_zone) {
        if conf.limit_zones.len() == super::counting::MAX_ZONES {
            return Err(format!("vlimit: at most {} zones in one scope", super::counting::MAX_ZONES));
        }
        conf.limit_zones.push(shm_zone);
    }
    // SAFETY: conf_file is set while a file is being parsed.
    let (file, line) = unsafe { (str_lossy(&(*cf.conf_file).file.name), (*cf.conf_file).line) };
    let main = main_conf(cf)?;
    main.zone_refs.push(ZoneRef { shm_zone, name: str_lossy(&name), file, line });
    main.used = true;
    Ok(())
}

/// `vlimit_dry_run on|off`.
fn set_dry_run(cf: &mut ngx_conf_t, conf: &mut LocConf) -> Result<(), String> {
    let value = str_bytes(&args(cf)[0]);
    if conf.dry_run.is_some() {
        return Err(String::from("vlimit_dry_run: is duplicate"));
    }
    conf.dry_run = Some(match value {
        v if v.eq_ignore_ascii_case(b"on") => true,
        v if v.eq_ignore_ascii_case(b"off") => false,
        _ => {
            return Err(format!(
                "vlimit_dry_run: invalid value \"{}\", it must be \"on\" or \"off\"",
                String::from_utf8_lossy(value)
            ))
        }
    });
    Ok(())
}

/// `vlimit_stats [zone=<name>] [format=json|prometheus]`: this location
/// answers with the stats (a request's `?format=` overrides the format).
fn set_stats(cf: &mut ngx_conf_t, conf: &mut LocConf) -> Result<(), String> {
    let mut zone_set = false;
    let mut format_set = false;
    for arg in args(cf) {
        let bytes = str_bytes(arg);
        let invalid = || format!("vlimit_stats: invalid parameter \"{}\"", String::from_utf8_lossy(bytes));
        if let Some(name) = bytes.strip_prefix(b"zone=") {
            if name.is_empty() || zone_set {
                return Err(invalid());
            }
            conf.stats_zone = Some(String::from_utf8_lossy(name).into_owned());
            zone_set = true;
        } else if let Some(name) = bytes.strip_prefix(b"format=") {
            if format_set {
                return Err(invalid());
            }
            conf.stats_format = StatsFormat::parse(name).ok_or_else(|| {
                format!(
                    "vlimit_stats: invalid format \"{}\", it must be \"json\" or \"prometheus\"",
                    String::from_utf8_lossy(name)
                )
            })?;
            format_set = true;
        } else {
            return Err(invalid());
        }
    }
    let clcf = NgxHttpCoreModule::location_conf_mut(cf).ok_or("vlimit_stats: no location")?;
    clcf.handler = Some(super::stats::stats_handler);
    Ok(())
}

/// `lalimit <threshold> [period=1|5|15] [status=<code>]` or `lalimit off`.
fn set_lalimit(cf: &mut ngx_conf_t, conf: &mut LocConf) -> Result<(), String> {
    let a = args(cf);
    if conf.lalimit.is_some() {
        return Err(String::from("lalimit: is duplicate"));
    }
    let first = str_bytes(&a[0]);
    if first == b"off" {
        if a.len() > 1 {
            return Err(format!("lalimit: invalid parameter \"{}\"", str_lossy(&a[1])));
        }
        conf.lalimit = Some(None);
        return Ok(());
    }
    let threshold = parse_hundredths(first).ok_or_else(|| {
        format!("lalimit: invalid threshold \"{}\", must be a number >= 0", String::from_utf8_lossy(first))
    })?;
    let mut period = 0;
    let mut status = NGX_HTTP_SERVICE_UNAVAILABLE as ngx_uint_t;
    for arg in &a[1..] {
        let bytes = str_bytes(arg);
        if let Some(p) = bytes.strip_prefix(b"period=") {
            period = match p {
                b"1" => 0,
                b"5" => 1,
                b"15" => 2,
                _ => {
                    return Err(format!(
                        "lalimit: invalid parameter \"{}\", period must be 1, 5 or 15",
                        String::from_utf8_lossy(bytes)
                    ))
                }
            };
        } else if let Some(code) = bytes.strip_prefix(b"status=") {
            status = parse_status("lalimit", code)?;
        } else {
            return Err(format!("lalimit: invalid parameter \"{}\"", String::from_utf8_lossy(bytes)));
        }
    }
    conf.lalimit = Some(Some(LaLimit { threshold, period, status }));
    main_conf(cf)?.used = true;
    Ok(())
}

/// "5", "0.99", "10.02" in hundredths; `None` for anything else.
pub fn parse_hundredths(text: &[u8]) -> Option<u64> {
    let text = core::str::from_utf8(text).ok()?;
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value = int.parse::<u64>().ok()?.checked_mul(100)?;
    let frac = frac.as_bytes();
    let digit = |i: usize| frac.get(i).map_or(0, |d| (d - b'0') as u64);
    value += digit(0) * 10 + digit(1);
    // round on the third decimal
    if digit(2) >= 5 {
        value += 1;
    }
    Some(value)
}

/// `lalimit_source getloadavg | file=<path>`.
fn set_lalimit_source(cf: &mut ngx_conf_t) -> Result<(), String> {
    let bytes = str_bytes(&args(cf)[0]);
    let source = if bytes == b"getloadavg" {
        LoadSource::Getloadavg
    } else if let Some(path) = bytes.strip_prefix(b"file=").filter(|p| !p.is_empty()) {
        let path = String::from_utf8_lossy(path).into_owned();
        if path.starts_with('/') {
            LoadSource::File(path)
        } else {
            // relative to the nginx prefix, like other nginx paths
            // SAFETY: cf->cycle is the cycle being configured.
            let prefix = unsafe { str_lossy(&(*cf.cycle).prefix) };
            LoadSource::File(format!("{}/{path}", prefix.trim_end_matches('/')))
        }
    } else {
        return Err(format!("lalimit_source: invalid parameter \"{}\"", String::from_utf8_lossy(bytes)));
    };
    main_conf(cf)?.load_source = source;
    Ok(())
}

/// After parsing: every zone a `vlimit` names must be declared.
pub(super) fn check_zones(cf: &mut ngx_conf_t) -> Result<(), ()> {
    let main = main_conf(cf).map_err(|_| ())?;
    for zref in &main.zone_refs {
        if zone_ctx(zref.shm_zone).is_none() {
            crate::ngx_util::log(
                cf.log,
                NGX_LOG_EMERG,
                &format!(
                    "vlimit: unknown zone \"zone={}\" (no vlimit_zone declares it) in {}:{}",
                    zref.name, zref.file, zref.line
                ),
            );
            return Err(());
        }
    }
    Ok(())
}

macro_rules! directive {
    ($fn_name:ident, $body:ident, loc) => {
        extern "C" fn $fn_name(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
            // SAFETY: nginx passes the live cf and our LocConf (NGX_HTTP_LOC_CONF_OFFSET).
            let (cf_ref, conf) = unsafe { (&mut *cf, &mut *(conf as *mut LocConf)) };
            conf_result(cf, $body(cf_ref, conf))
        }
    };
    ($fn_name:ident, $body:ident, main) => {
        extern "C" fn $fn_name(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, _conf: *mut c_void) -> *mut c_char {
            // SAFETY: nginx passes the live cf.
            let cf_ref = unsafe { &mut *cf };
            conf_result(cf, $body(cf_ref))
        }
    };
}

directive!(vlimit_zone_directive, set_zone, main);
directive!(vlimit_directive, set_limit, loc);
directive!(vlimit_dry_run_directive, set_dry_run, loc);
directive!(vlimit_stats_directive, set_stats, loc);
directive!(lalimit_directive, set_lalimit, loc);
directive!(lalimit_source_directive, set_lalimit_source, main);

const HTTP: u32 = NGX_HTTP_MAIN_CONF;
const ANY: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_HTTP_LIF_CONF;
const LOC_OFF: ngx_uint_t = NGX_HTTP_LOC_CONF_OFFSET as ngx_uint_t;
const MAIN_OFF: ngx_uint_t = NGX_HTTP_MAIN_CONF_OFFSET as ngx_uint_t;

type SetFn = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

const fn command(name: ngx_str_t, kind: u32, set: SetFn, conf: ngx_uint_t) -> ngx_command_t {
    ngx_command_t { name, type_: kind as ngx_uint_t, set: Some(set), conf, offset: 0, post: ptr::null_mut() }
}

/// The directive table.
pub static mut COMMANDS: [ngx_command_t; 7] = [
    command(ngx_string!("vlimit_zone"), HTTP | NGX_CONF_TAKE2, vlimit_zone_directive, MAIN_OFF),
    command(ngx_string!("vlimit"), ANY | NGX_CONF_TAKE3 | NGX_CONF_TAKE4, vlimit_directive, LOC_OFF),
    command(ngx_string!("vlimit_dry_run"), ANY | NGX_CONF_TAKE1, vlimit_dry_run_directive, LOC_OFF),
    command(
        ngx_string!("vlimit_stats"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE12,
        vlimit_stats_directive,
        LOC_OFF,
    ),
    command(ngx_string!("lalimit"), ANY | NGX_CONF_TAKE123, lalimit_directive, LOC_OFF),
    command(ngx_string!("lalimit_source"), HTTP | NGX_CONF_TAKE1, lalimit_source_directive, MAIN_OFF),
    ngx_command_t::empty(),
];
