//! `$tenant_socket`, `$tenant_uid`, `$tenant_runner_pid`, `$tenant_spawn`:
//! what the supervisor answered for this request (not found otherwise).

use ngx::ffi::*;
use ngx::ngx_string;

use super::access::{existing_ctx, TenantCtx};
use crate::ngx_util::pool_str;

#[derive(Clone, Copy)]
#[repr(usize)]
enum Field {
    Socket,
    Uid,
    RunnerPid,
    Spawn,
}

fn set_value(v: &mut ngx_variable_value_t, s: ngx_str_t) {
    v.data = s.data;
    v.set_len(s.len as u32);
    v.set_valid(1);
    v.set_no_cacheable(1);
    v.set_not_found(0);
}

fn value_of(r: &ngx_http_request_t, ctx: &TenantCtx, field: Field) -> Option<ngx_str_t> {
    match field {
        Field::Socket => Some(ctx.socket.get()),
        Field::Uid => pool_str(r.pool, ctx.uid.get().to_string().as_bytes()),
        Field::RunnerPid => pool_str(r.pool, ctx.pid.get().to_string().as_bytes()),
        Field::Spawn => {
            let text = ctx.spawn.get().as_str();
            Some(ngx_str_t { len: text.len(), data: text.as_ptr() as *mut u8 })
        }
    }
}

unsafe extern "C" fn get_variable(r: *mut ngx_http_request_t, v: *mut ngx_variable_value_t, data: usize) -> ngx_int_t {
    // SAFETY: nginx passes a live request and the value to fill.
    let (r, v) = unsafe { (&*r, &mut *v) };
    let field = match data {
        0 => Field::Socket,
        1 => Field::Uid,
        2 => Field::RunnerPid,
        _ => Field::Spawn,
    };
    match existing_ctx(r).filter(|ctx| ctx.ready()) {
        Some(ctx) => match value_of(r, ctx, field) {
            Some(s) => set_value(v, s),
            None => return NGX_ERROR as ngx_int_t,
        },
        None => v.set_not_found(1),
    }
    NGX_OK as ngx_int_t
}

/// Registers the variables (preconfiguration).
pub(super) fn add_variables(cf: &mut ngx_conf_t) -> Result<(), ()> {
    let vars: [(ngx_str_t, Field); 4] = [
        (ngx_string!("tenant_socket"), Field::Socket),
        (ngx_string!("tenant_uid"), Field::Uid),
        (ngx_string!("tenant_runner_pid"), Field::RunnerPid),
        (ngx_string!("tenant_spawn"), Field::Spawn),
    ];
    for (mut name, field) in vars {
        // SAFETY: adds a variable to the configuration being parsed.
        let var = unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t) };
        if var.is_null() {
            return Err(());
        }
        // SAFETY: ngx_http_add_variable returned a live variable.
        unsafe {
            (*var).get_handler = Some(get_variable);
            (*var).data = field as usize;
        }
    }
    Ok(())
}
