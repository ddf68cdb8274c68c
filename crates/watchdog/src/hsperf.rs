//! Reader for HotSpot's hsperfdata files, to tell a JVM in a garbage-collection pause from a hung one.
//!
//! A HotSpot JVM publishes its performance counters in a memory-mapped file,
//! `/tmp/hsperfdata_<user>/<pid>` (the file `jstat` reads). The layout is HotSpot's
//! `PerfDataPrologue` followed by `PerfDataEntry` records (perfMemory.hpp, version 2.0):
//!
//! - prologue, 32 bytes: magic `CA FE C0 C0` (always in that byte order), `byte_order` u8
//!   (0 big endian, 1 little endian), `major_version` u8, `minor_version` u8, `accessible` u8,
//!   then in the file's byte order `used` i32 (bytes in use, prologue included), `overflow` i32,
//!   `mod_time_stamp` i64, `entry_offset` i32, `num_entries` i32;
//! - each entry, a 20-byte header: `entry_length` i32, `name_offset` i32, `vector_length` i32,
//!   `data_type` u8 (a JVM type char, `J` for long), `flags` u8, `data_units` u8,
//!   `data_variability` u8, `data_offset` i32; offsets count from the start of the entry, the
//!   name is NUL-terminated ASCII.
//!
//! The file is written by another process while we read it, so every offset is checked and
//! nothing here can panic, whatever the bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MAGIC: [u8; 4] = [0xca, 0xfe, 0xc0, 0xc0];
const PROLOGUE_LEN: usize = 32;
const ENTRY_HEADER_LEN: usize = 20;
const SUPPORTED_MAJOR: u8 = 2;
const TYPE_LONG: u8 = b'J';
/// HotSpot's `U_None` and `V_Variable`: what `encode` claims, so that jvmstat accepts its files.
const UNITS_NONE: u8 = 1;
const VARIABILITY_VARIABLE: u8 = 3;

/// Why the file could not be read or understood. Messages lowercase, no trailing period.
#[derive(Debug, thiserror::Error)]
pub enum HsperfError {
    #[error("cannot read the hsperfdata file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an hsperfdata file (bad magic)")]
    BadMagic,
    #[error("unsupported hsperfdata version {major}.{minor}")]
    UnsupportedVersion { major: u8, minor: u8 },
    /// The JVM has not finished setting up its counters (or the file is a stale zeroed one).
    #[error("the jvm has not made its counters accessible yet")]
    NotAccessible,
    #[error("hsperfdata file truncated: {needed} bytes needed, {len} present")]
    Truncated { needed: usize, len: usize },
    #[error("malformed hsperfdata file: {0}")]
    Malformed(String),
}

/// What the supervisor needs from the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcSnapshot {
    /// A collection is in progress now: some collector's lastEntryTime > its lastExitTime.
    pub collecting: bool,
    /// Total collections so far (sum of sun.gc.collector.N.invocations).
    pub collections: u64,
    /// Total GC time in ticks (sum of sun.gc.collector.N.time).
    pub gc_ticks: u64,
    /// Ticks per second (sun.os.hrt.frequency), 0 if absent.
    pub tick_frequency: u64,
}

/// The hsperfdata file of `pid`: /tmp/hsperfdata_<user>/<pid>, found by scanning every
/// /tmp/hsperfdata_* directory (the JVM may run as another user). `tmp` is the temp dir to
/// scan (pass std::env::temp_dir() or "/tmp" in production; tests pass a tempdir).
///
/// When several users' directories hold a file for this pid (a stale one left by a crashed
/// JVM whose pid was reused), the most recently modified wins, since a live JVM keeps
/// touching its file. Symbolic links are not followed, as HotSpot itself refuses them.
pub fn find(tmp: &Path, pid: i32) -> Option<PathBuf> {
    if pid <= 0 {
        return None;
    }
    let pid = pid.to_string();
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(tmp).ok()?.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("hsperfdata_")
        {
            continue;
        }
        let path = entry.path().join(&pid);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|(when, _)| modified > *when) {
            best = Some((modified, path));
        }
    }
    best.map(|(_, path)| path)
}

