//! Directives of resource control (issue 10). Classes, the cgroup root,
//! the checker and auto-confinement are set once per `http{}`; which class
//! a request runs in is chosen per server, location or `if`.
//!
//! Names a directive refers to (`resource_class_for heavy`,
//! `tenant_resource_class`, `resource_auto_confine class=`) may come before
//! the `resource_class` that declares them: they are resolved once
//! `http{}` is parsed (`check_main`), and an unknown one fails `nginx -t`
//! with the file and line of the directive that names it.

use core::ffi::{c_char, c_void};
use core::ptr;

use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Merge, MergeConfigError, NgxHttpCoreModule};
use ngx::ngx_string;
use resource_policy::checker::CheckerSpec;
use resource_policy::class::{check_name, ClassSpec};
use resource_policy::confine::ConfineSpec;

use super::HttpResourcesModule;
use crate::ngx_util::{conf_args, conf_result, log, str_bytes, str_lossy};

/// A class named by a directive, with where, for the "unknown class" error.
pub struct ClassRef {
    pub name: String,
    pub directive: &'static str,
    pub file: String,
    pub line: usize,
}

/// `resource_checker` with its opened log file.
pub struct Checker {
    pub spec: CheckerSpec,
    /// `log=`, opened by nginx with the other log files (reopened on USR1);
    /// null: lines go to the error log.
    pub log_file: *mut ngx_open_file_t,
}

/// `http{}`-level settings.
#[derive(Default)]
pub struct MainConf {
    /// `resource_cgroup_root`: the sub-tree the classes' groups live in.
    pub cgroup_root: Option<String>,
    /// `resource_class`, in order.
    pub classes: Vec<ClassSpec>,
    /// `tenant_resource_class`: each owner's runners get a group with these limits.
    pub tenant_class: Option<String>,
    pub checker: Option<Checker>,
    pub auto_confine: Option<ConfineSpec>,
    /// Static class names to resolve once `http{}` is parsed.
    pub class_refs: Vec<ClassRef>,
    /// Some resource directive is used: the usage zone is declared.
    pub used: bool,
    /// The per-host usage zone (`zone.rs`).
    pub zone: Option<*mut ngx_shm_zone_t>,
    /// Something reads per-request figures (a resource directive, or one of
    /// the `$request_cpu_*`/`$request_mem_peak_kb` variables in the
    /// configuration): only then does the tenant path sample `/proc`, which
    /// costs a PHP hello request about a quarter of its CPU time.
    pub accounting: bool,
}

impl MainConf {
    pub fn class(&self, name: &str) -> Option<&ClassSpec> {
        self.classes.iter().find(|c| c.name == name)
    }
}

/// What `resource_class_for` chose.
#[derive(Clone, Copy)]
pub enum ClassChoice {
    /// `resource_class_for off`: no class (overrides an outer scope's).
    Off,
    /// A declared class, by its index in `MainConf::classes`
    /// (set when `http{}` is parsed; names are resolved in `check_main`).
    Static(usize),
    /// `$variable`s, evaluated per request; an empty value means no class.
    Variable(*mut ngx_http_complex_value_t),
}

/// Server/location/`if`-level settings.
#[derive(Default)]
pub struct LocConf {
    /// `resource_class_for`; the name of a static choice until resolved.
    pub class_for: Option<ClassChoice>,
    pub class_for_name: Option<String>,
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &Self) -> Result<(), MergeConfigError> {
        if self.class_for.is_none() {
            self.class_for = prev.class_for;
            self.class_for_name = prev.class_for_name.clone();
        }
        Ok(())
    }
}

fn main_conf(cf: &ngx_conf_t) -> Result<&'static mut MainConf, String> {
    HttpResourcesModule::main_conf_mut(cf).ok_or_else(|| String::from("resources: no http main conf"))
}

/// The directive's file and line (for errors found after parsing).
fn place(cf: &ngx_conf_t) -> (String, usize) {
    // SAFETY: conf_file is set while a file is being parsed.
    unsafe { (str_lossy(&(*cf.conf_file).file.name), (*cf.conf_file).line) }
}

