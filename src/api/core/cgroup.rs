//! `Cgroup`: the mruby-cgroup API for operator scripts in `mruby_init`
//! (the master, as root) and `mruby_init_worker` (workers: no privileges,
//! so writes raise). Groups are one level below `resource_cgroup_root`,
//! never anywhere else; names are checked (no `/`, no `..`); setters check
//! their value at once and stage it, `create` makes the group and writes
//! what is staged, `modify` writes it into an existing group. Unlike
//! mruby-cgroup, every failed write raises (RuntimeError with the file and
//! the kernel's reason). `attach(pid)` / `detach(pid)` (from
//! `mruby_init_worker`) go through the tenant runners' supervisor, which
//! moves only its own runners into groups below the root: the worker
//! holds no privilege and is never moved itself, so there is no
//! pid-less form (mruby-cgroup's moved the calling process).

use mruby_sys::*;

use crate::api::{arg_bytes, arg_int, arity, ARGS_ANY};
use crate::host::{self, Context};
use crate::resources::cgroup_groups::{group, Group};
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};
use resource_policy::cgroup_files::{parse_cpu_usage_ns, parse_device_rate, Setting, Version};

/// The staged settings, in the order `create`/`modify` write them.
const STAGED: [&str; 6] = ["cfs_period_us", "cfs_quota_us", "shares", "limit_in_bytes", "read_bps", "write_bps"];

/// The running script's context; a call outside every script run (no
/// host installed) is refused, never taken for `mruby_init` (the master).
fn script_context(what: &str) -> Result<Context, RubyError> {
    host::current()
        .map(|h| h.context())
        .ok_or_else(|| RubyError::runtime(format!("{what} is refused outside a script run")))
}

fn check_context() -> Result<(), RubyError> {
    let context = script_context("Cgroup")?;
    if context.within(Context::INIT | Context::INIT_WORKER) {
        Ok(())
    } else {
        Err(RubyError::runtime(format!("Cgroup is only for mruby_init and mruby_init_worker, not {}", context.name())))
    }
}

fn ivar(mrb: Mrb, obj: mrb_value, name: &str) -> mrb_value {
    // SAFETY: live VM and object; the symbol is interned by name.
    unsafe { mrb_iv_get(mrb.as_ptr(), obj, mrb.sym(name)) }
}

fn set_ivar(mrb: Mrb, obj: mrb_value, name: &str, value: mrb_value) {
    // SAFETY: live VM and object; the symbol is interned by name.
    unsafe { mrb_iv_set(mrb.as_ptr(), obj, mrb.sym(name), value) }
}

/// The hierarchy of `self`'s class.
fn kind(mrb: Mrb, this: mrb_value) -> Result<&'static str, RubyError> {
    match mrb.class_name(this).as_str() {
        "Cgroup::CPU" => Ok("cpu"),
        "Cgroup::CPUACCT" => Ok("cpuacct"),
        "Cgroup::MEMORY" => Ok("memory"),
        "Cgroup::BLKIO" => Ok("blkio"),
        other => Err(RubyError::type_error(format!("{other} is not a Cgroup class"))),
    }
}

/// `self`'s group, re-checking the name (a script may have changed `@name`).
fn this_group(mrb: Mrb, this: mrb_value) -> Result<Group, RubyError> {
    check_context()?;
    let kind = kind(mrb, this)?;
    let name = ivar(mrb, this, "@name");
    let name = String::from_utf8_lossy(arg_bytes(mrb, name, "cgroup name")?).into_owned();
    // SAFETY: the cycle the running script serves (being configured, or running) is live.
    let cycle = unsafe { host::cycle().as_ref() }.ok_or_else(|| RubyError::runtime("no cycle"))?;
    group(cycle, kind, &name).map_err(RubyError::argument)
}

/// `Cgroup::X.new(name)`.
fn initialize(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let name = arg_bytes(mrb, args[0], "cgroup name")?;
    let text = String::from_utf8_lossy(name).into_owned();
    resource_policy::cgroup_files::check_group_name(&text).map_err(RubyError::argument)?;
    set_ivar(mrb, this, "@name", mrb.str(text.as_bytes()));
    Ok(this)
}

