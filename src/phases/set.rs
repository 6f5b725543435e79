//! `mruby_set` / `mruby_set_code` without ngx_devel_kit: a script code is
//! appended to the rewrite module's code list, so it runs in config order
//! with `set`, `if` and `return` (SERVER_REWRITE at server level, REWRITE in
//! a location), and its value is stored like `set` stores one.

use core::mem::size_of;
use core::ptr;
use std::rc::Rc;

use ngx::core::Pool;
use ngx::ffi::*;

use super::ctx::{request_ctx, watch_globals, CurrentRequest};
use crate::conf::conf_vm;
use crate::ngx_util::{log, pool_str};
use crate::vm::run::run_to_end;
use crate::vm::{Script, Vm};
use crate::HttpMrubyModule;

extern "C" {
    /// nginx's rewrite module (exported by the nginx binary).
    static mut ngx_http_rewrite_module: ngx_module_t;
}

/// Mirror of `ngx_http_rewrite_loc_conf_t` (ngx_http_rewrite_module.c; it is
/// not in a header, and has kept this layout since nginx 0.x).
#[repr(C)]
struct RewriteLocConf {
    codes: *mut ngx_array_t,
    stack_size: ngx_uint_t,
    log: ngx_flag_t,
    uninitialized_variable_warn: ngx_flag_t,
}

/// Our script code: the engine calls `code`, then advances by its size.
#[repr(C)]
struct MrubySetCode {
    code: ngx_http_script_code_pt,
    script: *const Script,
    vm: *const Vm,
}

/// The script engine stops at a NULL code word; jumping here aborts it.
static EXIT_CODE: usize = 0;

/// Appends `mruby_set $var` to the rewrite codes of the scope being parsed.
pub fn register(cf: &mut ngx_conf_t, var_name: &[u8], script: Rc<Script>) -> Result<(), String> {
    let vm = conf_vm(cf)?;
    // Keep the script and VM alive as long as the configuration.
    // SAFETY: cf->pool is the live configuration pool.
    let pool = unsafe { Pool::from_ngx_pool(cf.pool) };
    let script_ptr = pool.allocate(script);
    if script_ptr.is_null() {
        return Err("out of memory".into());
    }
    let vm_ptr = pool.allocate(vm);
    if vm_ptr.is_null() {
        return Err("out of memory".into());
    }
    let mut name = pool_str(cf.pool, var_name).ok_or("out of memory")?;
    // SAFETY: cf is live; the variable API copies the name; codes are
    // allocated in cf->pool by ngx_http_script_start_code.
    unsafe {
        let var = ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_CHANGEABLE as ngx_uint_t);
        if var.is_null() {
            return Err(format!("cannot add variable \"${}\"", String::from_utf8_lossy(var_name)));
        }
        let index = ngx_http_get_variable_index(cf, &mut name);
        if index == NGX_ERROR as ngx_int_t {
            return Err(format!("cannot index variable \"${}\"", String::from_utf8_lossy(var_name)));
        }
        if (*var).get_handler.is_none() {
            (*var).get_handler = Some(unset_variable);
            (*var).data = index as usize;
        }

        let ctx = cf.ctx as *mut ngx_http_conf_ctx_t;
        let rewrite_index = (*ptr::addr_of!(ngx_http_rewrite_module)).ctx_index;
        let rlcf = *(*ctx).loc_conf.add(rewrite_index) as *mut RewriteLocConf;
        let code =
            ngx_http_script_start_code(cf.pool, &mut (*rlcf).codes, size_of::<MrubySetCode>()) as *mut MrubySetCode;
        if code.is_null() {
            return Err("out of memory".into());
        }
        code.write(MrubySetCode {
            code: Some(run_set_code),
            script: Rc::as_ptr(&*script_ptr),
            vm: Rc::as_ptr(&*vm_ptr),
        });
        let set = ngx_http_script_start_code(cf.pool, &mut (*rlcf).codes, size_of::<ngx_http_script_var_code_t>())
            as *mut ngx_http_script_var_code_t;
        if set.is_null() {
            return Err("out of memory".into());
        }
        set.write(ngx_http_script_var_code_t { code: Some(ngx_http_script_set_var_code), index: index as usize });
    }
    Ok(())
}

