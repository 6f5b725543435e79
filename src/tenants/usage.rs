//! What a runner used for one request, read by the worker from the kernel
//! (`/proc/<pid>/stat` and `/proc/<pid>/status`), never from the runner:
//! the CPU time of the runner and of the children it waited for (a CGI
//! runner waits for its program before it ends the response), as the
//! difference between the hand-over and the end of the request, and the
//! runner's peak memory during the request ([`request_peak_kb`]; a CGI
//! program's own memory is not in it).

use core::mem::MaybeUninit;

use resource_policy::checker::Figures;

/// CPU ticks of a process and its waited-for children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuSample {
    pub user_ticks: u64,
    pub sys_ticks: u64,
}

/// Fields 14-17 of a `/proc/<pid>/stat` line (utime, stime, cutime,
/// cstime), counted after the `)` that ends the command name (which may
/// itself hold spaces and parentheses). Bytes, no allocation: it runs
/// twice per tenant request when accounting is on.
pub fn parse_stat(line: &[u8]) -> Option<CpuSample> {
    let close = rfind_byte(line, b')')?;
    // after ") ", field 3 (state) comes first: utime is field 14, so index 11
    let mut fields = line[close + 1..].split(|&b| b == b' ').filter(|f| !f.is_empty()).skip(11);
    let mut num = || parse_u64(fields.next()?);
    let (utime, stime, cutime, cstime) = (num()?, num()?, num()?, num()?);
    Some(CpuSample { user_ticks: utime + cutime, sys_ticks: stime + cstime })
}

/// A runner's memory at one moment: its high-water mark over its life
/// (`VmHWM`) and its resident set now (`VmRSS`), in kB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemSample {
    pub hwm_kb: u64,
    pub rss_kb: u64,
}

/// `VmHWM` and `VmRSS` of a `/proc/<pid>/status` text.
pub fn parse_mem(status: &[u8]) -> Option<MemSample> {
    let kb = |key: &[u8]| {
        let at = find_bytes(status, key)? + key.len();
        parse_u64(status[at..].split(|&b| b == b' ' || b == b'\t').find(|f| !f.is_empty())?)
    };
    Some(MemSample { hwm_kb: kb(b"\nVmHWM:")?, rss_kb: kb(b"\nVmRSS:")? })
}

/// The runner's peak during one request, from the samples at its start
/// and end. The kernel keeps only a lifetime high-water mark (resetting it,
/// `/proc/<pid>/clear_refs`, needs the runner's uid or CAP_DAC_OVERRIDE,
/// which neither the worker nor the supervisor has), so: when the mark
/// rose during the request, this request set it and the new mark is its
/// peak, exactly; otherwise the request stayed under an earlier request's
/// peak, and its resident set at the end is given, a lower bound of its
/// peak (never a figure from an earlier, heavier request).
pub fn request_peak_kb(start: Option<MemSample>, end: MemSample) -> u64 {
    match start {
        Some(start) if end.hwm_kb > start.hwm_kb => end.hwm_kb,
        _ => end.rss_kb,
    }
}

/// Decimal digits only (what the kernel writes), `None` past `u64`.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The last `byte` in `hay` (glibc's vectorised `memrchr`: a byte loop
/// costs more than the rest of the accounting together).
fn rfind_byte(hay: &[u8], byte: u8) -> Option<usize> {
    // SAFETY: pointer and length of a live slice; memrchr only reads them.
    let found = unsafe { libc::memrchr(hay.as_ptr().cast(), i32::from(byte), hay.len()) };
    (!found.is_null()).then(|| found as usize - hay.as_ptr() as usize)
}

/// Where `needle` starts in `hay` (glibc's `memmem`, for the same reason).
fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    // SAFETY: pointers and lengths of two live slices; memmem only reads them.
    let found = unsafe { libc::memmem(hay.as_ptr().cast(), hay.len(), needle.as_ptr().cast(), needle.len()) };
    (!found.is_null()).then(|| found as usize - hay.as_ptr() as usize)
}

