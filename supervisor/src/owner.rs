//! The supervisor's own owner check of a document root: it never takes the
//! worker's word for which uid a site runs as.

use std::os::fd::AsRawFd;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fstat, Mode};

use crate::config::Config;

/// Why a request was refused, as one phrase for the log line.
pub fn check_docroot(config: &Config, docroot: &Path, uid: u32, gid: u32) -> Result<(), String> {
    if uid < config.min_uid || gid < config.min_gid {
        return Err(format!("uid:gid {uid}:{gid} is below tenant_min_uid/gid {}:{}", config.min_uid, config.min_gid));
    }
    if uid == config.worker_uid || gid == config.worker_gid {
        return Err(format!("uid:gid {uid}:{gid} is the nginx worker's"));
    }
    let fd = open(docroot, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("cannot open document root: {e}"))?;
    // SAFETY: `open` returned a descriptor we own; OwnedFd closes it on drop.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let st = fstat(fd.as_raw_fd()).map_err(|e| format!("cannot stat document root: {e}"))?;
    if st.st_mode & 0o002 != 0 {
        return Err(String::from("document root is world-writable"));
    }
    if st.st_uid != uid || st.st_gid != gid {
        return Err(format!("document root is owned by {}:{}, not {uid}:{gid}", st.st_uid, st.st_gid));
    }
    Ok(())
}