/// Value of a `mruby_set` variable read before its script ran: empty.
unsafe extern "C" fn unset_variable(
    _r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a value slot to fill.
    unsafe {
        (*v).set_len(0);
        (*v).data = ptr::null_mut();
        (*v).set_valid(1);
        (*v).set_no_cacheable(0);
        (*v).set_not_found(0);
    }
    NGX_OK as ngx_int_t
}

/// Runs the script and pushes its `to_s` value on the engine stack; the
/// following set-var code stores it. An exception ends the rewrite codes
/// with status 500.
unsafe extern "C" fn run_set_code(e: *mut ngx_http_script_engine_t) {
    // SAFETY: the engine's ip points at our MrubySetCode (written by register).
    let (engine, code) = unsafe { (&mut *e, &*((*e).ip as *const MrubySetCode)) };
    // SAFETY: advancing past our code, as every script code does.
    engine.ip = unsafe { engine.ip.add(size_of::<MrubySetCode>()) };
    let r = engine.request;
    // SAFETY: the script and VM live in the configuration pool.
    let (script, vm) = unsafe { (&*code.script, &*code.vm) };
    match evaluate(r, vm, script) {
        Ok(value) => {
            // SAFETY: sp points into the engine's value stack (sized by the rewrite module).
            unsafe {
                (*engine.sp).set_len(value.len as u32);
                (*engine.sp).data = value.data;
                (*engine.sp).set_valid(1);
                (*engine.sp).set_no_cacheable(0);
                (*engine.sp).set_not_found(0);
                engine.sp = engine.sp.add(1);
            }
        }
        Err(()) => {
            engine.status = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            engine.ip = ptr::addr_of!(EXIT_CODE) as *mut u8;
        }
    }
}

fn evaluate(r: *mut ngx_http_request_t, vm: &Vm, script: &Script) -> Result<ngx_str_t, ()> {
    // SAFETY: r is the live request running the rewrite codes.
    let request_log = unsafe { (*(*r).connection).log };
    let ctx = request_ctx(r, vm).ok_or(())?;
    let scope_cache = scope_cache(r);
    let proc_ = script.current(vm.mrb(), scope_cache).map_err(|err| {
        log(request_log, NGX_LOG_ERR, &format!("mruby_set: failed to recompile {err}"));
    })?;
    let mrb = vm.mrb();
    let arena = mrb.arena_save();
    let _current = CurrentRequest::enter(r);
    let result = run_to_end(vm, proc_, script.suspendable())
        .map_err(|failure| log(request_log, NGX_LOG_ERR, &format!("mruby_set: {}", failure.report)))
        .and_then(|value| {
            let text = if mrb.is_nil(value) { Ok(mrb.str(b"")) } else { mrb.to_s(value) };
            text.map_err(|exc| {
                let report = crate::vm::run::describe_exception(mrb, exc);
                log(request_log, NGX_LOG_ERR, &format!("mruby_set: to_s failed: {report}"));
            })
        })
        .and_then(|text| {
            // SAFETY: r is live; the value is copied into its pool.
            pool_str(unsafe { (*r).pool }, mrb.str_bytes(text).unwrap_or_default()).ok_or(())
        });
    mrb.arena_restore(arena);
    watch_globals(r, vm, ctx)?;
    result
}

fn scope_cache(r: *mut ngx_http_request_t) -> bool {
    use ngx::http::HttpModuleLocationConf;
    // SAFETY: r is live.
    HttpMrubyModule::location_conf(unsafe { &*r }).map(|loc| loc.cache()).unwrap_or(false)
}
