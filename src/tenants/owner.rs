//! Owner checks (thesis §3.2.4), done on descriptors opened with O_PATH
//! (the worker may not read a 0600 script, but may open it to fstat), so a
//! swapped file or symlink cannot make a script run as someone else: the
//! uid sent to the supervisor is the one of the file that was opened.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};

/// The owner a script runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Why a script does not run: the rule it breaks, for the 403's log line.
#[derive(Debug)]
pub enum Refusal {
    /// No such file (404).
    Missing,
    /// A rule is broken (403).
    Rule(String),
}

fn open_path(dir: Option<&OwnedFd>, path: &Path, follow: bool, directory: bool) -> Result<OwnedFd, nix::Error> {
    let mut flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    if !follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    if directory {
        flags |= OFlag::O_DIRECTORY;
    }
    let fd = match dir {
        Some(dir) => openat(Some(dir.as_raw_fd()), path, flags, Mode::empty())?,
        None => open(path, flags, Mode::empty())?,
    };
    // SAFETY: open/openat returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn stat_of(fd: &OwnedFd) -> Result<FileStat, Refusal> {
    fstat(fd.as_raw_fd()).map_err(|e| Refusal::Rule(format!("cannot stat: {e}")))
}

fn missing_or(e: nix::Error, what: &str) -> Refusal {
    match e {
        nix::Error::ENOENT | nix::Error::ENOTDIR => Refusal::Missing,
        e => Refusal::Rule(format!("cannot open {what}: {e}")),
    }
}

fn is_kind(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// Checks `script` (below `docroot`) and returns its owner.
///
/// Rules, in order: the file must be a regular file (a symlink must be
/// owned like its target); nothing may be owned by root; the owner must be
/// at least `min_uid:min_gid`; the file, its directory and the document
/// root may not be world-writable; the three must have the same owner.
pub fn check(script: &[u8], docroot: &[u8], min_uid: u32, min_gid: u32) -> Result<Owner, Refusal> {
    let script = Path::new(OsStr::from_bytes(script));
    let docroot = Path::new(OsStr::from_bytes(docroot));
    let root_fd = open_path(None, docroot, true, true).map_err(|e| missing_or(e, "the document root"))?;
    let dir = script.parent().ok_or(Refusal::Missing)?;
    let name = script.file_name().ok_or(Refusal::Missing)?;
    // a script directly in the document root (the usual case): its directory is the root already opened
    let own_dir_fd = if dir == docroot {
        None
    } else {
        Some(open_path(None, dir, true, true).map_err(|e| missing_or(e, "the script's directory"))?)
    };
    let dir_fd = own_dir_fd.as_ref().unwrap_or(&root_fd);
    let link_fd = open_path(Some(dir_fd), Path::new(name), false, false).map_err(|e| missing_or(e, "the script"))?;
    let link_st = stat_of(&link_fd)?;
    let file_st = if is_kind(&link_st, SFlag::S_IFLNK) {
        let target_fd =
            open_path(Some(dir_fd), Path::new(name), true, false).map_err(|e| missing_or(e, "the symlink's target"))?;
        let target_st = stat_of(&target_fd)?;
        if (target_st.st_uid, target_st.st_gid) != (link_st.st_uid, link_st.st_gid) {
            return Err(Refusal::Rule(format!(
                "symlink owned by {}:{} points to a file owned by {}:{}",
                link_st.st_uid, link_st.st_gid, target_st.st_uid, target_st.st_gid
            )));
        }
        target_st
    } else {
        link_st
    };
    if !is_kind(&file_st, SFlag::S_IFREG) {
        return Err(Refusal::Missing);
    }
    let root_st = stat_of(&root_fd)?;
    let dir_st = match &own_dir_fd {
        Some(fd) => stat_of(fd)?,
        None => root_st,
    };
    let named = [("file", &file_st), ("directory", &dir_st), ("document root", &root_st)];
    for (what, st) in named {
        if st.st_uid == 0 || st.st_gid == 0 {
            return Err(Refusal::Rule(format!("{what} is owned by root ({}:{})", st.st_uid, st.st_gid)));
        }
    }
    if file_st.st_uid < min_uid || file_st.st_gid < min_gid {
        return Err(Refusal::Rule(format!(
            "owner {}:{} is below tenant_min_uid/tenant_min_gid {min_uid}:{min_gid}",
            file_st.st_uid, file_st.st_gid
        )));
    }
    for (what, st) in named {
        if st.st_mode & 0o002 != 0 {
            return Err(Refusal::Rule(format!("{what} is world-writable")));
        }
    }
    for (what, st) in &named[1..] {
        if (st.st_uid, st.st_gid) != (file_st.st_uid, file_st.st_gid) {
            return Err(Refusal::Rule(format!(
                "owner mismatch: file {}:{}, {what} {}:{}",
                file_st.st_uid, file_st.st_gid, st.st_uid, st.st_gid
            )));
        }
    }
    Ok(Owner { uid: file_st.st_uid, gid: file_st.st_gid })
}
