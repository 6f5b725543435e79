//! What a runner used for one request, read by the worker from the kernel
//! (`/proc/<pid>/stat` and `/proc/<pid>/status`), never from the runner:
//! the CPU time of the runner and of the children it waited for (a CGI
//! runner waits for its program before it ends the response), as the
//! difference between the hand-over and the end of the request, and the
//! runner's peak memory during the request ([`request_peak_kb`]; a CGI
//! program's own memory is not in it).

use resource_policy::checker::Figures;

/// CPU ticks of a process and its waited-for children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuSample {
    pub user_ticks: u64,
    pub sys_ticks: u64,
}

/// Fields 14-17 of a `/proc/<pid>/stat` line (utime, stime, cutime,
/// cstime), counted after the `)` that ends the command name (which may
/// itself hold spaces and parentheses).
pub fn parse_stat(line: &str) -> Option<CpuSample> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, so index 11
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (utime, stime, cutime, cstime) = (num(11)?, num(12)?, num(13)?, num(14)?);
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
pub fn parse_mem(status: &str) -> Option<MemSample> {
    let kb = |field: &str| {
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    Some(MemSample { hwm_kb: kb("VmHWM:")?, rss_kb: kb("VmRSS:")? })
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

pub fn cpu_sample(pid: i32) -> Option<CpuSample> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn mem_sample(pid: i32) -> Option<MemSample> {
    if pid <= 0 {
        return None;
    }
    parse_mem(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
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
        let line = "1234 (ngx mruby) (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 70 5 20 0 1 0 100 0 0";
        assert_eq!(parse_stat(line), Some(CpuSample { user_ticks: 320, sys_ticks: 35 }));
        assert_eq!(parse_stat("1 (a) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
        let mem = parse_mem("Name:\tx\nVmHWM:\t   20480 kB\nVmRSS:\t1 kB\n");
        assert_eq!(mem, Some(MemSample { hwm_kb: 20480, rss_kb: 1 }));
        assert_eq!(parse_mem("Name:\tx\nVmHWM:\t1 kB\n"), None);
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
    }
}
