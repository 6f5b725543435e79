//! Small conversions between nginx's C types and Rust values.

use core::ffi::c_char;
use core::ptr;

use ngx::ffi::*;

/// The bytes of an `ngx_str_t` (empty when NULL).
pub fn str_bytes<'a>(s: &ngx_str_t) -> &'a [u8] {
    if s.len == 0 || s.data.is_null() {
        return &[];
    }
    // SAFETY: an ngx_str_t describes `len` readable bytes at `data`.
    unsafe { core::slice::from_raw_parts(s.data, s.len) }
}

/// Lossy UTF-8 of an `ngx_str_t`, for messages.
pub(crate) fn str_lossy(s: &ngx_str_t) -> String {
    String::from_utf8_lossy(str_bytes(s)).into_owned()
}

/// Copies `bytes` into `pool`; `None` when the pool is out of memory.
pub(crate) fn pool_str(pool: *mut ngx_pool_t, bytes: &[u8]) -> Option<ngx_str_t> {
    if bytes.is_empty() {
        return Some(ngx_str_t { len: 0, data: core::ptr::null_mut() });
    }
    // SAFETY: pool is a live nginx pool; we write exactly `len` bytes.
    unsafe {
        let data = ngx_pnalloc(pool, bytes.len()) as *mut u8;
        if data.is_null() {
            return None;
        }
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
        Some(ngx_str_t { len: bytes.len(), data })
    }
}

/// The distinct addresses a `listen` argument names (`host:port`, `port`,
/// `unix:path`), parsed as `listen` parses them, in `pool`. `Err` is
/// nginx's reason, with the argument.
pub(crate) fn listen_addresses(
    pool: *mut ngx_pool_t,
    address: &[u8],
    default_port: u16,
) -> Result<Vec<ngx_addr_t>, String> {
    let shown = String::from_utf8_lossy(address);
    let url = pool_str(pool, address).ok_or("out of memory")?;
    // SAFETY: ngx_url_t is a plain C struct; all-zero is its initial state.
    let mut u: ngx_url_t = unsafe { core::mem::zeroed() };
    u.url = url;
    u.set_listen(1);
    u.default_port = default_port;
    // SAFETY: pool is a live nginx pool; u is initialised above.
    if unsafe { ngx_parse_url(pool, &mut u) } != NGX_OK as ngx_int_t {
        let reason = if u.err.is_null() {
            String::from("invalid address")
        } else {
            // SAFETY: u.err is a static NUL-terminated message.
            unsafe { core::ffi::CStr::from_ptr(u.err) }.to_string_lossy().into_owned()
        };
        return Err(format!("{reason} in \"{shown}\""));
    }
    if u.addrs.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: u.addrs holds u.naddrs parsed addresses in pool.
    let addrs = unsafe { core::slice::from_raw_parts(u.addrs, u.naddrs) };
    let mut distinct: Vec<ngx_addr_t> = Vec::with_capacity(addrs.len());
    for addr in addrs {
        // SAFETY: the sockaddrs are parsed addresses, live in pool.
        let seen = distinct
            .iter()
            .any(|earlier| unsafe { ngx_cmp_sockaddr(addr.sockaddr, addr.socklen, earlier.sockaddr, earlier.socklen, 1) } == NGX_OK as ngx_int_t);
        if !seen {
            distinct.push(*addr);
        }
    }
    Ok(distinct)
}

/// Writes one line to an nginx log at `level`.
pub(crate) fn log(log: *mut ngx_log_t, level: u32, message: &str) {
    if log.is_null() {
        return;
    }
    // SAFETY: log is a live nginx log; the message is passed with its length.
    unsafe {
        if (*log).log_level < level as ngx_uint_t {
            return;
        }
        ngx_log_error_core(
            level as ngx_uint_t,
            log,
            0,
            c"%*s".as_ptr() as *const c_char,
            message.len(),
            message.as_ptr(),
        );
    }
}

/// Logs at configuration time with the file:line of the directive.
pub(crate) fn conf_log(cf: *mut ngx_conf_t, level: u32, message: &str) {
    // SAFETY: cf is the live configuration being parsed.
    unsafe {
        ngx_conf_log_error(
            level as ngx_uint_t,
            cf,
            0,
            c"%*s".as_ptr() as *const c_char,
            message.len(),
            message.as_ptr(),
        );
    }
}