/// Parses a whole hsperfdata file.
pub fn parse(bytes: &[u8]) -> Result<GcSnapshot, HsperfError> {
    Ok(snapshot(&long_counters(bytes)?))
}

/// Reads and parses the file at `path`.
pub fn read(path: &Path) -> Result<GcSnapshot, HsperfError> {
    parse(&std::fs::read(path)?)
}

/// Every scalar long counter in the file, by name. Other types (strings, arrays) are skipped.
pub fn long_counters(bytes: &[u8]) -> Result<BTreeMap<String, i64>, HsperfError> {
    if bytes.len() < MAGIC.len() {
        return Err(HsperfError::Truncated {
            needed: PROLOGUE_LEN,
            len: bytes.len(),
        });
    }
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(HsperfError::BadMagic);
    }
    if bytes.len() < PROLOGUE_LEN {
        return Err(HsperfError::Truncated {
            needed: PROLOGUE_LEN,
            len: bytes.len(),
        });
    }
    let order = match byte_at(bytes, 4)? {
        0 => Order::Big,
        1 => Order::Little,
        other => return Err(malformed(format!("unknown byte order {other}"))),
    };
    let (major, minor) = (byte_at(bytes, 5)?, byte_at(bytes, 6)?);
    if major != SUPPORTED_MAJOR {
        return Err(HsperfError::UnsupportedVersion { major, minor });
    }
    if byte_at(bytes, 7)? == 0 {
        return Err(HsperfError::NotAccessible);
    }
    let r = Reader { bytes, order };
    let used = r.offset(8, "used")?;
    let first = r.offset(24, "entry_offset")?;
    let num_entries = r.offset(28, "num_entries")?;
    // The file is the JVM's whole region (32 KiB by default); only `used` bytes hold entries.
    if used > bytes.len() {
        return Err(HsperfError::Truncated {
            needed: used,
            len: bytes.len(),
        });
    }
    if first < PROLOGUE_LEN || first > used {
        return Err(malformed(format!(
            "entry_offset {first} outside 32..={used}"
        )));
    }

    let mut counters = BTreeMap::new();
    let mut at = first;
    // Each entry is at least a header long and must end within `used`, so this loop runs at
    // most used / 20 times even when num_entries is garbage.
    for index in 0..num_entries {
        let header_end = at.checked_add(ENTRY_HEADER_LEN).filter(|&end| end <= used);
        if header_end.is_none() {
            return Err(malformed(format!(
                "entry {index} at {at} runs past used size {used}"
            )));
        }
        let length = r.i32_at(at)?;
        // HotSpot bumps num_entries before it fills the entry in, so a zero length can be a
        // half-written entry; we refuse it rather than guess, and a caller can simply read again.
        let length = usize::try_from(length)
            .ok()
            .filter(|&l| l >= ENTRY_HEADER_LEN)
            .ok_or_else(|| malformed(format!("entry {index} at {at} has length {length}")))?;
        let end = at
            .checked_add(length)
            .filter(|&end| end <= used)
            .ok_or_else(|| {
                malformed(format!("entry {index} at {at} runs past used size {used}"))
            })?;
        let entry = bytes.get(at..end).ok_or(HsperfError::Truncated {
            needed: end,
            len: bytes.len(),
        })?;
        if let Some((name, value)) = long_entry(
            Reader {
                bytes: entry,
                order,
            },
            index,
        )? {
            counters.insert(name, value);
        }
        at = end;
    }
    Ok(counters)
}

