//! `Nginx::Vlimit`: read the vlimit zones from Ruby (the same data as
//! `vlimit_stats`).

use mruby_sys::*;

use crate::api::{arg_bytes, arity, ARGS_ANY};
use crate::limits::{key_count, stats_json};
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

fn text(mrb: Mrb, value: mrb_value, what: &str) -> Result<String, RubyError> {
    match mrb.to_sym(value) {
        Some(sym) => Ok(String::from_utf8_lossy(mrb.sym_name(sym)).into_owned()),
        None => Ok(String::from_utf8_lossy(arg_bytes(mrb, value, what)?).into_owned()),
    }
}

/// `Nginx::Vlimit.count(zone, key, kind = :key)` → Integer. `kind` is `:ip`
/// (address text), `:file` (a path), `:host` or `:key` (a `key=` value).
fn count(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 2, 3)?;
    let zone = text(mrb, args[0], "zone")?;
    let key = text(mrb, args[1], "key")?;
    let kind = match args.get(2) {
        Some(v) => text(mrb, *v, "kind")?,
        None => String::from("key"),
    };
    if !matches!(kind.as_str(), "ip" | "file" | "host" | "key") {
        return Err(RubyError::argument(format!("unknown vlimit kind \"{kind}\" (ip, file, host or key)")));
    }
    let n = key_count(&zone, &kind, &key)
        .ok_or_else(|| RubyError::argument(format!("no vlimit zone \"{zone}\" (or an invalid {kind} \"{key}\")")))?;
    Ok(mrb.int(n as i64))
}

/// `Nginx::Vlimit.stats(zone)` → the zone's stats (as `vlimit_stats` shows
/// them) as a Hash.
fn stats(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let zone = text(mrb, args[0], "zone")?;
    let json = stats_json(&zone).ok_or_else(|| RubyError::argument(format!("no vlimit zone \"{zone}\"")))?;
    let value: serde_json::Value =
        serde_json::from_str(&json).map_err(|err| RubyError::runtime(format!("vlimit stats: {err}")))?;
    Ok(crate::api::core::gems::json::to_ruby(mrb, &value, false))
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let vlimit = mrb.define_class_under(nginx, c"Vlimit");
    mrb.define_class_method(vlimit, c"count", ruby_fn!(count), ARGS_ANY);
    mrb.define_class_method(vlimit, c"stats", ruby_fn!(stats), ARGS_ANY);
}
