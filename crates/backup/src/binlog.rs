//! What an archived binlog file holds, read from its bytes, pure. Which transactions a file
//! holds completely matters three times: the archive resumes after the last complete one (a
//! transaction cut off by a failover is fetched again from the new primary), a session's last
//! file is cut back to the end of its last complete transaction when the session ends (so
//! every archived file replays whole, and stock `mariadb-binlog` reads it without an error),
//! and a restore names the transactions it can reach.
//!
//! Written by hand, on purpose: only the 19-byte event header and three event kinds are read
//! (MariaDB's GTID event, the XID event and the query event's statement), which no maintained
//! crate decodes for MariaDB (`mysql_common` knows MySQL's events, not MariaDB's GTID event),
//! and decoding the whole file with `mariadb-binlog` to find the same offsets would cost a
//! process and a full text rendering per look.

pub use oscarbox_failover::{Gtid, GtidList};

/// The 4 bytes every binlog file starts with.
pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];
const HEADER: usize = 19;
const QUERY_EVENT: u8 = 2;
const XID_EVENT: u8 = 16;
const GTID_EVENT: u8 = 162;
/// The GTID event's flag for a transaction of one statement without BEGIN/COMMIT (DDL).
const FL_STANDALONE: u8 = 1;

/// A complete transaction in a binlog file: its GTID, when it was written (the server's
/// clock, Unix seconds) and where it starts and ends in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub gtid: Gtid,
    pub written: u32,
    pub start: u64,
    pub end: u64,
}

/// What a file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Its complete transactions, in order.
    pub transactions: Vec<Transaction>,
    /// Where its whole part ends: after the last complete transaction, or after the events
    /// before the first one (the format description, the GTID list). What follows is a
    /// transaction or an event cut off.
    pub whole: u64,
    /// Whether the file starts with the binlog magic at all.
    pub is_binlog: bool,
}

/// One event: its kind, where it starts and its size; `None` past the end or on a header that
/// cannot be an event.
fn event(bytes: &[u8], at: usize) -> Option<(u8, usize, &[u8])> {
    let header = bytes.get(at..at + HEADER)?;
    let size = u32::from_le_bytes(header[9..13].try_into().ok()?) as usize;
    if size < HEADER {
        return None;
    }
    let whole = bytes.get(at..at.checked_add(size)?)?;
    Some((header[4], size, whole))
}

/// Whether a query event's statement is `COMMIT` (a transaction of non-transactional tables
/// ends so); the event may carry a 4-byte checksum after the statement.
fn is_commit(event: &[u8]) -> bool {
    let body = &event[HEADER..];
    body.ends_with(b"COMMIT")
        || body
            .get(..body.len().saturating_sub(4))
            .is_some_and(|b| b.ends_with(b"COMMIT"))
}

/// Reads a binlog file's bytes.
pub fn scan(bytes: &[u8]) -> Scan {
    if !bytes.starts_with(&MAGIC) {
        return Scan::default();
    }
    let mut out = Scan {
        transactions: Vec::new(),
        whole: MAGIC.len() as u64,
        is_binlog: true,
    };
    // The transaction under way: its GTID, when, whether it is one standalone statement, and
    // where it starts.
    let mut open: Option<(Gtid, u32, bool, u64)> = None;
    let mut at = MAGIC.len();
    while let Some((kind, size, ev)) = event(bytes, at) {
        let (start, end) = (at as u64, (at + size) as u64);
        at += size;
        let written = u32::from_le_bytes([ev[0], ev[1], ev[2], ev[3]]);
        let server = u32::from_le_bytes([ev[5], ev[6], ev[7], ev[8]]);
        if kind == GTID_EVENT {
            let body = &ev[HEADER..];
            let (Some(seq), Some(domain), Some(&flags)) = (
                body.get(0..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes),
                body.get(8..12)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes),
                body.get(12),
            ) else {
                break;
            };
            let gtid = Gtid {
                domain,
                server,
                seq,
            };
            open = Some((gtid, written, flags & FL_STANDALONE != 0, start));
            continue;
        }
        match open {
            Some((gtid, when, standalone, began))
                if kind == XID_EVENT || (kind == QUERY_EVENT && (standalone || is_commit(ev))) =>
            {
                out.transactions.push(Transaction {
                    gtid,
                    written: when,
                    start: began,
                    end,
                });
                out.whole = end;
                open = None;
            }
            Some(_) => {}
            None => out.whole = end,
        }
    }
    out
}

