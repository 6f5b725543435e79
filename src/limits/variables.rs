//! `$vlimit_status` and `$vlimit_count`, for `access_log` and `if`.

use ngx::ffi::*;
use ngx::ngx_string;

use super::counting::find_hold;

/// Sets `v` to `bytes` (static or request-pool memory).
fn set_value(v: &mut ngx_variable_value_t, data: *mut u8, len: usize) {
    v.data = data;
    v.set_len(len as u32);
    v.set_valid(1);
    v.set_no_cacheable(1);
    v.set_not_found(0);
}

fn not_found(v: &mut ngx_variable_value_t) {
    v.set_not_found(1);
}

/// `$vlimit_status`: PASSED, REJECTED, ZONE_FULL or REJECTED_DRY_RUN;
/// not found when no limit applied to the request.
unsafe extern "C" fn status_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request and the value to fill.
    let (r, v) = unsafe { (&*r, &mut *v) };
    match find_hold(r) {
        Some(hold) => {
            let text = hold.status.as_str();
            set_value(v, text.as_ptr() as *mut u8, text.len());
        }
        None => not_found(v),
    }
    NGX_OK as ngx_int_t
}

/// `$vlimit_count`: the highest count among the request's keys.
unsafe extern "C" fn count_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request and the value to fill.
    let (r, v) = unsafe { (&*r, &mut *v) };
    let Some(hold) = find_hold(r) else {
        not_found(v);
        return NGX_OK as ngx_int_t;
    };
    // at most 10 digits, formatted without a heap allocation
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut n = hold.count;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    match crate::ngx_util::pool_str(r.pool, &digits[at..]) {
        Some(s) => set_value(v, s.data, s.len),
        None => return NGX_ERROR as ngx_int_t,
    }
    NGX_OK as ngx_int_t
}

type GetFn = unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_variable_value_t, usize) -> ngx_int_t;

/// Registers the variables (preconfiguration).
pub(super) fn add_variables(cf: &mut ngx_conf_t) -> Result<(), ()> {
    let vars: [(ngx_str_t, GetFn); 2] =
        [(ngx_string!("vlimit_status"), status_variable), (ngx_string!("vlimit_count"), count_variable)];
    for (mut name, get) in vars {
        // SAFETY: adds a variable to the configuration being parsed.
        let var = unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t) };
        if var.is_null() {
            return Err(());
        }
        // SAFETY: ngx_http_add_variable returned a live variable.
        unsafe { (*var).get_handler = Some(get) };
    }
    Ok(())
}