/// The directive's arguments as text (a non-UTF-8 byte is refused with the argument).
fn text_args(cf: &ngx_conf_t) -> Result<Vec<&'static str>, String> {
    conf_args(cf)
        .iter()
        .map(|a| core::str::from_utf8(str_bytes(a)).map_err(|_| format!("invalid parameter \"{}\"", str_lossy(a))))
        .collect()
}

/// `resource_cgroup_root <path>;`
fn set_cgroup_root(cf: &mut ngx_conf_t) -> Result<(), String> {
    let path = text_args(cf)?[0];
    let main = main_conf(cf)?;
    if main.cgroup_root.is_some() {
        return Err(String::from("\"resource_cgroup_root\" directive is duplicate"));
    }
    // same rules as `tenant_cgroup`'s (the cgroup layer checks the machine, see `check_main`)
    cgroupfs::check_path_syntax(path).map_err(|e| format!("resource_cgroup_root: {e}"))?;
    main.cgroup_root = Some(path.to_string());
    Ok(())
}

/// `resource_class <name> [cpu=] [memory=] [io_read=] [io_write=] [pids=];`
fn set_class(cf: &mut ngx_conf_t) -> Result<(), String> {
    let args = text_args(cf)?;
    let spec = ClassSpec::parse(&args).map_err(|e| format!("resource_class: {e}"))?;
    let main = main_conf(cf)?;
    if main.class(&spec.name).is_some() {
        return Err(format!("resource_class: class \"{}\" is duplicate", spec.name));
    }
    main.classes.push(spec);
    Ok(())
}

/// `tenant_resource_class <name>;`
fn set_tenant_class(cf: &mut ngx_conf_t) -> Result<(), String> {
    let name = text_args(cf)?[0];
    check_name(name).map_err(|e| format!("tenant_resource_class: {e}"))?;
    let (file, line) = place(cf);
    let main = main_conf(cf)?;
    if main.tenant_class.is_some() {
        return Err(String::from("\"tenant_resource_class\" directive is duplicate"));
    }
    main.tenant_class = Some(name.to_string());
    main.class_refs.push(ClassRef { name: name.to_string(), directive: "tenant_resource_class", file, line });
    Ok(())
}

/// `resource_checker cpu_user=<ms> cpu_sys=<ms> memory=<size> [log=<path>];`
fn set_checker(cf: &mut ngx_conf_t) -> Result<(), String> {
    let args = text_args(cf)?;
    let spec = CheckerSpec::parse(&args).map_err(|e| format!("resource_checker: {e}"))?;
    if main_conf(cf)?.checker.is_some() {
        return Err(String::from("\"resource_checker\" directive is duplicate"));
    }
    let log_file = match &spec.log {
        None => ptr::null_mut(),
        Some(path) => {
            let mut name = ngx_str_t { len: path.len(), data: path.as_ptr() as *mut u8 };
            // SAFETY: nginx copies the name into the cycle's pool (relative
            // paths are resolved against the prefix) and opens the file with
            // the other log files, as root, before the workers start.
            let file = unsafe { ngx_conf_open_file(cf.cycle, &mut name) };
            if file.is_null() {
                return Err(format!("resource_checker: cannot use \"log={path}\""));
            }
            file
        }
    };
    main_conf(cf)?.checker = Some(Checker { spec, log_file });
    Ok(())
}

/// `resource_auto_confine class=<name> load=<threshold> | pressure=<percent> top=<n> hold=<time> [window=]
/// [load_source= | pressure_source=];`
fn set_auto_confine(cf: &mut ngx_conf_t) -> Result<(), String> {
    let args = text_args(cf)?;
    let mut spec = ConfineSpec::parse(&args).map_err(|e| format!("resource_auto_confine: {e}"))?;
    if let Some(path) = spec.source.as_mut().filter(|p| !p.starts_with('/')) {
        // relative to the nginx prefix, like other nginx paths (and lalimit_source)
        // SAFETY: cf->cycle is the cycle being configured; its prefix is set.
        let prefix = unsafe { str_lossy(&(*cf.cycle).prefix) };
        *path = format!("{}/{path}", prefix.trim_end_matches('/'));
    }
    let (file, line) = place(cf);
    let main = main_conf(cf)?;
    if main.auto_confine.is_some() {
        return Err(String::from("\"resource_auto_confine\" directive is duplicate"));
    }
    main.class_refs.push(ClassRef { name: spec.class.clone(), directive: "resource_auto_confine", file, line });
    main.auto_confine = Some(spec);
    Ok(())
}

