//! The block devices `io_read=`/`io_write=` throttle. The kernel's I/O
//! limits are per device (v1 `blkio.throttle.*_bps_device`, v2 `io.max`
//! take `major:minor`), while a class names a rate for all of a runner's
//! I/O: the rate is applied to every whole disk of the machine, so each
//! disk a runner reads or writes is held to it (partitions are throttled
//! through their disk; the limit is per disk, not a total over disks).
//!
//! Skipped: memory-backed and virtual devices whose I/O is not disk I/O
//! (`loop*`, `ram*`, `zram*`: a loop device's I/O reaches the disk under
//! it, throttled there), hidden ones (NVMe multipath paths, throttled
//! through their visible head), and devices with no request queue or of
//! size 0 (nothing to read: an unconfigured zram).

use std::path::Path;

/// A disk: its name in `/sys/block` and its `major:minor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    pub name: String,
    pub number: String,
}

/// The whole disks under `sys_block` (`/sys/block`), sorted by name.
pub fn whole_disks(sys_block: &Path) -> Vec<BlockDevice> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut disks: Vec<BlockDevice> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            let dir = entry.path();
            let read = |file: &str| std::fs::read_to_string(dir.join(file)).map(|t| t.trim().to_string());
            let virtual_kind = ["loop", "ram", "zram"].iter().any(|prefix| name.starts_with(prefix));
            let hidden = read("hidden").is_ok_and(|h| h == "1");
            let empty = read("size").map_or(true, |s| s == "0");
            if virtual_kind || hidden || empty || !dir.join("queue").is_dir() {
                return None;
            }
            let number = read("dev").ok().filter(|n| is_device_number(n))?;
            Some(BlockDevice { name, number })
        })
        .collect();
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    disks
}

/// `major:minor`, both decimal.
fn is_device_number(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    text.split_once(':').is_some_and(|(major, minor)| digits(major) && digits(minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(root: &Path, name: &str, files: &[(&str, &str)], queue: bool) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        if queue {
            std::fs::create_dir_all(dir.join("queue")).expect("mkdir queue");
        }
        for (file, content) in files {
            std::fs::write(dir.join(file), format!("{content}\n")).expect("write");
        }
    }

    #[test]
    fn only_whole_disks_with_a_queue_and_a_size() {
        let root = std::env::temp_dir().join(format!("ngx-block-devices-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        device(&root, "vda", &[("dev", "254:0"), ("size", "536870912")], true);
        device(&root, "sda", &[("dev", "8:0"), ("size", "100"), ("hidden", "0")], true);
        device(&root, "nvme0c0n1", &[("dev", "259:1"), ("size", "100"), ("hidden", "1")], true);
        device(&root, "loop0", &[("dev", "7:0"), ("size", "100")], true);
        device(&root, "ram0", &[("dev", "1:0"), ("size", "100")], true);
        device(&root, "zram0", &[("dev", "253:0"), ("size", "0")], true);
        device(&root, "sdb", &[("dev", "8:16"), ("size", "0")], true);
        device(&root, "noqueue", &[("dev", "9:0"), ("size", "100")], false);
        device(&root, "baddev", &[("dev", "x:0"), ("size", "100")], true);
        let found: Vec<String> = whole_disks(&root).iter().map(|d| format!("{} {}", d.name, d.number)).collect();
        assert_eq!(found, ["sda 8:0", "vda 254:0"]);
        assert!(whole_disks(&root.join("missing")).is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }
}
