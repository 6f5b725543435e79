//! `Nginx::Headers_in` / `Nginx::Headers_out`: `[]`, `[]=`, `delete`, `all`.
//!
//! Names and values holding CR, LF or NUL raise `ArgumentError`: a script
//! cannot split a header or inject a response.

use core::mem::{offset_of, size_of};
use core::ptr;

use mruby_sys::*;
use ngx::ffi::*;

use crate::api::{arity, to_s_bytes, with_request, ARGS_ANY};
use crate::ngx_util::{header_elements, pool_str, str_bytes};
use crate::ruby_fn;
use crate::vm::{Mrb, RubyError, RubyResult};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    In,
    Out,
}

fn list(r: &mut ngx_http_request_t, side: Side) -> *mut ngx_list_t {
    match side {
        Side::In => &mut r.headers_in.headers,
        Side::Out => &mut r.headers_out.headers,
    }
}

fn matching(list: *mut ngx_list_t, name: &[u8]) -> Vec<*mut ngx_table_elt_t> {
    header_elements(list)
        .into_iter()
        // SAFETY: header_elements() returns live elements.
        .filter(|elt| unsafe { str_bytes(&(**elt).key) }.eq_ignore_ascii_case(name))
        .collect()
}

fn check_header_text(what: &str, bytes: &[u8]) -> Result<(), RubyError> {
    if bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        return Err(RubyError::argument(format!("header {what} must not contain CR, LF or NUL")));
    }
    Ok(())
}

fn header_name(mrb: Mrb, value: mrb_value) -> Result<Vec<u8>, RubyError> {
    let name = match mrb.to_sym(value) {
        Some(sym) => mrb.sym_name(sym).to_vec(),
        None => crate::api::arg_bytes(mrb, value, "header name")?.to_vec(),
    };
    if name.is_empty() {
        return Err(RubyError::argument("header name must not be empty"));
    }
    check_header_text("name", &name)?;
    Ok(name)
}

/// `headers[name]`: nil, a String, or an Array when repeated.
fn get(mrb: Mrb, side: Side, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let name = header_name(mrb, args[0])?;
    let values: Vec<Vec<u8>> = with_request(|r, _| {
        if side == Side::Out && name.eq_ignore_ascii_case(b"content-type") {
            let content_type = str_bytes(&r.headers_out.content_type);
            return if content_type.is_empty() { Vec::new() } else { vec![content_type.to_vec()] };
        }
        // SAFETY: matching() returns live elements.
        matching(list(r, side), &name).iter().map(|elt| unsafe { str_bytes(&(**elt).value) }.to_vec()).collect()
    })?;
    Ok(match values.as_slice() {
        [] => mrb.nil(),
        [one] => mrb.str(one),
        many => {
            let ary = mrb.ary_new();
            for v in many {
                mrb.ary_push(ary, mrb.str(v));
            }
            ary
        }
    })
}

/// `headers[name] = value` (String, Array of values, or nil to delete).
fn set(mrb: Mrb, side: Side, args: &[mrb_value]) -> RubyResult {
    arity(args, 2, 2)?;
    let name = header_name(mrb, args[0])?;
    let values: Vec<Vec<u8>> = if mrb.is_nil(args[1]) {
        Vec::new()
    } else if mrb.is_array(args[1]) {
        (0..mrb.ary_len(args[1])).map(|i| to_s_bytes(mrb, mrb.ary_ref(args[1], i))).collect::<Result<_, _>>()?
    } else {
        vec![to_s_bytes(mrb, args[1])?]
    };
    for value in &values {
        check_header_text("value", value)?;
    }
    with_request(|r, _| {
        remove_all(r, side, &name);
        values.iter().try_for_each(|value| add(r, side, &name, value))
    })??;
    Ok(args[1])
}

/// `headers.delete(name)`: removes every header with that name.
fn delete(mrb: Mrb, side: Side, args: &[mrb_value]) -> RubyResult {
    arity(args, 1, 1)?;
    let name = header_name(mrb, args[0])?;
    with_request(|r, _| remove_all(r, side, &name))?;
    Ok(mrb.nil())
}

/// `headers.all`: `{name => value}`; for repeated names the last wins.
fn all(mrb: Mrb, side: Side, args: &[mrb_value]) -> RubyResult {
    arity(args, 0, 0)?;
    // copied out first: hash_set may run Ruby (a script's String#hash)
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = with_request(|r, _| {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = header_elements(list(r, side))
            .into_iter()
            // SAFETY: header_elements() returns live elements.
            .map(|elt| unsafe { (str_bytes(&(*elt).key).to_vec(), str_bytes(&(*elt).value).to_vec()) })
            .collect();
        if side == Side::Out && r.headers_out.content_type.len > 0 {
            pairs.push((b"Content-Type".to_vec(), str_bytes(&r.headers_out.content_type).to_vec()));
        }
        pairs
    })?;
    let hash = mrb.hash_new();
    for (key, value) in &pairs {
        mrb.hash_set(hash, mrb.str(key), mrb.str(value));
    }
    Ok(hash)
}