/// `resource_class_for <name> | <$variable...> | off;`
fn set_class_for(cf: &mut ngx_conf_t, loc: &mut LocConf) -> Result<(), String> {
    if loc.class_for.is_some() {
        return Err(String::from("\"resource_class_for\" directive is duplicate"));
    }
    let arg = conf_args(cf)[0];
    let text = str_lossy(&arg);
    if text == "off" {
        loc.class_for = Some(ClassChoice::Off);
        return Ok(());
    }
    if !text.contains('$') {
        check_name(&text).map_err(|e| format!("resource_class_for: {e}"))?;
        let (file, line) = place(cf);
        main_conf(cf)?.class_refs.push(ClassRef { name: text.clone(), directive: "resource_class_for", file, line });
        // resolved to an index in check_main
        loc.class_for = Some(ClassChoice::Static(usize::MAX));
        loc.class_for_name = Some(text);
        return Ok(());
    }
    // SAFETY: allocations from the configuration pool; the ccv is zeroed as nginx expects.
    unsafe {
        let cv =
            ngx_pcalloc(cf.pool, core::mem::size_of::<ngx_http_complex_value_t>()) as *mut ngx_http_complex_value_t;
        if cv.is_null() {
            return Err(String::from("resource_class_for: out of memory"));
        }
        let mut value = arg;
        let mut ccv: ngx_http_compile_complex_value_t = core::mem::zeroed();
        ccv.cf = cf;
        ccv.value = &mut value;
        ccv.complex_value = cv;
        if ngx_http_compile_complex_value(&mut ccv) != NGX_OK as ngx_int_t {
            return Err(format!("resource_class_for: invalid value \"{text}\""));
        }
        loc.class_for = Some(ClassChoice::Variable(cv));
    }
    loc.class_for_name = Some(text);
    Ok(())
}

/// `resource_stats;`: this location answers with the JSON of `stats.rs`.
fn set_stats(cf: &mut ngx_conf_t) -> Result<(), String> {
    let clcf = NgxHttpCoreModule::location_conf_mut(cf).ok_or("resource_stats: no location")?;
    clcf.handler = Some(super::stats::stats_handler);
    Ok(())
}

/// Which directive a setter is parsing (carried in `offset`).
#[derive(Clone, Copy)]
#[repr(usize)]
enum Directive {
    CgroupRoot,
    Class,
    TenantClass,
    Checker,
    AutoConfine,
    ClassFor,
    Stats,
}

impl Directive {
    const ALL: [Directive; 7] = [
        Directive::CgroupRoot,
        Directive::Class,
        Directive::TenantClass,
        Directive::Checker,
        Directive::AutoConfine,
        Directive::ClassFor,
        Directive::Stats,
    ];
}

extern "C" fn set_directive(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the live cf, this command and our LocConf (LOC_CONF_OFFSET).
    let (cf_ref, cmd, loc) = unsafe { (&mut *cf, &*cmd, &mut *(conf as *mut LocConf)) };
    if let Ok(main) = main_conf(cf_ref) {
        main.used = true;
    }
    let result = match Directive::ALL.get(cmd.offset) {
        Some(Directive::CgroupRoot) => set_cgroup_root(cf_ref),
        Some(Directive::Class) => set_class(cf_ref),
        Some(Directive::TenantClass) => set_tenant_class(cf_ref),
        Some(Directive::Checker) => set_checker(cf_ref),
        Some(Directive::AutoConfine) => set_auto_confine(cf_ref),
        Some(Directive::ClassFor) => set_class_for(cf_ref, loc),
        Some(Directive::Stats) => set_stats(cf_ref),
        None => Err(String::from("resources: bad directive selector")),
    };
    conf_result(cf, result)
}

