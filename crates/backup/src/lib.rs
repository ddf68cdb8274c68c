//! Backups to the backup disk (issue 4). `disk`: nothing is written unless the backup path is
//! the box's own backup disk (a mount point carrying this box's identity marker), and the
//! space left on it is watched. `repo`: the restic-format repository (through `rustic_core`).
//! `schedule`: when a documents snapshot is due (debounced changes, the periodic full scan).
//! `documents`: the watcher and the loop the watchdog runs (snapshots, retention, checks).
//! `state`: what the backups last did, for the status. `binlog`: what an archived binlog file
//! holds (complete transactions, where its whole part ends, gaps), pure. `archive`: the
//! continuous binlog archive (a supervised `mariadb-binlog`, following failovers). `base`:
//! the database's base backups (`mariabackup`, prepared, into the repository). `pitr`: a
//! point-in-time restore of the database (a base, then the archive replayed to the target).
//! `drill`: the restore drill (a restore rebuilt from the archive compared with a base's
//! recorded table checksums, and a sample of documents compared with the live files).
//! `progress`: progress bars on the technician's long restores.

pub mod archive;
pub mod base;
pub mod binlog;
pub mod disk;
pub mod documents;
pub mod drill;
pub mod pitr;
pub mod progress;
pub mod repo;
pub mod schedule;
pub mod state;
