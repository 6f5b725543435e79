//! Shared memory: the table of counters with a per-worker ledger that
//! vlimit counts in (`table.rs`), usable by any per-key accounting (per
//! tenant, per key) that must survive a worker's death.
//!
//! The interface, all typed:
//! * [`ZoneCtx`]: one zone per cycle (`shm_zone->data`), set up by
//!   [`init_zone`] (which reuses the previous cycle's table on reload);
//!   `lock()` gives a [`Locked`] table, unlocked on drop.
//! * [`Table`] (under the lock): `find`/`insert` a [`Key`] (a caller-chosen
//!   [`KeyTag`] plus bytes) to an entry index; `acquire`/`release` one count
//!   of an entry for a worker slot; `reclaim_slot` gives back what a dead
//!   worker held; `for_each`, `header`, `free_bytes` for statistics.
//!
//! May import: `ngx_util` only.

pub mod table;

pub use table::{init_zone, Entry, Key, KeyHasher, KeyTag, LockProbe, Locked, Table, ZoneCtx, MAX_SLOTS};