/// Once `http{}` is parsed (at `nginx -t` too): every named class exists,
/// classes have a cgroup root to live under, the root can hold groups on
/// this machine and every controller the classes need is there
/// (`hierarchy.rs`). Logs every problem, then fails.
pub(super) fn check_main(cf: &mut ngx_conf_t) -> Result<(), ()> {
    let indexed = super::accounting::variables_indexed(cf);
    if let Some(main) = HttpResourcesModule::main_conf_mut(cf) {
        main.accounting = main.used || indexed;
    }
    let Some(main) = HttpResourcesModule::main_conf(cf) else {
        return Ok(());
    };
    let mut problems = Vec::new();
    for r in &main.class_refs {
        if main.class(&r.name).is_none() {
            problems.push(format!(
                "{}: unknown class \"{}\" (no resource_class declares it) in {}:{}",
                r.directive, r.name, r.file, r.line
            ));
        }
    }
    if !main.classes.is_empty() && main.cgroup_root.is_none() {
        let names: Vec<&str> = main.classes.iter().map(|c| c.name.as_str()).collect();
        problems.push(format!(
            "resource_class: classes ({}) need \"resource_cgroup_root <path>;\" in http{{}}, the sub-tree their groups live in",
            names.join(", ")
        ));
    }
    if problems.is_empty() {
        let tenant_cgroup = crate::shared_conf::tenant_cgroup(cf);
        problems = super::hierarchy::check(main, &crate::shared_conf::supervisor_program(cf), tenant_cgroup.as_deref());
    }
    let mut pressure_file = None;
    if problems.is_empty() {
        match super::hierarchy::pressure_file(main) {
            Ok(file) => pressure_file = file,
            Err(message) => problems.push(message),
        }
    }
    for message in &problems {
        log(cf.log, NGX_LOG_EMERG, message);
    }
    if !problems.is_empty() {
        return Err(());
    }
    if let (Some(file), Ok(main)) = (pressure_file, main_conf(cf)) {
        if let Some(spec) = main.auto_confine.as_mut() {
            spec.source = Some(file);
        }
    }
    let Some(main) = HttpResourcesModule::main_conf(cf) else {
        return Ok(());
    };
    if main.used {
        match super::zone::declare(cf) {
            Ok(zone) => {
                if let Ok(main) = main_conf(cf) {
                    main.zone = Some(zone);
                }
            }
            Err(message) => {
                log(cf.log, NGX_LOG_EMERG, &message);
                return Err(());
            }
        }
    }
    if !main.classes.is_empty() {
        // said once per start, so nobody relies on a class where it does nothing
        log(
            cf.log,
            NGX_LOG_WARN,
            "resource_class: classes apply to the requests served by tenant runners (tenant_runner) only",
        );
    }
    Ok(())
}

/// Resolves a location's static `resource_class_for` name to its class
/// index (after `check_main` found every name declared).
pub(super) fn resolve_location(main: &MainConf, loc: &mut LocConf) {
    if let (Some(ClassChoice::Static(_)), Some(name)) = (loc.class_for, &loc.class_for_name) {
        if let Some(index) = main.classes.iter().position(|c| &c.name == name) {
            loc.class_for = Some(ClassChoice::Static(index));
        }
    }
}

const HTTP: u32 = NGX_HTTP_MAIN_CONF;
const SCOPES: u32 = NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_HTTP_LIF_CONF;
const LOC_OFF: ngx_uint_t = NGX_HTTP_LOC_CONF_OFFSET as ngx_uint_t;

const fn command(name: ngx_str_t, kind: u32, directive: Directive) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: kind as ngx_uint_t,
        set: Some(set_directive),
        conf: LOC_OFF,
        offset: directive as usize,
        post: ptr::null_mut(),
    }
}

/// The directive table. `offset` carries the `Directive`, not a struct offset.
pub static mut COMMANDS: [ngx_command_t; 8] = [
    command(ngx_string!("resource_cgroup_root"), HTTP | NGX_CONF_TAKE1, Directive::CgroupRoot),
    command(ngx_string!("resource_class"), HTTP | NGX_CONF_1MORE, Directive::Class),
    command(ngx_string!("tenant_resource_class"), HTTP | NGX_CONF_TAKE1, Directive::TenantClass),
    command(ngx_string!("resource_checker"), HTTP | NGX_CONF_1MORE, Directive::Checker),
    command(ngx_string!("resource_auto_confine"), HTTP | NGX_CONF_1MORE, Directive::AutoConfine),
    command(ngx_string!("resource_class_for"), SCOPES | NGX_CONF_TAKE1, Directive::ClassFor),
    command(ngx_string!("resource_stats"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, Directive::Stats),
    ngx_command_t::empty(),
];