/// The name and value of one entry if it is a scalar long, `None` for other types.
fn long_entry(entry: Reader<'_>, index: usize) -> Result<Option<(String, i64)>, HsperfError> {
    let vector_length = entry.i32_at(8)?;
    let data_type = byte_at(entry.bytes, 12)?;
    if data_type != TYPE_LONG || vector_length != 0 {
        return Ok(None);
    }
    let name_offset = entry.i32_at(4)?;
    let name = usize::try_from(name_offset)
        .ok()
        .and_then(|start| entry.bytes.get(start..))
        .and_then(|rest| {
            rest.split(|&b| b == 0)
                .next()
                .filter(|name| name.len() < rest.len())
        })
        .ok_or_else(|| malformed(format!("entry {index} has no name at offset {name_offset}")))?;
    let name = std::str::from_utf8(name)
        .map_err(|_| malformed(format!("entry {index} has a name that is not utf-8")))?;
    let data_offset = entry.i32_at(16)?;
    let value = usize::try_from(data_offset)
        .ok()
        .and_then(|at| entry.i64_at(at).ok())
        .ok_or_else(|| {
            malformed(format!(
                "entry {index} ({name}) has its value outside the entry"
            ))
        })?;
    Ok(Some((name.to_owned(), value)))
}

/// Sums and compares the collector counters; names follow HotSpot's `CollectorCounters`.
fn snapshot(counters: &BTreeMap<String, i64>) -> GcSnapshot {
    let mut collections = 0u64;
    let mut gc_ticks = 0u64;
    // (lastEntryTime, lastExitTime) per collector number.
    let mut times: BTreeMap<&str, (Option<i64>, Option<i64>)> = BTreeMap::new();
    for (name, &value) in counters {
        let Some((collector, field)) = name
            .strip_prefix("sun.gc.collector.")
            .and_then(|rest| rest.split_once('.'))
        else {
            continue;
        };
        // Counters only grow; a negative one is corrupt, and clamping keeps the sums sane.
        let positive = u64::try_from(value).unwrap_or(0);
        match field {
            "invocations" => collections = collections.saturating_add(positive),
            "time" => gc_ticks = gc_ticks.saturating_add(positive),
            "lastEntryTime" => times.entry(collector).or_default().0 = Some(value),
            "lastExitTime" => times.entry(collector).or_default().1 = Some(value),
            _ => {}
        }
    }
    // Both times are required: treating a missing exit as 0 would report a collection that
    // never ends, and the supervisor would wait forever on a hung JVM.
    let collecting = times
        .values()
        .any(|&(entry, exit)| matches!((entry, exit), (Some(entry), Some(exit)) if entry > exit));
    let tick_frequency = counters
        .get("sun.os.hrt.frequency")
        .map_or(0, |&f| u64::try_from(f).unwrap_or(0));
    GcSnapshot {
        collecting,
        collections,
        gc_ticks,
        tick_frequency,
    }
}

/// Builds a file in the same format from (name, value) long counters: for tests and stand-ins
/// (a test can write a stand-in hsperfdata file for a fake JVM). Big-endian or little-endian per `big_endian`.
///
/// Entries are laid out as HotSpot's `PerfData::create_entry` does (value aligned to 8 bytes,
/// entries padded to 8). A name containing NUL is cut there when read back.
pub fn encode(counters: &[(&str, i64)], big_endian: bool) -> Vec<u8> {
    let order = if big_endian {
        Order::Big
    } else {
        Order::Little
    };
    let mut entries = Vec::new();
    for &(name, value) in counters {
        let name_end = ENTRY_HEADER_LEN + name.len() + 1;
        let data_offset = name_end.next_multiple_of(8);
        let length = (data_offset + 8).next_multiple_of(8);
        let mut entry = Vec::with_capacity(length);
        entry.extend(order.i32(to_i32(length)));
        entry.extend(order.i32(to_i32(ENTRY_HEADER_LEN)));
        entry.extend(order.i32(0));
        entry.extend([TYPE_LONG, 0, UNITS_NONE, VARIABILITY_VARIABLE]);
        entry.extend(order.i32(to_i32(data_offset)));
        entry.extend(name.as_bytes());
        entry.resize(data_offset, 0);
        entry.extend(order.i64(value));
        entry.resize(length, 0);
        entries.extend(entry);
    }
    let mut out = Vec::with_capacity(PROLOGUE_LEN + entries.len());
    out.extend(MAGIC);
    out.extend([u8::from(!big_endian), SUPPORTED_MAJOR, 0, 1]);
    out.extend(order.i32(to_i32(PROLOGUE_LEN + entries.len())));
    out.extend(order.i32(0));
    out.extend(order.i64(0));
    out.extend(order.i32(to_i32(PROLOGUE_LEN)));
    out.extend(order.i32(to_i32(counters.len())));
    out.extend(entries);
    out
}

