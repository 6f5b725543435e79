//! What a vlimit counter counts: the kind part of a key's identity in the
//! shared table (`shm/`), which only sees it as a tag.

use crate::shm::KeyTag;

/// What a counter counts; part of its identity in the zone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum KeyKind {
    /// Client address, 4 or 16 binary bytes.
    Ip = 1,
    /// Device + inode of the file, 16 bytes.
    File = 2,
    /// Request file that does not exist: its path.
    Path = 3,
    /// Normalised virtual host name.
    Host = 4,
    /// Value of a `key=` complex value.
    Key = 5,
}

impl KeyKind {
    /// The kind of a stored key's tag.
    pub fn from_tag(v: KeyTag) -> Option<KeyKind> {
        Some(match v {
            1 => KeyKind::Ip,
            2 => KeyKind::File,
            3 => KeyKind::Path,
            4 => KeyKind::Host,
            5 => KeyKind::Key,
            _ => return None,
        })
    }

    /// The tag the shared table stores.
    #[inline]
    pub const fn tag(self) -> KeyTag {
        self as KeyTag
    }

    /// The name used in logs and stats.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Ip => "ip",
            KeyKind::File | KeyKind::Path => "file",
            KeyKind::Host => "host",
            KeyKind::Key => "key",
        }
    }
}