/// Reads `/proc/<pid>/<file>` into `buf` with one `read` (the kernel
/// builds these files whole and hands over as much as fits), without
/// allocating or clearing the buffer first (zeroing 4 kB cost more than
/// the parsing); the bytes read.
fn read_proc<'a, const N: usize>(pid: i32, file: &[u8], buf: &'a mut [MaybeUninit<u8>; N]) -> Option<&'a [u8]> {
    if pid <= 0 {
        return None;
    }
    // "/proc/" + up to 10 digits + "/" + the file name + NUL
    let mut path = [0u8; 48];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        path.get_mut(len..len + bytes.len())?.copy_from_slice(bytes);
        len += bytes.len();
        Some(())
    };
    push(b"/proc/")?;
    let mut digits = [0u8; 10];
    let mut n = pid as u32;
    let mut first = digits.len();
    loop {
        first -= 1;
        digits[first] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    push(&digits[first..])?;
    push(b"/")?;
    push(file)?;
    push(b"\0")?;
    // SAFETY: path is NUL-terminated; buf is N writable bytes and the kernel
    // writes at most N; the fd is closed on every path.
    unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), N);
        libc::close(fd);
        // the first n bytes were written by the kernel
        (n >= 0).then(|| core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize))
    }
}

pub fn cpu_sample(pid: i32) -> Option<CpuSample> {
    // a stat line is at most about 700 bytes (52 numbers and the name)
    let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
    parse_stat(read_proc(pid, b"stat", &mut buf)?)
}

pub fn mem_sample(pid: i32) -> Option<MemSample> {
    // the whole status text (about 1.5 kB): one read
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    parse_mem(read_proc(pid, b"status", &mut buf)?)
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// The figures of a request from the samples at its start and end.
pub fn figures(start: CpuSample, end: CpuSample, mem_peak_kb: u64) -> Figures {
    let ms = |ticks: u64| ticks * 1000 / ticks_per_second();
    Figures {
        cpu_user_ms: ms(end.user_ticks.saturating_sub(start.user_ticks)),
        cpu_sys_ms: ms(end.sys_ticks.saturating_sub(start.sys_ticks)),
        mem_peak_kb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let line = b"1234 (ngx mruby) (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 70 5 20 0 1 0 100 0 0\n";
        assert_eq!(parse_stat(line), Some(CpuSample { user_ticks: 320, sys_ticks: 35 }));
        assert_eq!(parse_stat(b"1 (a) S 1"), None);
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"1 (a) S 1 1 1 0 -1 4 1 0 0 0 x 30 70 5"), None);
        let mem = parse_mem(b"Name:\tx\nVmHWM:\t   20480 kB\nVmRSS:\t1 kB\n");
        assert_eq!(mem, Some(MemSample { hwm_kb: 20480, rss_kb: 1 }));
        assert_eq!(parse_mem(b"Name:\tx\nVmHWM:\t1 kB\n"), None);
        assert_eq!(parse_mem(b"Name:\tVmHWM:\t7\nVmRSS:\t1 kB\n"), None);
        assert_eq!(parse_mem(b"x\nVmHWM:\t99999999999999999999999 kB\nVmRSS:\t1 kB\n"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"-1"), None);
    }

    #[test]
    fn request_peak_is_the_new_mark_or_the_rss_at_the_end() {
        let sample = |hwm_kb, rss_kb| MemSample { hwm_kb, rss_kb };
        // a heavy request on a fresh runner raised the mark: its peak
        assert_eq!(request_peak_kb(Some(sample(20_000, 19_000)), sample(90_000, 21_000)), 90_000);
        // a cheap request after it: under the old mark, its end RSS, not the heavy peak
        assert_eq!(request_peak_kb(Some(sample(90_000, 21_000)), sample(90_000, 21_500)), 21_500);
        // no start sample (unreadable): the lower bound
        assert_eq!(request_peak_kb(None, sample(90_000, 21_500)), 21_500);
    }

    #[test]
    fn figures_are_differences() {
        let f = figures(CpuSample { user_ticks: 10, sys_ticks: 5 }, CpuSample { user_ticks: 10, sys_ticks: 4 }, 7);
        assert_eq!((f.cpu_user_ms, f.cpu_sys_ms, f.mem_peak_kb), (0, 0, 7));
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id() as i32;
        assert!(cpu_sample(pid).is_some());
        assert!(mem_sample(pid).is_some_and(|m| m.hwm_kb > 0 && m.rss_kb > 0));
        assert_eq!(cpu_sample(0), None);
        assert_eq!(cpu_sample(i32::MAX), None);
    }
}
