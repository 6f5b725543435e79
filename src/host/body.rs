//! Request body access for the request host: the body nginx read (memory
//! and temp file parts). Reading it is the phases' business
//! (`mruby_enable_read_request_body`, `phases/body.rs`).

use ngx::ffi::*;

use crate::ngx_util::read_file_range;

/// The request body read so far (memory and temp file parts), if any.
pub fn body_bytes(r: &ngx_http_request_t) -> Option<Result<Vec<u8>, String>> {
    if r.request_body.is_null() {
        return None;
    }
    let mut body = Vec::new();
    // SAFETY: request_body and its chain belong to the live request.
    unsafe {
        let mut link = (*r.request_body).bufs;
        while !link.is_null() {
            let buf = (*link).buf;
            if (*buf).in_file() != 0 && !(*buf).file.is_null() {
                match read_file_range((*(*buf).file).fd, (*buf).file_pos, (*buf).file_last) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(err) => return Some(Err(format!("reading the request body temp file: {err}"))),
                }
            } else if !(*buf).pos.is_null() && (*buf).last > (*buf).pos {
                let len = (*buf).last.offset_from((*buf).pos) as usize;
                body.extend_from_slice(core::slice::from_raw_parts((*buf).pos, len));
            }
            link = (*link).next;
        }
    }
    Some(Ok(body))
}
