//! `ENV`: the worker process's environment (std::env), as a hash-like
//! object. Changes are the worker's own: nginx workers run scripts on one
//! thread, so setting variables is not racing another thread here.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use mruby_sys::*;

use super::{block_arg, errno_error, reraise, str_arg, yield_block, RubyError, RubyResult};
use crate::api::{arity, ARGS_ANY};
use crate::ruby_fn;
use crate::vm::Mrb;

/// A variable name argument (a String).
fn name_arg(mrb: Mrb, value: mrb_value) -> Result<Vec<u8>, RubyError> {
    let name = str_arg(mrb, value)?;
    if name.contains(&0) {
        return Err(RubyError::new("ArgumentError", "bad environment variable name: contains null byte"));
    }
    Ok(name.to_vec())
}

fn lookup(name: &[u8]) -> Option<OsString> {
    if name.is_empty() || name.contains(&b'=') {
        return None;
    }
    std::env::var_os(OsStr::from_bytes(name))
}

fn text(mrb: Mrb, value: OsString) -> mrb_value {
    mrb.str(&value.into_vec())
}

/// `ENV[name]` → String or nil.
fn aref(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    Ok(lookup(&name_arg(mrb, args[0])?).map_or(mrb.nil(), |v| text(mrb, v)))
}

/// `ENV[name] = value` (nil deletes).
fn aset(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 2, 2)?;
    let name = name_arg(mrb, args[0])?;
    if mrb.is_nil(args[1]) {
        remove(&name);
        return Ok(args[1]);
    }
    let value = str_arg(mrb, args[1])?;
    if value.contains(&0) {
        return Err(RubyError::new("ArgumentError", "bad environment variable value: contains null byte"));
    }
    if name.is_empty() || name.contains(&b'=') {
        let context = format!("setenv({})", String::from_utf8_lossy(&name));
        return Err(errno_error(nix::errno::Errno::EINVAL, &context));
    }
    // Checked above: a non-empty name without '=' or NUL, a value without NUL.
    std::env::set_var(OsStr::from_bytes(&name), OsStr::from_bytes(value));
    Ok(args[1])
}

fn remove(name: &[u8]) -> Option<OsString> {
    let old = lookup(name)?;
    // lookup() found it, so the name is valid for remove_var
    std::env::remove_var(OsStr::from_bytes(name));
    Some(old)
}

/// `ENV.fetch(name)`, `fetch(name, default)`, `fetch(name) { |name| ... }`;
/// KeyError when missing without a default.
fn fetch(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let name = name_arg(mrb, args[0])?;
    if let Some(value) = lookup(&name) {
        return Ok(text(mrb, value));
    }
    let block = block_arg(mrb);
    if !mrb.is_nil(block) {
        return yield_block(mrb, block, &[args[0]]);
    }
    if let Some(default) = args.get(1) {
        return Ok(*default);
    }
    let quoted = mrb.inspect(args[0]);
    Err(RubyError::new("KeyError", format!("key not found: {quoted}")))
}

/// `ENV.key?(name)` (also `has_key?`, `include?`, `member?`).
fn has_key(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    Ok(mrb.bool(lookup(&name_arg(mrb, args[0])?).is_some()))
}

/// `ENV.delete(name)` → the old value or nil.
fn delete(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    Ok(remove(&name_arg(mrb, args[0])?).map_or(mrb.nil(), |v| text(mrb, v)))
}

fn keys(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let list = mrb.ary_new();
    for (name, _) in std::env::vars_os() {
        mrb.ary_push(list, text(mrb, name));
    }
    Ok(list)
}

fn values(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    let list = mrb.ary_new();
    for (_, value) in std::env::vars_os() {
        mrb.ary_push(list, text(mrb, value));
    }
    Ok(list)
}

/// `ENV.to_h` (also `to_hash`): a Hash copy of the environment.
fn to_h(mrb: Mrb, _self: mrb_value, _args: &[mrb_value]) -> RubyResult {
    let hash = mrb.hash_new();
    for (name, value) in std::env::vars_os() {
        mrb.hash_set(hash, text(mrb, name), text(mrb, value));
    }
    Ok(hash)
}

fn size(mrb: Mrb, _self: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.int(std::env::vars_os().count() as i64))
}

fn inspect(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    let hash = to_h(mrb, self_, args)?;
    mrb.call(hash, "inspect", &[]).map_err(reraise)
}

fn to_s(mrb: Mrb, _self: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.str(b"ENV"))
}

pub fn init(mrb: Mrb) {
    let Ok(env) = mrb.new_instance(mrb.object_class()) else { return };
    // SAFETY: a new Object is a heap object.
    let object: *mut RObject = unsafe { mrbsys_ptr(env) }.cast();
    let methods: &[(&core::ffi::CStr, mrb_func_t)] = &[
        (c"[]", ruby_fn!(aref)),
        (c"[]=", ruby_fn!(aset)),
        (c"store", ruby_fn!(aset)),
        (c"fetch", ruby_fn!(fetch)),
        (c"key?", ruby_fn!(has_key)),
        (c"has_key?", ruby_fn!(has_key)),
        (c"include?", ruby_fn!(has_key)),
        (c"member?", ruby_fn!(has_key)),
        (c"delete", ruby_fn!(delete)),
        (c"keys", ruby_fn!(keys)),
        (c"values", ruby_fn!(values)),
        (c"to_h", ruby_fn!(to_h)),
        (c"to_hash", ruby_fn!(to_h)),
        (c"size", ruby_fn!(size)),
        (c"length", ruby_fn!(size)),
        (c"inspect", ruby_fn!(inspect)),
        (c"to_s", ruby_fn!(to_s)),
    ];
    for (name, func) in methods {
        // SAFETY: live VM; object is live (it becomes a constant below).
        unsafe { mrb_define_singleton_method(mrb.as_ptr(), object, name.as_ptr(), *func, ARGS_ANY) };
    }
    mrb.define_const(mrb.object_class(), c"ENV", env);
}
