//! `Nginx::Resource`: read per-host usage and auto-confinement from Ruby
//! (the same data as `resource_stats`). Read-only: nothing a script does
//! here can change a host's figures or its class. Also the two resource
//! methods of `Nginx::Request`: `resource_class=` (before content) and
//! `resource_class`.

use mruby_sys::*;

use crate::api::{arg_bytes, arity, with_request, ARGS_ANY};
use crate::host::{self, Context};
use crate::resources::{host_usage, is_confined, request_class, set_request_class};
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

/// Longest host name accepted (longer ones are never counted).
const MAX_HOST: usize = 255;

fn host_arg(mrb: Mrb, value: mrb_value) -> Result<String, RubyError> {
    let bytes = arg_bytes(mrb, value, "host")?;
    if bytes.len() > MAX_HOST {
        return Err(RubyError::argument(format!("host is {} bytes long, at most {MAX_HOST}", bytes.len())));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// `Nginx::Resource.usage(host)` → Hash of the host's figures since the
/// zone was created (`requests`, `cpu_user_ms`, `cpu_sys_ms`,
/// `mem_peak_kb`) and over the auto-confine window (`window_cpu_ms`);
/// zeros for a host never seen or without any resource directive.
fn usage(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let host = host_arg(mrb, args[0])?;
    let record = host_usage(&host).unwrap_or_default();
    let window = crate::resources::usage::window_total(&record);
    let hash = mrb.hash_new();
    for (key, value) in [
        ("requests", record.requests),
        ("cpu_user_ms", record.cpu_user_ms),
        ("cpu_sys_ms", record.cpu_sys_ms),
        ("mem_peak_kb", record.mem_peak_kb),
        ("window_cpu_ms", window),
    ] {
        mrb.hash_set(hash, mrb.str(key.as_bytes()), mrb.int(value.min(i64::MAX as u64) as i64));
    }
    Ok(hash)
}

/// `Nginx::Resource.confined?(host)` → whether auto-confinement holds the host in its class now.
fn confined(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let host = host_arg(mrb, args[0])?;
    Ok(mrb.bool(is_confined(&host)))
}

/// Where `resource_class=` may run: every phase before content (the class
/// is applied when the request is passed to its runner, in content).
fn before_content() -> Context {
    Context::POST_READ | Context::SERVER_REWRITE | Context::REWRITE | Context::ACCESS | Context::SET
}

/// `r.resource_class = "name"` (`""` or `nil`: no class). Raises TypeError
/// for another type, ArgumentError for an unknown class, RuntimeError
/// from content or later.
fn set_class(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    // RuntimeError outside a request (mruby_init..., or no script run at all)
    with_request(|_, _| ())?;
    let context = host::current()
        .map(|h| h.context())
        .ok_or_else(|| RubyError::runtime("resource_class= is refused outside a script run"))?;
    if !context.within(before_content()) {
        return Err(RubyError::runtime(format!(
            "resource_class= is not allowed in {} (only before content: the class applies when the request is passed on)",
            context.name()
        )));
    }
    let name: Vec<u8> =
        if mrb.is_nil(args[0]) { Vec::new() } else { arg_bytes(mrb, args[0], "resource class")?.to_vec() };
    with_request(move |r, _| set_request_class(r, &name))?.map_err(RubyError::argument)?;
    Ok(args[0])
}

/// `r.resource_class` → the name of the class the request runs in, or nil.
fn get_class(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let name = with_request(|r, _| request_class(r).map(|(class, _)| class.name.as_str()))?;
    Ok(name.map_or(mrb.nil(), |name| mrb.str(name.as_bytes())))
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let resource = mrb.define_class_under(nginx, c"Resource");
    mrb.define_class_method(resource, c"usage", ruby_fn!(usage), ARGS_ANY);
    mrb.define_class_method(resource, c"confined?", ruby_fn!(confined), ARGS_ANY);
    let request = mrb.define_class_under(nginx, c"Request");
    mrb.define_method(request, c"resource_class=", ruby_fn!(set_class), ARGS_ANY);
    mrb.define_method(request, c"resource_class", ruby_fn!(get_class), ARGS_ANY);
}