/// Sizes beyond 2 GiB cannot be stored; saturating yields a file `parse` rejects, not a panic.
fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn malformed(why: String) -> HsperfError {
    HsperfError::Malformed(why)
}

fn byte_at(bytes: &[u8], at: usize) -> Result<u8, HsperfError> {
    bytes.get(at).copied().ok_or(HsperfError::Truncated {
        needed: at + 1,
        len: bytes.len(),
    })
}

#[derive(Debug, Clone, Copy)]
enum Order {
    Big,
    Little,
}

impl Order {
    fn i32(self, v: i32) -> [u8; 4] {
        match self {
            Order::Big => v.to_be_bytes(),
            Order::Little => v.to_le_bytes(),
        }
    }

    fn i64(self, v: i64) -> [u8; 8] {
        match self {
            Order::Big => v.to_be_bytes(),
            Order::Little => v.to_le_bytes(),
        }
    }
}

/// Bounds-checked reads of fixed-size fields in the file's byte order.
#[derive(Debug, Clone, Copy)]
struct Reader<'a> {
    bytes: &'a [u8],
    order: Order,
}

impl Reader<'_> {
    fn array<const N: usize>(&self, at: usize) -> Result<[u8; N], HsperfError> {
        let needed = at.saturating_add(N);
        self.bytes
            .get(at..needed)
            .and_then(|slice| <[u8; N]>::try_from(slice).ok())
            .ok_or(HsperfError::Truncated {
                needed,
                len: self.bytes.len(),
            })
    }

    fn i32_at(&self, at: usize) -> Result<i32, HsperfError> {
        let raw = self.array::<4>(at)?;
        Ok(match self.order {
            Order::Big => i32::from_be_bytes(raw),
            Order::Little => i32::from_le_bytes(raw),
        })
    }

    fn i64_at(&self, at: usize) -> Result<i64, HsperfError> {
        let raw = self.array::<8>(at)?;
        Ok(match self.order {
            Order::Big => i64::from_be_bytes(raw),
            Order::Little => i64::from_le_bytes(raw),
        })
    }

    /// A prologue field that is a size, a count or an offset, so must not be negative.
    fn offset(&self, at: usize, what: &str) -> Result<usize, HsperfError> {
        let v = self.i32_at(at)?;
        usize::try_from(v).map_err(|_| malformed(format!("{what} is negative ({v})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collectors(entry0: i64, exit0: i64, entry1: i64, exit1: i64) -> Vec<(&'static str, i64)> {
        vec![
            ("sun.os.hrt.frequency", 1_000_000_000),
            ("sun.gc.collector.0.invocations", 7),
            ("sun.gc.collector.0.time", 1_500),
            ("sun.gc.collector.0.lastEntryTime", entry0),
            ("sun.gc.collector.0.lastExitTime", exit0),
            ("sun.gc.collector.1.invocations", 2),
            ("sun.gc.collector.1.time", 40_000),
            ("sun.gc.collector.1.lastEntryTime", entry1),
            ("sun.gc.collector.1.lastExitTime", exit1),
            ("sun.rt.createVmBeginTime", -1),
        ]
    }

    fn set_i32(bytes: &mut [u8], at: usize, v: i32) {
        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn round_trip_in_both_byte_orders() {
        let counters = collectors(100, 120, 200, 250);
        for big_endian in [true, false] {
            let bytes = encode(&counters, big_endian);
            assert_eq!(bytes[..4], MAGIC, "magic is byte order independent");
            assert_eq!(bytes[4], u8::from(!big_endian));
            let read = long_counters(&bytes).expect("encoded file parses");
            let expected: BTreeMap<String, i64> =
                counters.iter().map(|&(n, v)| (n.to_owned(), v)).collect();
            assert_eq!(read, expected);
            let snap = parse(&bytes).expect("encoded file parses");
            assert_eq!(
                snap,
                GcSnapshot {
                    collecting: false,
                    collections: 9,
                    gc_ticks: 41_500,
                    tick_frequency: 1_000_000_000
                }
            );
        }
    }

    #[test]
    fn collecting_when_any_collector_entered_after_it_exited() {
        assert!(
            parse(&encode(&collectors(300, 120, 200, 250), false))
                .expect("parses")
                .collecting
        );
        assert!(
            parse(&encode(&collectors(100, 120, 300, 250), true))
                .expect("parses")
                .collecting
        );
        // A JVM that has never collected has both times at zero.
        assert!(
            !parse(&encode(&collectors(0, 0, 0, 0), false))
                .expect("parses")
                .collecting
        );
        // Without its exit time a collector cannot be judged, so it does not count as collecting.
        let lone = encode(&[("sun.gc.collector.0.lastEntryTime", 5)], false);
        assert!(!parse(&lone).expect("parses").collecting);
    }

    #[test]
    fn absent_counters_give_zeros_and_negatives_clamp() {
        let snap = parse(&encode(&[("sun.gc.collector.0.invocations", -3)], true)).expect("parses");
        assert_eq!(
            snap,
            GcSnapshot {
                collecting: false,
                collections: 0,
                gc_ticks: 0,
                tick_frequency: 0
            }
        );
    }

    #[test]
    fn skips_entries_that_are_not_scalar_longs() {
        let mut bytes = encode(
            &[("sun.gc.collector.0.invocations", 4), ("java.property", 9)],
            false,
        );
        // Turn the second entry into a byte array, as HotSpot stores strings.
        let second = PROLOGUE_LEN
            + usize::try_from(i32::from_le_bytes(
                bytes[32..36].try_into().expect("4 bytes"),
            ))
            .expect("positive");
        bytes[second + 12] = b'B';
        let read = long_counters(&bytes).expect("parses");
        assert_eq!(read.len(), 1);
        assert_eq!(parse(&bytes).expect("parses").collections, 4);
    }

    #[test]
    fn find_scans_every_user_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("hsperfdata_root")).expect("mkdir");
        std::fs::create_dir(tmp.path().join("hsperfdata_someuser")).expect("mkdir");
        std::fs::create_dir(tmp.path().join("unrelated")).expect("mkdir");
        std::fs::write(tmp.path().join("unrelated/4242"), b"x").expect("write");
        let file = tmp.path().join("hsperfdata_someuser/4242");
        std::fs::write(&file, encode(&collectors(1, 2, 3, 4), false)).expect("write");
        assert_eq!(find(tmp.path(), 4242), Some(file.clone()));
        assert_eq!(find(tmp.path(), 4243), None);
        assert_eq!(find(tmp.path(), -1), None);
        assert_eq!(find(&tmp.path().join("missing"), 4242), None);
        assert_eq!(read(&file).expect("reads").collections, 9);
        assert!(matches!(
            read(&tmp.path().join("nope")),
            Err(HsperfError::Io(_))
        ));
    }

    #[test]
    fn truncated_files_are_errors() {
        let bytes = encode(&collectors(1, 2, 3, 4), false);
        for len in [0, 3, 4, 20, PROLOGUE_LEN - 1, PROLOGUE_LEN, bytes.len() - 1] {
            let err = parse(&bytes[..len]).expect_err("truncated");
            assert!(matches!(err, HsperfError::Truncated { .. }), "{len}: {err}");
        }
    }

    #[test]
    fn bad_magic_version_and_accessibility_are_errors() {
        let good = encode(&collectors(1, 2, 3, 4), false);
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&[0xc0, 0xc0, 0xfe, 0xca]);
        assert!(matches!(parse(&bad), Err(HsperfError::BadMagic)));
        let mut bad = good.clone();
        bad[5] = 1;
        let err = parse(&bad).expect_err("version 1");
        assert!(matches!(
            err,
            HsperfError::UnsupportedVersion { major: 1, minor: 0 }
        ));
        assert_eq!(err.to_string(), "unsupported hsperfdata version 1.0");
        let mut bad = good.clone();
        bad[4] = 7;
        assert!(matches!(parse(&bad), Err(HsperfError::Malformed(_))));
        let mut bad = good;
        bad[7] = 0;
        assert!(matches!(parse(&bad), Err(HsperfError::NotAccessible)));
    }

    #[test]
    fn broken_entries_are_errors() {
        let good = encode(&collectors(1, 2, 3, 4), false);
        let cases: [(usize, i32); 8] = [
            (PROLOGUE_LEN, 0),          // entry_length 0
            (PROLOGUE_LEN, -8),         // negative entry_length
            (PROLOGUE_LEN, 12),         // shorter than its own header
            (PROLOGUE_LEN, 1 << 20),    // entry past the end
            (PROLOGUE_LEN + 4, 10_000), // name past the entry
            (PROLOGUE_LEN + 16, 9_999), // value past the entry
            (24, 1 << 30),              // entry_offset past the end
            (28, 1_000),                // more entries than the file holds
        ];
        for (at, value) in cases {
            let mut bad = good.clone();
            set_i32(&mut bad, at, value);
            let err = parse(&bad).expect_err("broken entry");
            assert!(
                matches!(err, HsperfError::Malformed(_)),
                "{at}={value}: {err}"
            );
        }
        let mut bad = good.clone();
        set_i32(&mut bad, 8, 1 << 30);
        assert!(matches!(parse(&bad), Err(HsperfError::Truncated { .. })));
        let mut bad = good;
        set_i32(&mut bad, 28, -1);
        assert_eq!(
            parse(&bad).expect_err("negative").to_string(),
            "malformed hsperfdata file: num_entries is negative (-1)"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..512),
            order in 0u8..2,
        ) {
            let _ = parse(&bytes);
            // Random bytes rarely pass the magic check, so also try them behind a valid start.
            let start = [0xca, 0xfe, 0xc0, 0xc0, order, 2, 0, 1];
            let n = bytes.len().min(start.len());
            bytes[..n].copy_from_slice(&start[..n]);
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_damaged_files(
            big_endian in any::<bool>(),
            damage in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
            cut in any::<usize>(),
        ) {
            let mut bytes = encode(&collectors(1, 2, 3, 4), big_endian);
            for (at, byte) in damage {
                let len = bytes.len();
                bytes[at % len] = byte;
            }
            let len = cut % (bytes.len() + 1);
            let _ = parse(&bytes);
            let _ = parse(&bytes[..len]);
        }

        #[test]
        fn any_counters_round_trip(
            counters in proptest::collection::btree_map("[a-zA-Z0-9._]{1,60}", any::<i64>(), 0..20),
            big_endian in any::<bool>(),
        ) {
            let list: Vec<(&str, i64)> = counters.iter().map(|(n, &v)| (n.as_str(), v)).collect();
            prop_assert_eq!(long_counters(&encode(&list, big_endian)).expect("parses"), counters);
        }
    }
}
