//! Log lines in nginx's error log format, written with one `write(2)` each
//! to fd 2, which the module points at nginx's error log.

use std::io::Write;

/// nginx's level names, most severe first.
#[derive(Clone, Copy)]
pub enum Level {
    Error,
    Warn,
    Notice,
    Info,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Notice => "notice",
            Level::Info => "info",
        }
    }
}

/// `YYYY/MM/DD HH:MM:SS` in local time, as nginx writes it.
fn timestamp() -> String {
    // SAFETY: time(NULL) and localtime_r write only into the locals given.
    unsafe {
        let now = libc::time(core::ptr::null_mut());
        let mut tm: libc::tm = core::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        format!(
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        )
    }
}

/// Writes `tenants: <message>` at `level`, one line (newlines in the
/// message are escaped so a runner cannot forge log lines).
pub fn log(level: Level, message: &str) {
    let clean: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let line = format!("{} [{}] {}#0: tenants: {}\n", timestamp(), level.name(), std::process::id(), clean);
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &format!($($arg)*)) };
}

#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($arg)*)) };
}

#[macro_export]
macro_rules! log_notice {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Notice, &format!($($arg)*)) };
}

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($arg)*)) };
}
