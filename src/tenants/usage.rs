//! What a runner used for one request, read by the worker from the kernel
//! (`/proc/<pid>/stat` and `/proc/<pid>/status`), never from the runner:
//! the CPU time of the runner and of the children it waited for (a CGI
//! runner waits for its program before it ends the response), as the
//! difference between the hand-over and the end of the request, and the
//! runner's memory high-water mark (`VmHWM`: over its life, not this
//! request alone; a CGI program's own memory is not in it).

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

/// `VmHWM` of a `/proc/<pid>/status` text, in kB.
pub fn parse_hwm_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn cpu_sample(pid: i32) -> Option<CpuSample> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn peak_kb(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    parse_hwm_kb(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
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
        assert_eq!(parse_hwm_kb("Name:\tx\nVmHWM:\t   20480 kB\nVmRSS:\t1 kB\n"), Some(20480));
        assert_eq!(parse_hwm_kb("Name:\tx\n"), None);
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
        assert!(peak_kb(pid).is_some_and(|kb| kb > 0));
        assert_eq!(cpu_sample(0), None);
    }
}