fn remove_all(r: &mut ngx_http_request_t, side: Side, name: &[u8]) {
    if side == Side::Out {
        if name.eq_ignore_ascii_case(b"content-type") {
            r.headers_out.content_type.len = 0;
            r.headers_out.content_type_len = 0;
            return;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            r.headers_out.content_length_n = -1;
            r.headers_out.content_length = ptr::null_mut();
        }
        for elt in matching(list(r, side), name) {
            // SAFETY: elt is a live element; hash 0 is nginx's "deleted" mark for output.
            unsafe { (*elt).hash = 0 };
            clear_out_pointer(r, elt);
        }
        return;
    }
    while let Some(elt) = matching(list(r, side), name).first().copied() {
        remove_in(r, elt);
    }
}

/// The `headers_out` fields that may point at a deleted element.
fn clear_out_pointer(r: &mut ngx_http_request_t, elt: *mut ngx_table_elt_t) {
    let out = &mut r.headers_out;
    for field in
        [&mut out.server, &mut out.location, &mut out.date, &mut out.last_modified, &mut out.refresh, &mut out.etag]
    {
        if *field == elt {
            *field = ptr::null_mut();
        }
    }
}

/// Removes one `headers_in` element for real (upstream modules forward
/// every element), fixing the pointers nginx keeps into the list.
fn remove_in(r: &mut ngx_http_request_t, target: *mut ngx_table_elt_t) {
    // SAFETY: target is an element of r->headers_in.headers; the shift stays
    // inside its part; pointer fields are fixed before anyone reads them.
    unsafe {
        let mut part: *mut ngx_list_part_t = &mut r.headers_in.headers.part;
        while !part.is_null() {
            let elts = (*part).elts as *mut ngx_table_elt_t;
            let end = elts.add((*part).nelts);
            if target >= elts && target < end {
                let after = end.offset_from(target) as usize - 1;
                // Where a pointer to an element of this part points after the shift.
                let shifted = |p: *mut ngx_table_elt_t| -> *mut ngx_table_elt_t {
                    if p > target && p < end {
                        p.sub(1)
                    } else {
                        p
                    }
                };
                fix_in_pointers(r, target, shifted);
                ptr::copy(target.add(1), target, after);
                (*part).nelts -= 1;
                return;
            }
            part = (*part).next;
        }
    }
}

/// nginx >= 1.23: the named `headers_in` fields (`host` .. the last one
/// before `user`) are all element pointers, repeated headers are chained
/// through `next`; a pointer to the removed element moves to its successor.
///
/// # Safety
/// `target` is an element of `r->headers_in.headers` about to be removed.
#[cfg(nginx_header_lists)]
unsafe fn fix_in_pointers(
    r: &mut ngx_http_request_t,
    target: *mut ngx_table_elt_t,
    shifted: impl Fn(*mut ngx_table_elt_t) -> *mut ngx_table_elt_t,
) {
    // SAFETY: as the caller's.
    unsafe {
        let remap = |p: *mut ngx_table_elt_t| if p == target { shifted((*target).next) } else { shifted(p) };
        // fix `next` chains and the named pointer fields
        for elt in header_elements(&mut r.headers_in.headers) {
            (*elt).next = remap((*elt).next);
        }
        let base = (&mut r.headers_in as *mut ngx_http_headers_in_t).cast::<u8>();
        let mut offset = offset_of!(ngx_http_headers_in_t, host);
        while offset < offset_of!(ngx_http_headers_in_t, user) {
            let field = base.add(offset).cast::<*mut ngx_table_elt_t>();
            *field = remap(*field);
            offset += size_of::<*mut ngx_table_elt_t>();
        }
    }
}

/// nginx < 1.23: the named fields point at the first element of their
/// name; repeated `Cookie` and `X-Forwarded-For` are arrays of element
/// pointers (`cookies`, and `x_forwarded_for` amid the named fields).
/// Every element of the name is being removed, so a field pointing at the
/// removed one becomes NULL and the arrays drop it.
///
/// # Safety
/// `target` is an element of `r->headers_in.headers` about to be removed.
#[cfg(not(nginx_header_lists))]
unsafe fn fix_in_pointers(
    r: &mut ngx_http_request_t,
    target: *mut ngx_table_elt_t,
    shifted: impl Fn(*mut ngx_table_elt_t) -> *mut ngx_table_elt_t,
) {
    /// Drops `target` from an array of element pointers, remaps the others.
    unsafe fn fix_array(
        array: &mut ngx_array_t,
        target: *mut ngx_table_elt_t,
        shifted: &impl Fn(*mut ngx_table_elt_t) -> *mut ngx_table_elt_t,
    ) {
        if array.elts.is_null() {
            return;
        }
        // SAFETY: an initialised ngx_array_t of `*mut ngx_table_elt_t`.
        unsafe {
            let items = core::slice::from_raw_parts_mut(array.elts as *mut *mut ngx_table_elt_t, array.nelts);
            let mut kept = 0;
            for i in 0..items.len() {
                if items[i] != target {
                    items[kept] = shifted(items[i]);
                    kept += 1;
                }
            }
            array.nelts = kept;
        }
    }

    // SAFETY: as the caller's.
    unsafe {
        let base = (&mut r.headers_in as *mut ngx_http_headers_in_t).cast::<u8>();
        let mut offset = offset_of!(ngx_http_headers_in_t, host);
        while offset < offset_of!(ngx_http_headers_in_t, user) {
            #[cfg(ngx_feature = "http_x_forwarded_for")]
            if offset == offset_of!(ngx_http_headers_in_t, x_forwarded_for) {
                fix_array(&mut r.headers_in.x_forwarded_for, target, &shifted);
                offset += size_of::<ngx_array_t>();
                continue;
            }
            let field = base.add(offset).cast::<*mut ngx_table_elt_t>();
            *field = if *field == target { ptr::null_mut() } else { shifted(*field) };
            offset += size_of::<*mut ngx_table_elt_t>();
        }
        fix_array(&mut r.headers_in.cookies, target, &shifted);
    }
}

