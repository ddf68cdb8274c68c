//! The backup disk guard. Nothing is written to the backup path unless it is really a mounted
//! disk (a dev box may relax this) carrying this box's identity marker: an unplugged disk must
//! never fill the system disk through the empty mount point, and another box's disk must never
//! receive this box's records. The judgement is pure ([`judge`], over [`DiskFacts`]); [`look`]
//! gathers the facts and [`claim`] writes the marker.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The marker's file name at the top of the backup disk.
pub const MARKER: &str = "OSCARBOX-BACKUP-DISK";
/// What the top of a fresh disk may hold and still be claimed, besides [`DiskFacts::ours`]: a
/// file system's own directory.
const LOST_FOUND: &str = "lost+found";
/// The marker while it is written (`write_private` writes beside it, then renames).
const MARKER_TMP: &str = "OSCARBOX-BACKUP-DISK.tmp";

/// What is true of the backup path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFacts {
    pub path: PathBuf,
    /// Whether the path is a directory at all.
    pub exists: bool,
    /// Whether another file system is mounted there.
    pub mounted: bool,
    /// The marker's box identity, when a readable marker is there.
    pub marker: Option<Marker>,
    /// A marker file that could not be read or understood: why.
    pub marker_damaged: Option<String>,
    /// The names at the top of the path.
    pub entries: Vec<String>,
    /// Names at the top of the path that the box itself puts there before its first backup
    /// (the replica's data directory and its temporary directory).
    pub ours: Vec<String>,
    /// Bytes a writer can still use, and the usable size.
    pub available_bytes: u64,
    pub total_bytes: u64,
}

/// The identity marker: which box this disk belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub box_id: String,
    pub box_name: String,
    /// When it was claimed, as written (RFC 3339).
    pub claimed: String,
}

impl Marker {
    pub fn to_text(&self) -> String {
        format!(
            "OSCAR Box backup disk\nThis disk holds the backups of the box named below. Do not remove this file.\nbox-id: {}\nbox-name: {}\nclaimed: {}\n",
            self.box_id, self.box_name, self.claimed
        )
    }

    /// Reads a marker's text; `Err` says what is wrong with it.
    pub fn parse(text: &str) -> Result<Marker, String> {
        if !text.starts_with("OSCAR Box backup disk\n") {
            return Err("it does not start with \"OSCAR Box backup disk\"".into());
        }
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
                .filter(|v| !v.is_empty())
        };
        let box_id = field("box-id:").ok_or("it names no box-id")?;
        Ok(Marker {
            box_id,
            box_name: field("box-name:").unwrap_or_default(),
            claimed: field("claimed:").unwrap_or_default(),
        })
    }
}

/// The free space kept back on the backup disk: 2% of it, at most 2 GiB. Below this nothing new
/// is written, because the replica's data directory shares the disk and must be able to grow
/// while retention frees space. A dev box's "disk" is a directory on a shared file system
/// (`require_mount` off), whose free space is the developer's: there it is at most 64 MiB.
pub fn reserve_bytes(total: u64, require_mount: bool) -> u64 {
    let cap = if require_mount { 2 << 30 } else { 64 << 20 };
    (total / 50).min(cap)
}

/// What the box may do with the backup disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskVerdict {
    /// This box's disk: write. `nearly_full` (above the high-water mark) is a warning: retention
    /// runs at once, and backups go on while the disk has more than its reserve.
    Ready { nearly_full: Option<String> },
    /// A fresh disk, mounted and empty: write this box's marker on it, then write.
    Claim,
    /// This box's disk, below its reserve: no new backup, but retention may free space.
    Full(String),
    /// Write nothing; the reason, in plain words, with what to do.
    Refuse(String),
}