/// Reads bytes `start..end` of an open file that nginx owns (a temp file or
/// a static file being served).
pub fn read_file_range(fd: ngx_fd_t, start: off_t, end: off_t) -> Result<Vec<u8>, nix::Error> {
    let len = (end - start).max(0) as usize;
    let mut bytes = vec![0u8; len];
    let mut done = 0;
    // SAFETY: nginx keeps fd open for the request; we only borrow it here.
    let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    while done < len {
        match nix::sys::uio::pread(file, &mut bytes[done..], start + done as off_t)? {
            0 => break,
            n => done += n,
        }
    }
    bytes.truncate(done);
    Ok(bytes)
}

/// Every live (hash != 0) element of a header list, in order.
pub(crate) fn header_elements(list: *mut ngx_list_t) -> Vec<*mut ngx_table_elt_t> {
    let mut found = Vec::new();
    // SAFETY: list is a live ngx_list_t of ngx_table_elt_t.
    unsafe {
        let mut part: *mut ngx_list_part_t = &mut (*list).part;
        while !part.is_null() {
            let elts = (*part).elts as *mut ngx_table_elt_t;
            for i in 0..(*part).nelts {
                let elt = elts.add(i);
                if (*elt).hash != 0 {
                    found.push(elt);
                }
            }
            part = (*part).next;
        }
    }
    found
}

/// The directive arguments of the command being parsed (without its name).
pub fn conf_args<'a>(cf: &ngx_conf_t) -> &'a [ngx_str_t] {
    // SAFETY: cf->args is the array nginx filled for this directive.
    unsafe {
        let array = &*cf.args;
        let all = core::slice::from_raw_parts(array.elts as *const ngx_str_t, array.nelts);
        &all[1..]
    }
}

/// Turns a parse result into nginx's directive return value, logging the error.
pub fn conf_result(cf: *mut ngx_conf_t, result: Result<(), String>) -> *mut c_char {
    match result {
        Ok(()) => ptr::null_mut(),
        Err(message) => {
            conf_log(cf, NGX_LOG_EMERG, &message);
            ngx::core::NGX_CONF_ERROR as *mut c_char
        }
    }
}

/// Whether this process serves requests: a worker, or nginx without a
/// master (`master_process off`). The cache manager and cache loader also
/// run every module's `init_process`, but they never serve a request: no
/// `mruby_init_worker` there, no place in the vlimit ledger.
pub fn is_serving_process() -> bool {
    // SAFETY: ngx_process is set once, before init_process hooks run.
    let process = unsafe { ngx_process } as u32;
    process == NGX_PROCESS_WORKER || process == NGX_PROCESS_SINGLE
}

/// Answers a request with `body` as one in-memory buffer (the stats
/// handlers' JSON or text), with its status and content type.
pub fn send_body(r: &mut ngx_http_request_t, status: ngx_uint_t, content_type: &'static str, body: &[u8]) -> ngx_int_t {
    // SAFETY: the buffer is allocated from the request pool and filled
    // before it is handed to the output filters; nginx only reads the
    // (static) content type.
    unsafe {
        let b = ngx_create_temp_buf(r.pool, body.len().max(1));
        if b.is_null() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        core::ptr::copy_nonoverlapping(body.as_ptr(), (*b).last, body.len());
        (*b).last = (*b).last.add(body.len());
        (*b).set_last_buf(1);
        (*b).set_last_in_chain(1);
        r.headers_out.status = status;
        r.headers_out.content_length_n = body.len() as off_t;
        r.headers_out.content_type = ngx_str_t { len: content_type.len(), data: content_type.as_ptr() as *mut u8 };
        r.headers_out.content_type_len = r.headers_out.content_type.len;
        let rc = ngx_http_send_header(r);
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
            return rc;
        }
        let mut out = ngx_chain_t { buf: b, next: core::ptr::null_mut() };
        ngx_http_output_filter(r, &mut out)
    }
}

/// Runs `<supervisor> check-cgroup <path>` (the supervisor program judges
/// cgroup paths at `nginx -t` with the code that creates the groups), with
/// an empty environment and none of the master's descriptors.
pub fn run_check_cgroup(supervisor: &std::path::Path, path: &str) -> std::io::Result<std::process::Output> {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(supervisor);
    command.arg("check-cgroup").arg(path).env_clear().stdin(std::process::Stdio::null());
    // SAFETY: runs between fork and exec; close_range only closes descriptors.
    unsafe {
        command.pre_exec(|| {
            // nothing of the master's but the output pipes (already on 1 and 2):
            // close-on-exec rather than closed, so std's own pipe that reports a
            // failed exec (a missing program) still works (kernels before 5.11: closed)
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            }
            Ok(())
        });
    }
    command.output()
}