/// Whether `later` continues `earlier` without a gap: in every domain, sequence numbers follow
/// one another (a transaction fetched twice, across a failover, is not a gap). Returns the
/// first gap found: (the last GTID before it, the first after it).
pub fn first_gap(gtids: impl IntoIterator<Item = Gtid>) -> Option<(Gtid, Gtid)> {
    let mut last: std::collections::BTreeMap<u32, Gtid> = std::collections::BTreeMap::new();
    for g in gtids {
        match last.get(&g.domain) {
            Some(prev) if g.seq > prev.seq + 1 => return Some((*prev, g)),
            Some(prev) if g.seq <= prev.seq => continue,
            _ => {}
        }
        last.insert(g.domain, g);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One event with a header, `body` and a 4-byte checksum (never checked here).
    fn ev(kind: u8, server: u32, written: u32, body: &[u8]) -> Vec<u8> {
        let size = (HEADER + body.len() + 4) as u32;
        let mut out = Vec::new();
        out.extend(written.to_le_bytes());
        out.push(kind);
        out.extend(server.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(body);
        out.extend([0xaa, 0xbb, 0xcc, 0xdd]);
        out
    }

    fn gtid_ev(g: &str, ddl: bool, written: u32) -> Vec<u8> {
        let g: Gtid = g.parse().expect("a GTID");
        let mut body = Vec::new();
        body.extend(g.seq.to_le_bytes());
        body.extend(g.domain.to_le_bytes());
        body.push(u8::from(ddl));
        body.extend([0; 6]);
        ev(GTID_EVENT, g.server, written, &body)
    }

    fn query(statement: &str) -> Vec<u8> {
        let mut body = vec![0u8; 13];
        body.extend(b"oscar\0");
        body.extend(statement.as_bytes());
        ev(QUERY_EVENT, 1, 0, &body)
    }

    const FORMAT: u8 = 15;
    const ROWS: u8 = 23;

    /// A file: a format description, a DDL, a row transaction ending in an XID, one ending in
    /// a COMMIT query, then a row transaction cut off before its XID.
    fn file() -> (Vec<u8>, Vec<u64>) {
        let mut f = MAGIC.to_vec();
        let mut ends = Vec::new();
        f.extend(ev(FORMAT, 1, 10, &[0; 80]));
        ends.push(f.len() as u64);
        // Each transaction starts where the previous whole part ended.
        f.extend(gtid_ev("0-1-1", true, 11));
        f.extend(query("CREATE TABLE t (i int)"));
        ends.push(f.len() as u64);
        f.extend(gtid_ev("0-1-2", false, 12));
        f.extend(query("BEGIN"));
        f.extend(ev(ROWS, 1, 12, &[1; 30]));
        f.extend(ev(XID_EVENT, 1, 12, &[7; 8]));
        ends.push(f.len() as u64);
        f.extend(gtid_ev("0-1-3", false, 13));
        f.extend(query("BEGIN"));
        f.extend(ev(ROWS, 1, 13, &[1; 30]));
        f.extend(query("COMMIT"));
        ends.push(f.len() as u64);
        f.extend(gtid_ev("0-2-4", false, 14));
        f.extend(query("BEGIN"));
        f.extend(ev(ROWS, 2, 14, &[1; 30]));
        (f, ends)
    }

    fn g(s: &str) -> Gtid {
        s.parse().expect("a GTID")
    }

    #[test]
    fn complete_transactions_only_and_where_the_whole_part_ends() {
        let (f, ends) = file();
        let s = scan(&f);
        assert!(s.is_binlog);
        assert_eq!(
            s.transactions,
            vec![
                Transaction {
                    gtid: g("0-1-1"),
                    written: 11,
                    start: ends[0],
                    end: ends[1]
                },
                Transaction {
                    gtid: g("0-1-2"),
                    written: 12,
                    start: ends[1],
                    end: ends[2]
                },
                Transaction {
                    gtid: g("0-1-3"),
                    written: 13,
                    start: ends[2],
                    end: ends[3]
                },
            ],
            "0-2-4 was cut off before its XID"
        );
        assert_eq!(s.whole, ends[3]);
        assert_eq!(scan(&f[..ends[0] as usize]).whole, ends[0]);
        assert!(!scan(b"PK\x03\x04 a zip").is_binlog);
    }

    proptest! {
        /// Cut anywhere, a file's whole part is a prefix of the complete file's transactions,
        /// ends on a transaction boundary, and reads the same when cut there.
        #[test]
        fn any_cut_ends_on_a_transaction_boundary(cut in 0usize..400) {
            let (f, ends) = file();
            let cut = cut.min(f.len());
            let s = scan(&f[..cut]);
            let full = scan(&f);
            prop_assert!(full.transactions.starts_with(&s.transactions));
            prop_assert!(s.whole as usize <= cut.max(4));
            if cut >= 4 {
                prop_assert!(s.whole == 4 || ends.contains(&s.whole));
                prop_assert_eq!(scan(&f[..s.whole as usize]).transactions, s.transactions.clone());
            }
        }
    }

    #[test]
    fn gaps_are_found_and_refetched_transactions_are_not_gaps() {
        let seq = |v: &[&str]| v.iter().map(|s| g(s)).collect::<Vec<_>>();
        assert_eq!(first_gap(seq(&["0-1-1", "0-1-2", "0-1-3"])), None);
        assert_eq!(
            first_gap(seq(&["0-1-1", "0-1-2", "0-1-2", "0-2-3", "0-2-4"])),
            None,
            "a failover refetches 0-1-2 and continues under server 2"
        );
        assert_eq!(
            first_gap(seq(&["0-1-1", "0-1-2", "0-2-4"])),
            Some((g("0-1-2"), g("0-2-4")))
        );
        assert_eq!(first_gap(seq(&["0-1-1", "1-1-1", "0-1-2"])), None);
    }
}