/// The staged settings of `self`.
fn staged(mrb: Mrb, this: mrb_value) -> Result<Vec<Setting>, RubyError> {
    let mut settings = Vec::new();
    for name in STAGED {
        let value = ivar(mrb, this, &format!("@{name}"));
        if mrb.is_nil(value) {
            continue;
        }
        let setting = match name {
            "cfs_period_us" => Setting::CfsPeriodUs(arg_int(mrb, value, name)?.max(0) as u64),
            "cfs_quota_us" => Setting::CfsQuotaUs(arg_int(mrb, value, name)?),
            "shares" => Setting::Shares(arg_int(mrb, value, name)?.max(0) as u64),
            "limit_in_bytes" => Setting::MemoryLimit(arg_int(mrb, value, name)?),
            _ => {
                let text = String::from_utf8_lossy(arg_bytes(mrb, value, name)?).into_owned();
                let (major, minor, bps) = parse_device_rate(&text).map_err(RubyError::argument)?;
                if name == "read_bps" {
                    Setting::ReadBps { major, minor, bps }
                } else {
                    Setting::WriteBps { major, minor, bps }
                }
            }
        };
        setting.check().map_err(RubyError::argument)?;
        settings.push(setting);
    }
    Ok(settings)
}

fn apply(mrb: Mrb, this: mrb_value, group: &Group) -> Result<(), RubyError> {
    for setting in staged(mrb, this)? {
        group.write(setting).map_err(RubyError::runtime)?;
    }
    Ok(())
}

/// `create`: makes the group (and the root) and writes the staged settings.
fn create(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let group = this_group(mrb, this)?;
    staged(mrb, this)?;
    group.create().map_err(RubyError::runtime)?;
    apply(mrb, this, &group)?;
    Ok(this)
}

/// `modify`: writes the staged settings into the existing group.
fn modify(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let group = this_group(mrb, this)?;
    apply(mrb, this, &group)?;
    Ok(this)
}

fn exist(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    Ok(mrb.bool(this_group(mrb, this)?.exists()))
}

fn delete(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    this_group(mrb, this)?.delete().map_err(RubyError::runtime)?;
    Ok(mrb.bool(true))
}

/// A setter: checks the value now, stages it for `create`/`modify`.
fn stage(mrb: Mrb, this: mrb_value, args: &[mrb_value], name: &str) -> RubyResult {
    arity(args, 1, 1)?;
    check_context()?;
    let setting = match name {
        "read_bps" | "write_bps" => {
            let text = String::from_utf8_lossy(arg_bytes(mrb, args[0], name)?).into_owned();
            let (major, minor, bps) = parse_device_rate(&text).map_err(RubyError::argument)?;
            Setting::ReadBps { major, minor, bps }
        }
        _ => {
            let n = arg_int(mrb, args[0], name)?;
            match name {
                "cfs_quota_us" => Setting::CfsQuotaUs(n),
                "cfs_period_us" => Setting::CfsPeriodUs(n.max(0) as u64),
                "shares" => Setting::Shares(n.max(0) as u64),
                _ => Setting::MemoryLimit(n),
            }
        }
    };
    setting.check().map_err(RubyError::argument)?;
    set_ivar(mrb, this, &format!("@{name}"), args[0]);
    Ok(args[0])
}

fn set_cfs_quota_us(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    stage(mrb, this, args, "cfs_quota_us")
}
fn set_cfs_period_us(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    stage(mrb, this, args, "cfs_period_us")
}
fn set_shares(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    stage(mrb, this, args, "shares")
}
fn set_limit_in_bytes(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    stage(mrb, this, args, "limit_in_bytes")
}
fn set_read_bps(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    stage(mrb, this, args, "read_bps")
}
fn set_write_bps(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    stage(mrb, this, args, "write_bps")
}

