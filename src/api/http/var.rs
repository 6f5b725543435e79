//! `Nginx::Var`: nginx variables by method name (`var.remote_addr`,
//! `var.name = value`), plus `set` and `exist?`.

use mruby_sys::*;
use ngx::ffi::*;
use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};

use crate::api::{arg_bytes, arity, to_s_bytes, with_request, ARGS_ANY};
use crate::ngx_util::{log, pool_str};
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

/// The value of variable `name` for `r`, or `None` when it does not exist
/// or is not found.
pub fn get_variable<'a>(r: &mut ngx_http_request_t, name: &[u8]) -> Option<&'a [u8]> {
    let mut lowercase = name.to_ascii_lowercase();
    let mut key = ngx_str_t { len: lowercase.len(), data: lowercase.as_mut_ptr() };
    // SAFETY: r is live; nginx reads `key` during the call only.
    unsafe {
        let hash = ngx_hash_key(key.data, key.len);
        let value = ngx_http_get_variable(r, &mut key, hash);
        if value.is_null() || (*value).not_found() != 0 {
            return None;
        }
        let len = (*value).len() as usize;
        if len == 0 || (*value).data.is_null() {
            return Some(&[]);
        }
        Some(core::slice::from_raw_parts((*value).data, len))
    }
}

/// Sets a changeable variable (defined by `set`, `mruby_set`, ...).
pub fn set_variable(r: &mut ngx_http_request_t, name: &[u8], value: &[u8]) -> Result<(), String> {
    let display = String::from_utf8_lossy(name).into_owned();
    let mut lowercase = name.to_ascii_lowercase();
    let cmcf = NgxHttpCoreModule::main_conf(r).ok_or("no core main conf")?;
    // SAFETY: the variables hash is built at config time and read-only now.
    let var = unsafe {
        let hash = ngx_hash_key(lowercase.as_mut_ptr(), lowercase.len());
        ngx_hash_find(&cmcf.variables_hash as *const _ as *mut _, hash, lowercase.as_mut_ptr(), lowercase.len())
            as *mut ngx_http_variable_t
    };
    if var.is_null() {
        return Err(format!("{display} is not found"));
    }
    // SAFETY: var points into the core module's variable table.
    let var = unsafe { &mut *var };
    if var.flags & NGX_HTTP_VAR_CHANGEABLE as ngx_uint_t == 0 {
        return Err(format!("{display} is not changeable"));
    }
    let stored = pool_str(r.pool, value).ok_or("out of memory")?;
    // SAFETY: the value struct is filled before nginx reads it; indexes are in range.
    unsafe {
        if let Some(set_handler) = var.set_handler {
            let v = ngx_pcalloc(r.pool, core::mem::size_of::<ngx_variable_value_t>()) as *mut ngx_variable_value_t;
            if v.is_null() {
                return Err("out of memory".into());
            }
            (*v).set_len(stored.len as u32);
            (*v).data = stored.data;
            (*v).set_valid(1);
            set_handler(r, v, var.data);
            return Ok(());
        }
        if var.flags & NGX_HTTP_VAR_INDEXED as ngx_uint_t != 0 {
            let v = &mut *r.variables.add(var.index);
            v.set_len(stored.len as u32);
            v.data = stored.data;
            v.set_valid(1);
            v.set_no_cacheable(0);
            v.set_not_found(0);
            return Ok(());
        }
    }
    Err(format!("{display} cannot be set"))
}

fn value_or_nil(mrb: Mrb, value: Option<&[u8]>) -> mrb_value {
    value.map(|v| mrb.str(v)).unwrap_or_else(|| mrb.nil())
}

/// `var.name` / `var.name = value` via method_missing.
fn method_missing(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 2)?;
    let name = match mrb.to_sym(args[0]) {
        Some(sym) => mrb.sym_name(sym).to_vec(),
        None => return Err(RubyError::type_error("method name must be a Symbol")),
    };
    if let Some(var_name) = name.strip_suffix(b"=") {
        let value = args.get(1).copied().unwrap_or_else(|| mrb.nil());
        return assign(mrb, self_, var_name, value);
    }
    let value = with_request(|r, _| get_variable(r, &name))?;
    Ok(value_or_nil(mrb, value))
}

/// Assigns and returns the value; nil (with an error log line) on failure.
fn assign(mrb: Mrb, _self: mrb_value, name: &[u8], value: mrb_value) -> RubyResult {
    // to_s may run Ruby that reaches the request too: take it only after
    let text = to_s_bytes(mrb, value)?;
    let assigned = with_request(|r, _| {
        set_variable(r, name, &text).map_err(|message| {
            // SAFETY: the request's connection is live while it runs.
            log(unsafe { (*r.connection).log }, NGX_LOG_ERR, &format!("Nginx::Var: {message}"));
        })
    })?;
    Ok(if assigned.is_ok() { mrb.str(&text) } else { mrb.nil() })
}

/// `var.set(name, value)`
fn set(mrb: Mrb, self_: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 2, 2)?;
    let name = match mrb.to_sym(args[0]) {
        Some(sym) => mrb.sym_name(sym).to_vec(),
        None => arg_bytes(mrb, args[0], "variable name")?.to_vec(),
    };
    assign(mrb, self_, &name, args[1])
}

/// `var.exist?(name)`
fn exist(mrb: Mrb, _self: mrb_value, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let name = match mrb.to_sym(args[0]) {
        Some(sym) => mrb.sym_name(sym).to_vec(),
        None => arg_bytes(mrb, args[0], "variable name")?.to_vec(),
    };
    Ok(mrb.bool(with_request(|r, _| get_variable(r, &name).is_some())?))
}

fn respond_to_missing(mrb: Mrb, _self: mrb_value, _args: &[mrb_value]) -> RubyResult {
    Ok(mrb.bool(true))
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let var = mrb.define_class_under(nginx, c"Var");
    mrb.define_method(var, c"method_missing", ruby_fn!(method_missing), ARGS_ANY);
    mrb.define_method(var, c"respond_to_missing?", ruby_fn!(respond_to_missing), ARGS_ANY);
    mrb.define_method(var, c"set", ruby_fn!(set), ARGS_ANY);
    mrb.define_method(var, c"exist?", ruby_fn!(exist), ARGS_ANY);
}