/// Whether the box may write to the disk described by `facts`. `require_mount` is off only on a
/// dev box; `high_water_percent` is the share of the disk in use above which it counts as
/// nearly full (retention must free space). A disk with less than [`reserve_bytes`] left is
/// full: nothing new is written until space returns.
pub fn judge(
    facts: &DiskFacts,
    box_id: &str,
    require_mount: bool,
    high_water_percent: u8,
) -> DiskVerdict {
    let path = facts.path.display();
    if !facts.exists {
        return DiskVerdict::Refuse(format!(
            "{path} does not exist: the backup disk is not there. Plug it in and mount it there (see /etc/fstab), or fix backup.disk."
        ));
    }
    if require_mount && !facts.mounted {
        return DiskVerdict::Refuse(format!(
            "nothing is mounted at {path}: the backup disk is unplugged or failed to mount, and backing up into the empty directory would fill the system disk. Plug the disk in and mount it (`mount {path}`)."
        ));
    }
    if let Some(why) = &facts.marker_damaged {
        return DiskVerdict::Refuse(format!(
            "{path}/{MARKER} cannot be read ({why}): the disk's owner is unknown, so nothing is written. Compare it with another box's disk, or restore the file from this box's recovery sheet."
        ));
    }
    match &facts.marker {
        Some(m) if m.box_id != box_id => DiskVerdict::Refuse(format!(
            "{path} is the backup disk of another box (\"{}\", id {}, claimed {}): nothing of this box is written to it. Plug in this box's own backup disk, or restore that box from it with `oscarbox restore box`.",
            m.box_name, m.box_id, m.claimed
        )),
        Some(_) if facts.available_bytes < reserve_bytes(facts.total_bytes, require_mount) => {
            DiskVerdict::Full(format!(
                "the backup disk {path} is full ({} MiB left, {} MiB kept in reserve): new backups wait until space returns. Nothing already saved is lost. Retention frees space as restore points age out; if the disk stays full, lower the backup.keep-* counts or fit a larger disk.",
                facts.available_bytes >> 20,
                reserve_bytes(facts.total_bytes, require_mount) >> 20
            ))
        }
        Some(_) => DiskVerdict::Ready {
            nearly_full: nearly_full(facts, high_water_percent),
        },
        None if facts.entries.iter().all(|e| claimable(facts, e)) => {
            DiskVerdict::Claim
        }
        None => DiskVerdict::Refuse(format!(
            "{path} holds files ({}) but no backup disk marker: it is not known to be this box's backup disk, so nothing is written. Mount an empty disk there, or, if this is the box's disk and its marker was lost, run `oscarbox backup claim-disk`.",
            facts
                .entries
                .iter()
                .filter(|e| !claimable(facts, e))
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn claimable(facts: &DiskFacts, entry: &str) -> bool {
    // A marker being written (or one whose writing was cut off) is this box's own.
    entry == LOST_FOUND || entry == MARKER_TMP || facts.ours.iter().any(|o| o == entry)
}

/// The share of the disk in use, 0 to 100.
pub fn used_percent(available: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    #[expect(clippy::cast_precision_loss, reason = "a percentage")]
    let p = total.saturating_sub(available) as f64 * 100.0 / total as f64;
    p
}

fn nearly_full(facts: &DiskFacts, high_water_percent: u8) -> Option<String> {
    let used = used_percent(facts.available_bytes, facts.total_bytes);
    (used > f64::from(high_water_percent)).then(|| {
        format!(
            "the backup disk {} is {used:.0}% full, above the {high_water_percent}% high-water mark: retention runs now; if the disk stays this full, lower the backup.keep-* counts or fit a larger disk",
            facts.path.display()
        )
    })
}

/// Gathers the facts of the backup path; `ours` are the directories the box itself keeps
/// there (see [`DiskFacts::ours`]). Blocking (a failing disk can block `stat` for minutes):
/// call it on the blocking pool with a timeout.
pub fn look(path: &Path, ours: Vec<String>) -> DiskFacts {
    let exists = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
    let (marker, marker_damaged) = match std::fs::read_to_string(path.join(MARKER)) {
        Ok(text) => match Marker::parse(&text) {
            Ok(m) => (Some(m), None),
            Err(why) => (None, Some(why)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let entries = std::fs::read_dir(path)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let (available_bytes, total_bytes) = oscarbox_common::space(path).unwrap_or((0, 0));
    DiskFacts {
        path: path.to_path_buf(),
        exists,
        mounted: exists && oscarbox_common::is_mount_point(path),
        marker,
        marker_damaged,
        entries,
        ours,
        available_bytes,
        total_bytes,
    }
}

/// Writes this box's marker on the disk (durably: fsync, atomic rename).
pub fn claim(path: &Path, box_id: &str, box_name: &str) -> std::io::Result<Marker> {
    let marker = Marker {
        box_id: box_id.to_owned(),
        box_name: box_name.to_owned(),
        claimed: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    oscarbox_common::write_private(&path.join(MARKER), marker.to_text().as_bytes())?;
    Ok(marker)
}

/// A new box identity: 128 random bits, hex.
pub fn new_box_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ME: &str = "0123456789abcdef0123456789abcdef";

    fn facts() -> DiskFacts {
        DiskFacts {
            path: "/srv/backup".into(),
            exists: true,
            mounted: true,
            marker: Some(Marker {
                box_id: ME.into(),
                box_name: "clinic".into(),
                claimed: "2026-11-23T19:00:00Z".into(),
            }),
            marker_damaged: None,
            entries: vec![MARKER.into(), "repository".into(), "db".into()],
            ours: vec!["db".into()],
            available_bytes: 500,
            total_bytes: 1000,
        }
    }

    fn refused(v: &DiskVerdict, words: &str) -> bool {
        matches!(v, DiskVerdict::Refuse(why) if why.contains(words))
    }

    fn full(v: &DiskVerdict, words: &str) -> bool {
        matches!(v, DiskVerdict::Full(why) if why.contains(words))
    }

    #[test]
    fn this_boxs_mounted_disk_is_ready() {
        assert_eq!(
            judge(&facts(), ME, true, 90),
            DiskVerdict::Ready { nearly_full: None }
        );
    }

    #[test]
    fn an_empty_mount_point_is_refused_when_a_mount_is_required() {
        let f = DiskFacts {
            mounted: false,
            marker: None,
            entries: Vec::new(),
            ..facts()
        };
        assert!(refused(
            &judge(&f, ME, true, 90),
            "nothing is mounted at /srv/backup"
        ));
        // A dev box's directory is claimed instead.
        assert_eq!(judge(&f, ME, false, 90), DiskVerdict::Claim);
    }

    #[test]
    fn a_missing_path_another_boxs_disk_and_a_damaged_marker_are_refused() {
        let f = DiskFacts {
            exists: false,
            ..facts()
        };
        assert!(refused(&judge(&f, ME, false, 90), "does not exist"));
        assert!(refused(
            &judge(&facts(), "ffff", true, 90),
            "the backup disk of another box (\"clinic\""
        ));
        let f = DiskFacts {
            marker: None,
            marker_damaged: Some("it names no box-id".into()),
            ..facts()
        };
        assert!(refused(
            &judge(&f, ME, true, 90),
            "cannot be read (it names no box-id)"
        ));
    }

    #[test]
    fn only_an_empty_disk_is_claimed() {
        for entries in [
            vec![],
            vec!["lost+found".to_owned()],
            vec!["db".to_owned()],
            vec![MARKER_TMP.to_owned()],
        ] {
            let f = DiskFacts {
                marker: None,
                entries,
                ..facts()
            };
            assert_eq!(judge(&f, ME, true, 90), DiskVerdict::Claim);
        }
        let f = DiskFacts {
            marker: None,
            entries: vec!["photos".into(), "lost+found".into()],
            ..facts()
        };
        assert!(refused(
            &judge(&f, ME, true, 90),
            "holds files (photos) but no backup disk marker"
        ));
    }

    #[test]
    fn above_the_high_water_mark_the_disk_is_nearly_full() {
        let f = DiskFacts {
            available_bytes: 50,
            ..facts()
        };
        let DiskVerdict::Ready {
            nearly_full: Some(why),
        } = judge(&f, ME, true, 90)
        else {
            panic!("ready but nearly full");
        };
        assert!(
            why.contains("95% full, above the 90% high-water mark"),
            "{why}"
        );
    }

    #[test]
    fn below_the_reserve_the_disk_is_full_and_nothing_is_written() {
        let total = 100 << 30;
        let f = DiskFacts {
            available_bytes: (2 << 30) - 1,
            total_bytes: total,
            ..facts()
        };
        assert!(full(
            &judge(&f, ME, true, 90),
            "is full (2047 MiB left, 2048 MiB kept in reserve)"
        ));
        // A dev box's directory on a shared file system keeps at most 64 MiB back.
        assert!(matches!(
            judge(&f, ME, false, 99),
            DiskVerdict::Ready { .. }
        ));
        // A small disk keeps 2% back.
        let f = DiskFacts {
            available_bytes: 19,
            ..facts()
        };
        assert!(full(&judge(&f, ME, true, 99), "is full"));
        let f = DiskFacts {
            available_bytes: 20,
            ..facts()
        };
        assert!(matches!(
            judge(&f, ME, true, 90),
            DiskVerdict::Ready {
                nearly_full: Some(_)
            }
        ));
    }

    #[test]
    fn markers_round_trip_and_damage_is_named() {
        let m = facts().marker.expect("a marker");
        assert_eq!(Marker::parse(&m.to_text()), Ok(m));
        assert!(Marker::parse("hello").is_err());
        assert_eq!(
            Marker::parse("OSCAR Box backup disk\nbox-id: \n"),
            Err("it names no box-id".into())
        );
    }

    #[test]
    fn claim_writes_a_marker_that_look_reads_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let f = look(dir.path(), Vec::new());
        assert!(f.exists && f.marker.is_none() && f.entries.is_empty());
        assert_eq!(judge(&f, ME, false, 99), DiskVerdict::Claim);
        claim(dir.path(), ME, "clinic").expect("claimed");
        let f = look(dir.path(), Vec::new());
        assert_eq!(f.marker.as_ref().map(|m| m.box_id.as_str()), Some(ME));
        assert!(matches!(
            judge(&f, ME, false, 99),
            DiskVerdict::Ready { .. }
        ));
        assert_eq!(new_box_id().len(), 32);
    }

    proptest! {
        /// Whatever the disk looks like, nothing is ever written to a path that is not there,
        /// not mounted when a mount is required, or carries another box's or a damaged marker.
        #[test]
        fn never_writes_where_it_must_not(
            exists in any::<bool>(),
            mounted in any::<bool>(),
            require_mount in any::<bool>(),
            marker in prop::option::of(prop_oneof![Just(ME.to_owned()), "[a-f0-9]{32}"]),
            damaged in any::<bool>(),
            entries in prop::collection::vec(prop_oneof![Just("lost+found".to_owned()), Just("db".to_owned()), "[a-z]{1,8}"], 0..4),
            available in 0u64..2000,
            high in 1u8..100,
        ) {
            let f = DiskFacts {
                path: "/b".into(),
                exists,
                mounted,
                marker: marker.clone().map(|box_id| Marker { box_id, box_name: String::new(), claimed: String::new() }),
                marker_damaged: damaged.then(|| "unreadable".to_owned()),
                entries: entries.clone(),
                ours: vec!["db".to_owned()],
                available_bytes: available.min(1000),
                total_bytes: 1000,
            };
            let v = judge(&f, ME, require_mount, high);
            let writes = matches!(v, DiskVerdict::Ready { .. } | DiskVerdict::Claim);
            if matches!(v, DiskVerdict::Full(_)) {
                prop_assert_eq!(marker.as_deref(), Some(ME), "only this box's disk is pruned");
            }
            if !exists || (require_mount && !mounted) || damaged {
                prop_assert!(!writes);
            }
            if marker.as_deref().is_some_and(|m| m != ME) {
                prop_assert!(!writes);
            }
            if marker.as_deref() == Some(ME) && available.min(1000) < 20 && exists && (mounted || !require_mount) && !damaged {
                prop_assert!(!writes, "a full disk is written");
            }
            if v == DiskVerdict::Claim {
                prop_assert!(marker.is_none());
                prop_assert!(entries.iter().all(|e| e == "lost+found" || e == "db"));
            }
        }
    }
}