/// The runner pid `attach`/`detach` were given; the pid-less form of
/// mruby-cgroup (the calling process) is refused: the worker is never moved.
fn runner_pid(mrb: Mrb, args: &[mrb_value], method: &str) -> Result<i32, RubyError> {
    arity(args, 0, 1)?;
    let context = script_context(&format!("Cgroup#{method}"))?;
    if !context.within(Context::INIT_WORKER) {
        return Err(RubyError::runtime(format!(
            "Cgroup#{method} asks the tenant runners' supervisor, which runs once workers start: call it from \
             mruby_init_worker, not {}",
            context.name()
        )));
    }
    let Some(&value) = args.first().filter(|v| !mrb.is_nil(**v)) else {
        return Err(RubyError::argument(format!(
            "Cgroup#{method} needs the pid of a tenant runner: the nginx worker itself is never moved"
        )));
    };
    let pid = arg_int(mrb, value, "pid")?;
    if !(1..=i64::from(i32::MAX)).contains(&pid) {
        return Err(RubyError::argument(format!("pid {pid} is out of range (1 to {})", i32::MAX)));
    }
    Ok(pid as i32)
}

/// `self`'s name, checked; the API's root must be configured.
fn checked_name(mrb: Mrb, this: mrb_value) -> Result<String, RubyError> {
    let name = ivar(mrb, this, "@name");
    let name = String::from_utf8_lossy(arg_bytes(mrb, name, "cgroup name")?).into_owned();
    resource_policy::cgroup_files::check_group_name(&name).map_err(RubyError::argument)?;
    // SAFETY: the cycle the running script serves is live.
    let cycle = unsafe { host::cycle().as_ref() }.ok_or_else(|| RubyError::runtime("no cycle"))?;
    if crate::resources::cgroup_groups::root_of(cycle).is_none() {
        return Err(RubyError::argument("the Cgroup API needs \"resource_cgroup_root\" in http{}"));
    }
    Ok(name)
}

/// `attach(pid)`: the supervisor moves tenant runner `pid` into this group
/// (in this class's hierarchy). Raises for the worker's own pid, the
/// master's, the supervisor's or any pid that is not one of its runners,
/// and for a group that does not exist; each refusal is also logged.
fn attach(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    let pid = runner_pid(mrb, args, "attach")?;
    let controller = kind(mrb, this)?.to_string();
    let group = checked_name(mrb, this)?;
    crate::tenants::control::ask(&tenant_protocol::Request::Attach { tag: 1, controller, group, pid })
        .map_err(|e| RubyError::runtime(format!("Cgroup#attach({pid}): {e}")))?;
    Ok(this)
}

/// `detach(pid)`: the supervisor moves runner `pid` back to its own group
/// (never to the hierarchy's root, unlike mruby-cgroup).
fn detach(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    let pid = runner_pid(mrb, args, "detach")?;
    checked_name(mrb, this)?;
    crate::tenants::control::ask(&tenant_protocol::Request::Detach { tag: 1, pid })
        .map_err(|e| RubyError::runtime(format!("Cgroup#detach({pid}): {e}")))?;
    Ok(this)
}

/// Reads an integer from the group: v1 its own file, v2 the equivalent.
fn read_number(mrb: Mrb, this: mrb_value, args: &[mrb_value], v1_file: &str) -> RubyResult {
    arity(args, 0, 0)?;
    let group = this_group(mrb, this)?;
    let value: Option<i64> = match (group.version, v1_file) {
        (Version::V1, _) => group.read(v1_file).map_err(RubyError::runtime)?.trim().parse().ok(),
        (Version::V2, "cpu.cfs_quota_us") => {
            let text = group.read("cpu.max").map_err(RubyError::runtime)?;
            text.split_whitespace().next().and_then(|q| if q == "max" { Some(-1) } else { q.parse().ok() })
        }
        (Version::V2, "cpu.cfs_period_us") => {
            group.read("cpu.max").map_err(RubyError::runtime)?.split_whitespace().nth(1).and_then(|p| p.parse().ok())
        }
        (Version::V2, "memory.limit_in_bytes") => {
            let text = group.read("memory.max").map_err(RubyError::runtime)?;
            if text.trim() == "max" {
                Some(-1)
            } else {
                text.trim().parse().ok()
            }
        }
        (Version::V2, "memory.usage_in_bytes") => {
            group.read("memory.current").map_err(RubyError::runtime)?.trim().parse().ok()
        }
        (Version::V2, "cpu.shares") => group.read("cpu.weight").map_err(RubyError::runtime)?.trim().parse().ok(),
        (Version::V2, _) => None,
    };
    let value = value.ok_or_else(|| RubyError::runtime(format!("cannot read {v1_file} of {}", group.dir.display())))?;
    Ok(mrb.int(value))
}

