//! Reading what the binlog archive holds, from stock `mariadb-binlog`'s text (its event
//! headers), pure. Which transactions a file holds completely matters twice: the archive
//! resumes after the last complete one (a transaction cut off by a failover is fetched again
//! from the new primary), and a restore replays only complete ones. A transaction is complete
//! once its terminating event is there: the `Xid` (or a `COMMIT` query) of a `trans` GTID, the
//! statement of a `ddl` one.

pub use oscarbox_failover::Gtid;

/// A complete transaction in a binlog file: its GTID, when it was written (the header's
/// `yymmdd hh:mm:ss`, the server's local time, as `mariadb-binlog --stop-datetime` takes it),
/// and where it ends in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub gtid: Gtid,
    pub written: String,
    pub end: u64,
}

/// One event header line of `mariadb-binlog`'s output:
/// `#261123 19:34:57 server id 1  end_log_pos 978 CRC32 0x11d0a072 \tGTID 0-1-5 trans`.
struct Header<'a> {
    written: &'a str,
    end: u64,
    event: &'a str,
}

fn header(line: &str) -> Option<Header<'_>> {
    let rest = line.strip_prefix('#')?;
    if !rest.contains(" server id ") {
        return None;
    }
    let written = rest.get(..15)?;
    let end = rest
        .split_once("end_log_pos ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let event = rest.split_once('\t').map_or("", |(_, e)| e.trim());
    Some(Header {
        written,
        end,
        event,
    })
}

/// The complete transactions in `decoded`, the text `mariadb-binlog` printed for one file (or
/// several in order), in order.
pub fn transactions(decoded: &str) -> Vec<Transaction> {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Trans,
        Ddl,
    }
    let mut out = Vec::new();
    let mut open: Option<(Gtid, Kind)> = None;
    // After a query event's header inside a transaction: where it ends and when it was
    // written, until its statement shows whether it ends the transaction.
    let mut query: Option<(u64, String)> = None;
    for line in decoded.lines() {
        let Some(h) = header(line) else {
            let statement = !(line.is_empty()
                || line.starts_with('#')
                || line.starts_with("/*")
                || line.starts_with("SET ")
                || line.starts_with("use "));
            if let Some((end, written)) = query.take_if(|_| statement) {
                let commit = line.trim_end_matches("/*!*/;").trim() == "COMMIT";
                if let Some((gtid, kind)) = open {
                    if kind == Kind::Ddl || commit {
                        out.push(Transaction { gtid, written, end });
                        open = None;
                    }
                }
            }
            continue;
        };
        query = None;
        if let Some(g) = h.event.strip_prefix("GTID ") {
            let mut words = g.split_whitespace();
            let gtid = words.next().and_then(|w| w.parse().ok());
            let kind = if words.any(|w| w == "ddl") {
                Kind::Ddl
            } else {
                Kind::Trans
            };
            open = gtid.map(|g| (g, kind));
        } else if h.event.starts_with("Xid = ") {
            if let Some((gtid, Kind::Trans)) = open.take() {
                out.push(Transaction {
                    gtid,
                    written: h.written.to_owned(),
                    end: h.end,
                });
            }
        } else if h.event.starts_with("Query") && open.is_some() {
            query = Some((h.end, h.written.to_owned()));
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

    /// What `mariadb-binlog` printed for a small binlog (trimmed of the BINLOG blobs).
    const DECODED: &str = "# at 4
#261123 19:34:53 server id 1  end_log_pos 256 CRC32 0x1e4f15aa \tStart: binlog v 4, server v 10.11.19-MariaDB-0+deb12u1-log created 261123 19:34:53 at startup
# at 256
#261123 19:34:53 server id 1  end_log_pos 285 CRC32 0x67d95f69 \tGtid list []
# at 330
#261123 19:34:57 server id 1  end_log_pos 372 CRC32 0xcad9646d \tGTID 0-1-1 ddl
/*M!100001 SET @@session.gtid_seq_no=1*//*!*/;
# at 372
#261123 19:34:57 server id 1  end_log_pos 479 CRC32 0x7bbf3df5 \tQuery\tthread_id=4\texec_time=0\terror_code=0\txid=0
SET TIMESTAMP=1795460097/*!*/;
CREATE USER r@'127.0.0.1' IDENTIFIED BY 'pw'
/*!*/;
# at 936
#261123 19:34:57 server id 1  end_log_pos 978 CRC32 0x11d0a072 \tGTID 0-1-5 trans
/*M!100001 SET @@session.gtid_seq_no=5*//*!*/;
START TRANSACTION
/*!*/;
# at 978
#261123 19:34:57 server id 1  end_log_pos 1031 CRC32 0x3a58315d \tAnnotate_rows:
#Q> INSERT INTO t.a VALUES (1),(2)
#261123 19:34:57 server id 1  end_log_pos 1072 CRC32 0x3a849725 \tTable_map: `t`.`a` mapped to number 18
# at 1072
#261123 19:34:57 server id 1  end_log_pos 1115 CRC32 0x972b1163 \tWrite_rows: table id 18 flags: STMT_END_F
# at 1115
#261123 19:34:58 server id 1  end_log_pos 1146 CRC32 0x8881db09 \tXid = 5
COMMIT/*!*/;
# at 1146
#261123 19:34:59 server id 1  end_log_pos 1188 CRC32 0xbb518f41 \tGTID 0-1-6 trans
START TRANSACTION
# at 1188
#261123 19:34:59 server id 1  end_log_pos 1237 CRC32 0x29f57ba4 \tAnnotate_rows:
#Q> INSERT INTO t.a VALUES (3)
";

    fn g(s: &str) -> Gtid {
        s.parse().expect("a GTID")
    }

    #[test]
    fn complete_transactions_only() {
        let t = transactions(DECODED);
        assert_eq!(
            t,
            vec![
                Transaction {
                    gtid: g("0-1-1"),
                    written: "261123 19:34:57".into(),
                    end: 479
                },
                Transaction {
                    gtid: g("0-1-5"),
                    written: "261123 19:34:58".into(),
                    end: 1146
                },
            ],
            "0-1-6 was cut off before its Xid"
        );
    }

    #[test]
    fn a_commit_query_ends_a_transaction() {
        let text = "#261123 19:34:57 server id 1  end_log_pos 100 CRC32 0x1 \tGTID 0-2-9 trans
START TRANSACTION
#261123 19:34:57 server id 1  end_log_pos 200 CRC32 0x2 \tQuery\tthread_id=4
SET TIMESTAMP=1/*!*/;
COMMIT
/*!*/;
";
        assert_eq!(
            transactions(text)
                .iter()
                .map(|t| t.gtid)
                .collect::<Vec<_>>(),
            vec![g("0-2-9")]
        );
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

    #[test]
    fn gtids_parse_and_bad_ones_are_named() {
        assert_eq!(g("0-1-145").to_string(), "0-1-145");
        assert!("0-1".parse::<Gtid>().is_err());
        assert!("a-1-2".parse::<Gtid>().is_err());
    }
}