fn add(r: &mut ngx_http_request_t, side: Side, name: &[u8], value: &[u8]) -> Result<(), RubyError> {
    let oom = || RubyError::runtime("out of memory");
    if side == Side::Out && name.eq_ignore_ascii_case(b"content-type") {
        let stored = pool_str(r.pool, value).ok_or_else(oom)?;
        r.headers_out.content_type = stored;
        r.headers_out.content_type_len = stored.len;
        return Ok(());
    }
    let key = pool_str(r.pool, name).ok_or_else(oom)?;
    let lowcase = pool_str(r.pool, &name.to_ascii_lowercase()).ok_or_else(oom)?;
    let stored = pool_str(r.pool, value).ok_or_else(oom)?;
    // SAFETY: pushing onto the request's header list; every field is set.
    let elt = unsafe {
        let elt = ngx_list_push(list(r, side)) as *mut ngx_table_elt_t;
        if elt.is_null() {
            return Err(oom());
        }
        (*elt).key = key;
        (*elt).value = stored;
        (*elt).lowcase_key = lowcase.data;
        (*elt).hash = if side == Side::In { ngx_hash_key(lowcase.data, lowcase.len) } else { 1 };
        #[cfg(nginx_header_lists)]
        {
            (*elt).next = ptr::null_mut();
        }
        elt
    };
    if side == Side::Out {
        if name.eq_ignore_ascii_case(b"server") {
            r.headers_out.server = elt;
        } else if name.eq_ignore_ascii_case(b"location") {
            r.headers_out.location = elt;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if let Some(n) = std::str::from_utf8(value).ok().and_then(|s| s.trim().parse::<i64>().ok()) {
                r.headers_out.content_length_n = n as off_t;
                r.headers_out.content_length = elt;
            }
        }
    }
    Ok(())
}

/// Sets the `Location` response header (for `Nginx.redirect`).
pub fn set_location(r: &mut ngx_http_request_t, uri: &[u8]) -> Result<(), RubyError> {
    check_header_text("value", uri)?;
    remove_all(r, Side::Out, b"Location");
    add(r, Side::Out, b"Location", uri)
}

fn in_get(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    get(mrb, Side::In, args)
}
fn in_set(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    set(mrb, Side::In, args)
}
fn in_delete(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    delete(mrb, Side::In, args)
}
fn in_all(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    all(mrb, Side::In, args)
}
fn out_get(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    get(mrb, Side::Out, args)
}
fn out_set(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    set(mrb, Side::Out, args)
}
fn out_delete(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    delete(mrb, Side::Out, args)
}
fn out_all(mrb: Mrb, _s: mrb_value, args: &[mrb_value]) -> RubyResult {
    all(mrb, Side::Out, args)
}

pub fn init(mrb: Mrb) {
    let nginx = mrb.define_class(c"Nginx");
    let headers_in = mrb.define_class_under(nginx, c"Headers_in");
    mrb.define_method(headers_in, c"[]", ruby_fn!(in_get), ARGS_ANY);
    mrb.define_method(headers_in, c"[]=", ruby_fn!(in_set), ARGS_ANY);
    mrb.define_method(headers_in, c"delete", ruby_fn!(in_delete), ARGS_ANY);
    mrb.define_method(headers_in, c"all", ruby_fn!(in_all), ARGS_ANY);
    let headers_out = mrb.define_class_under(nginx, c"Headers_out");
    mrb.define_method(headers_out, c"[]", ruby_fn!(out_get), ARGS_ANY);
    mrb.define_method(headers_out, c"[]=", ruby_fn!(out_set), ARGS_ANY);
    mrb.define_method(headers_out, c"delete", ruby_fn!(out_delete), ARGS_ANY);
    mrb.define_method(headers_out, c"all", ruby_fn!(out_all), ARGS_ANY);
}