fn cfs_quota_us(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    read_number(mrb, this, args, "cpu.cfs_quota_us")
}
fn cfs_period_us(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    read_number(mrb, this, args, "cpu.cfs_period_us")
}
fn shares(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    read_number(mrb, this, args, "cpu.shares")
}
fn limit_in_bytes(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    read_number(mrb, this, args, "memory.limit_in_bytes")
}
fn usage_in_bytes(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    read_number(mrb, this, args, "memory.usage_in_bytes")
}

/// `Cgroup::CPUACCT#usage`: CPU time of the group in nanoseconds.
fn cpu_usage(mrb: Mrb, this: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let group = this_group(mrb, this)?;
    let file = if group.version == Version::V1 { "cpuacct.usage" } else { "cpu.stat" };
    let text = group.read(file).map_err(RubyError::runtime)?;
    let ns = parse_cpu_usage_ns(group.version, &text)
        .ok_or_else(|| RubyError::runtime(format!("cannot read the CPU usage of {}", group.dir.display())))?;
    Ok(mrb.int(ns.min(i64::MAX as u64) as i64))
}

pub fn init(mrb: Mrb) {
    let module = mrb.define_module(c"Cgroup");
    for class_name in [c"CPU", c"CPUACCT", c"MEMORY", c"BLKIO"] {
        let class = mrb.define_class_under(module, class_name);
        mrb.define_method(class, c"initialize", ruby_fn!(initialize), ARGS_ANY);
        mrb.define_method(class, c"create", ruby_fn!(create), ARGS_ANY);
        mrb.define_method(class, c"modify", ruby_fn!(modify), ARGS_ANY);
        mrb.define_method(class, c"exist?", ruby_fn!(exist), ARGS_ANY);
        mrb.define_method(class, c"delete", ruby_fn!(delete), ARGS_ANY);
        mrb.define_method(class, c"attach", ruby_fn!(attach), ARGS_ANY);
        mrb.define_method(class, c"detach", ruby_fn!(detach), ARGS_ANY);
        match class_name.to_bytes() {
            b"CPU" => {
                mrb.define_method(class, c"cfs_quota_us=", ruby_fn!(set_cfs_quota_us), ARGS_ANY);
                mrb.define_method(class, c"cfs_period_us=", ruby_fn!(set_cfs_period_us), ARGS_ANY);
                mrb.define_method(class, c"shares=", ruby_fn!(set_shares), ARGS_ANY);
                mrb.define_method(class, c"cfs_quota_us", ruby_fn!(cfs_quota_us), ARGS_ANY);
                mrb.define_method(class, c"cfs_period_us", ruby_fn!(cfs_period_us), ARGS_ANY);
                mrb.define_method(class, c"shares", ruby_fn!(shares), ARGS_ANY);
            }
            b"CPUACCT" => mrb.define_method(class, c"usage", ruby_fn!(cpu_usage), ARGS_ANY),
            b"MEMORY" => {
                mrb.define_method(class, c"limit_in_bytes=", ruby_fn!(set_limit_in_bytes), ARGS_ANY);
                mrb.define_method(class, c"limit_in_bytes", ruby_fn!(limit_in_bytes), ARGS_ANY);
                mrb.define_method(class, c"usage_in_bytes", ruby_fn!(usage_in_bytes), ARGS_ANY);
            }
            _ => {
                mrb.define_method(class, c"throttle_read_bps_device=", ruby_fn!(set_read_bps), ARGS_ANY);
                mrb.define_method(class, c"throttle_write_bps_device=", ruby_fn!(set_write_bps), ARGS_ANY);
            }
        }
    }
}
