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

/// Follows log rotation (`nginx -s reopen`, USR1). nginx signals only its
/// own processes; after the operator moves the error log away, the master
/// creates a new file at the same path (owned by the worker user) and
/// reopens it. The keeper and the supervisor compare that path with their
/// fd 2 now and then and, when it names another file, open it and make it
/// their fd 2, which the supervisor's runners' lines go through too.
pub struct Follow {
    /// `keeper` or `supervisor`, for the log lines.
    who: &'static str,
    path: std::path::PathBuf,
    worker_uid: u32,
    checked: std::time::Instant,
    /// The file that could not be opened (logged once, not retried).
    failed: Option<(u64, u64)>,
}

/// How often the path is compared.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Follow {
    pub fn new(who: &'static str, path: std::path::PathBuf, worker_uid: u32) -> Follow {
        Follow { who, path, worker_uid, checked: std::time::Instant::now(), failed: None }
    }

    /// Reopens the error log when its path names a new file.
    pub fn check(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if self.checked.elapsed() < FOLLOW_EVERY {
            return;
        }
        self.checked = std::time::Instant::now();
        // moved away and not created again yet: keep writing where we are
        let Ok(on_path) = std::fs::metadata(&self.path) else {
            return;
        };
        let id = (on_path.dev(), on_path.ino());
        let current = nix::sys::stat::fstat(2).map(|s| (s.st_dev, s.st_ino)).ok();
        if current == Some(id) || self.failed == Some(id) {
            return;
        }
        match self.open() {
            Ok(fd) => {
                // SAFETY: dup2 onto our own fd 2; fd is ours and closed once copied.
                unsafe {
                    libc::dup2(fd, 2);
                    libc::close(fd);
                }
                self.failed = None;
                log(Level::Notice, &format!("{}: reopened the error log {}", self.who, self.path.display()));
            }
            Err(e) => {
                self.failed = Some(id);
                log(Level::Error, &format!("{}: cannot reopen the error log {}: {e}", self.who, self.path.display()));
            }
        }
    }

    /// Opens the log with the worker user's file access, never root's (a
    /// symlink or a file put in its place can only be one the workers
    /// could write anyway), and never through a symlink.
    fn open(&self) -> Result<i32, std::io::Error> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.path.as_os_str().as_bytes())?;
        // SAFETY: setfsuid/open/setfsuid on this single-threaded process;
        // the path is a NUL-terminated string.
        let (fd, err) = unsafe {
            libc::setfsuid(self.worker_uid);
            let fd = libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_APPEND | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            let err = std::io::Error::last_os_error();
            libc::setfsuid(0);
            (fd, err)
        };
        if fd < 0 {
            return Err(err);
        }
        match nix::sys::stat::fstat(fd) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => Ok(fd),
            _ => {
                // SAFETY: closes the descriptor just opened.
                unsafe { libc::close(fd) };
                Err(std::io::Error::other("not a regular file"))
            }
        }
    }
}
