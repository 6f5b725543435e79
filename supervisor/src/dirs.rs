//! The generation directory tree and its permissions:
//!
//! ```text
//! <tenant_socket_dir>/            0711 root:root (created when missing)
//!   <generation>/                 0711 root:root
//!     sockets/                    0710 root:<worker group>: only workers and the supervisor enter
//!       supervisor.sock, r<N>.sock  0660 root:<worker group>
//!     tmp/                        0711 root:root
//!       <uid>/                    0700 <uid>:<gid>: the owner's private temporary directory
//! ```

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Gid, Uid};

use crate::config::Config;

/// Mode first: once the directory is someone else's, the supervisor
/// (without CAP_FOWNER) can no longer change it.
fn set_owner_mode(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), String> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::os::unix::fs::chown(path, Some(uid), Some(gid)))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn make_dir(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), String> {
    match std::fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("mkdir {}: {e}", path.display())),
    }
    set_owner_mode(path, uid, gid, mode)
}

/// Creates the tree of a new generation (removing a stale one first).
pub fn prepare(config: &Config) -> Result<(), String> {
    if let Some(base) = config.dir.parent() {
        if !base.exists() {
            std::fs::create_dir_all(base).map_err(|e| format!("mkdir {}: {e}", base.display()))?;
            set_owner_mode(base, 0, 0, 0o711)?;
        }
    }
    clean(config);
    make_dir(&config.dir, 0, 0, 0o711)?;
    make_dir(&config.socket_dir(), 0, config.worker_gid, 0o710)?;
    make_dir(&config.tmp_root(), 0, 0, 0o711)
}

/// The private temporary directory of an owner, created on first use.
pub fn owner_tmp(config: &Config, uid: u32, gid: u32) -> Result<std::path::PathBuf, String> {
    let path = config.tmp_dir(uid);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() && meta.uid() == uid && meta.gid() == gid && meta.mode() & 0o777 == 0o700 => Ok(path),
        Ok(_) => Err(format!("{} exists with another owner or type", path.display())),
        Err(_) => {
            std::fs::create_dir(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
            set_owner_mode(&path, uid, gid, 0o700)?;
            Ok(path)
        }
    }
}

/// Empties `dir` as its owner: the supervisor holds no CAP_DAC_OVERRIDE
/// or CAP_FOWNER, so a child that becomes the owner deletes the files.
fn empty_as_owner(dir: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() || meta.uid() == 0 {
        return;
    }
    // SAFETY: the child only switches identity, deletes files and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let ok = nix::unistd::setgroups(&[]).is_ok()
                && nix::unistd::setresgid(
                    Gid::from_raw(meta.gid()),
                    Gid::from_raw(meta.gid()),
                    Gid::from_raw(meta.gid()),
                )
                .is_ok()
                && nix::unistd::setresuid(
                    Uid::from_raw(meta.uid()),
                    Uid::from_raw(meta.uid()),
                    Uid::from_raw(meta.uid()),
                )
                .is_ok();
            if ok {
                if let Ok(entries) = std::fs::read_dir(dir) {
                    for entry in entries.flatten() {
                        let path = entry.path();
                        let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                            std::fs::remove_dir_all(&path)
                        } else {
                            std::fs::remove_file(&path)
                        };
                    }
                }
            }
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            let _ = waitpid(child, None);
        }
        Err(_) => {}
    }
}

/// Removes the whole generation tree, owners' temporary files included.
pub fn clean(config: &Config) {
    if let Ok(entries) = std::fs::read_dir(config.tmp_root()) {
        for entry in entries.flatten() {
            empty_as_owner(&entry.path());
            let _ = std::fs::remove_dir(entry.path());
        }
    }
    let _ = std::fs::remove_dir_all(&config.dir);
}

/// Removes the stale sockets of a supervisor that died.
pub fn clean_sockets(config: &Config) {
    if let Ok(entries) = std::fs::read_dir(config.socket_dir()) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
