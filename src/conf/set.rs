//! `mruby_set` / `mruby_set_code` without ngx_devel_kit, at configuration
//! time: a script code is appended to the rewrite module's code list, so it
//! runs in config order with `set`, `if` and `return` (SERVER_REWRITE at
//! server level, REWRITE in a location). The code's function, which runs
//! the script, is the phases' (`phases/set.rs`), handed to the main conf by
//! `lib.rs` at preconfiguration so that `conf/` does not import `phases/`.

use core::mem::size_of;
use core::ptr;
use std::rc::Rc;

use ngx::core::Pool;
use ngx::ffi::*;
use ngx::http::HttpModuleMainConf;

use super::conf_vm;
use crate::ngx_util::pool_str;
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

/// Our script code: the engine calls `code` (the phases' runner), then
/// advances by its size.
#[repr(C)]
pub(crate) struct MrubySetCode {
    pub code: ngx_http_script_code_pt,
    pub script: *const Script,
    pub vm: *const Vm,
}

/// Appends `mruby_set $var` to the rewrite codes of the scope being parsed.
pub fn register(cf: &mut ngx_conf_t, var_name: &[u8], script: Rc<Script>) -> Result<(), String> {
    let vm = conf_vm(cf)?;
    let runner = HttpMrubyModule::main_conf(cf).and_then(|main| main.set_code_runner).ok_or("mruby_set: no runner")?;
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
        code.write(MrubySetCode { code: Some(runner), script: Rc::as_ptr(&*script_ptr), vm: Rc::as_ptr(&*vm_ptr) });
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
