//! MariaDB GTID positions (`0-1-42,1-2-7`): parsing, display, and comparing two nodes' histories.
//!
//! A position holds the last GTID of each replication domain, as `gtid_binlog_pos`,
//! `gtid_current_pos`, `gtid_slave_pos` and `Gtid_IO_Pos` report it. Comparing two positions is
//! how rejoin decides whether an old primary may simply follow the new one.
//!
//! Assumptions, which the box's configuration makes true:
//! - `gtid_strict_mode` is on, so within a domain every node's sequence numbers strictly
//!   increase, and the last GTID of a domain stands for the whole history before it.
//! - The same (domain, sequence) on two nodes is the same transaction if and only if the server
//!   ids agree; a different server id at the same sequence is a divergence.
//! - A lower sequence is taken to lie on the other node's path. Positions alone cannot see a
//!   divergence hidden below the shorter history's last GTID (`0-1-43` against `0-2-44` where
//!   `0-2-43` differs from `0-1-43`); MariaDB itself refuses such a replica when it connects
//!   (error 1236, "GTID not in the master's binlog"), and the decision core treats that error
//!   as a divergence too.
//! - A domain one node has never seen counts as sequence zero there: the other node is ahead.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// One global transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// A position: the last GTID of each domain, at most one per domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GtidList {
    /// domain → (server id, sequence); a map keeps the display in MariaDB's domain order.
    last: BTreeMap<u32, (u32, u64)>,
}

/// How one node's history stands against another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    Equal,
    /// A strict prefix: everything it has, the other has too, and more.
    Behind,
    /// The other is a strict prefix of it: it has transactions the other lacks.
    Ahead,
    /// Each has transactions the other lacks: it cannot simply follow the other.
    Diverged,
}

impl History {
    /// The same comparison seen from the other node.
    pub fn reverse(self) -> History {
        match self {
            History::Behind => History::Ahead,
            History::Ahead => History::Behind,
            same => same,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    #[error("gtid `{text}`: expected domain-server-sequence, three numbers joined by `-`")]
    Shape { text: String },
    #[error("gtid `{text}`: the {part} `{value}` is not a number in range")]
    Number {
        text: String,
        part: &'static str,
        value: String,
    },
    #[error("gtid position `{list}`: domain {domain} appears twice (a position has one gtid per domain)")]
    DuplicateDomain { list: String, domain: u32 },
}

impl FromStr for Gtid {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<Gtid, GtidError> {
        let parts: Vec<&str> = text.split('-').collect();
        let [domain, server, seq] = parts[..] else {
            return Err(GtidError::Shape { text: text.into() });
        };
        // `u32::from_str` accepts a leading `+`; MariaDB never prints one, so refuse it.
        fn number<T: FromStr>(text: &str, part: &'static str, value: &str) -> Result<T, GtidError> {
            let bad = || GtidError::Number {
                text: text.into(),
                part,
                value: value.into(),
            };
            if !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            value.parse().map_err(|_| bad())
        }
        Ok(Gtid {
            domain: number(text, "domain", domain)?,
            server: number(text, "server id", server)?,
            seq: number(text, "sequence", seq)?,
        })
    }
}

impl FromStr for GtidList {
    type Err = GtidError;

    /// Parses what MariaDB prints: GTIDs joined by commas, possibly with whitespace or newlines
    /// after the commas; the empty string is the empty position of a fresh server.
    fn from_str(list: &str) -> Result<GtidList, GtidError> {
        let mut out = GtidList::default();
        if list.trim().is_empty() {
            return Ok(out);
        }
        for text in list.split(',') {
            let gtid: Gtid = text.trim().parse()?;
            if out.insert(gtid).is_some() {
                return Err(GtidError::DuplicateDomain {
                    list: list.into(),
                    domain: gtid.domain,
                });
            }
        }
        Ok(out)
    }
}

impl fmt::Display for GtidList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, gtid) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

impl FromIterator<Gtid> for GtidList {
    /// Later GTIDs of a domain replace earlier ones.
    fn from_iter<I: IntoIterator<Item = Gtid>>(iter: I) -> GtidList {
        let mut out = GtidList::default();
        for gtid in iter {
            out.insert(gtid);
        }
        out
    }
}

impl GtidList {
    /// Sets the last GTID of its domain, returning the one it replaced.
    pub fn insert(&mut self, gtid: Gtid) -> Option<Gtid> {
        self.last
            .insert(gtid.domain, (gtid.server, gtid.seq))
            .map(|(server, seq)| Gtid {
                domain: gtid.domain,
                server,
                seq,
            })
    }

    pub fn get(&self, domain: u32) -> Option<Gtid> {
        self.last.get(&domain).map(|&(server, seq)| Gtid {
            domain,
            server,
            seq,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = Gtid> + '_ {
        self.last.iter().map(|(&domain, &(server, seq))| Gtid {
            domain,
            server,
            seq,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// How this history stands against `other`'s, domain by domain (see the module's
    /// assumptions). Behind in one domain and ahead in another is diverged: each side has
    /// something the other lacks.
    pub fn compare(&self, other: &GtidList) -> History {
        let (mut behind, mut ahead) = (false, false);
        for domain in self.last.keys().chain(other.last.keys()) {
            match (self.last.get(domain), other.last.get(domain)) {
                (Some(&(ours, a)), Some(&(theirs, b))) => match a.cmp(&b) {
                    Ordering::Less => behind = true,
                    Ordering::Greater => ahead = true,
                    Ordering::Equal if ours != theirs => return History::Diverged,
                    Ordering::Equal => {}
                },
                (Some(_), None) => ahead = true,
                (None, Some(_)) => behind = true,
                (None, None) => unreachable!("the domain came from one of the two maps"),
            }
        }
        match (behind, ahead) {
            (false, false) => History::Equal,
            (true, false) => History::Behind,
            (false, true) => History::Ahead,
            (true, true) => History::Diverged,
        }
    }

    /// Whether `other` has every transaction this history has: it may follow `other` as a
    /// replica.
    pub fn is_prefix_of(&self, other: &GtidList) -> bool {
        matches!(self.compare(other), History::Equal | History::Behind)
    }

    /// The domains where this history has transactions `other` lacks, with both last GTIDs
    /// (`None` where `other` never saw the domain): what a person reviewing preserved
    /// transactions needs to know.
    pub fn extra_over(&self, other: &GtidList) -> Vec<(Gtid, Option<Gtid>)> {
        self.iter()
            .filter_map(|ours| match other.get(ours.domain) {
                None => Some((ours, None)),
                Some(theirs)
                    if ours.seq > theirs.seq
                        || (ours.seq == theirs.seq && ours.server != theirs.server) =>
                {
                    Some((ours, Some(theirs)))
                }
                Some(_) => None,
            })
            .collect()
    }

    /// Per domain, the later of the two; on a tie, this list's. What a replica's history
    /// becomes once it has applied everything up to `other` (its `Gtid_IO_Pos`).
    pub fn advanced_to(&self, other: &GtidList) -> GtidList {
        let mut out = self.clone();
        for theirs in other.iter() {
            if out
                .get(theirs.domain)
                .is_none_or(|ours| theirs.seq > ours.seq)
            {
                out.insert(theirs);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn list(text: &str) -> GtidList {
        text.parse().expect("a valid position in the test")
    }

    #[test]
    fn parses_what_mariadb_prints() {
        assert_eq!(list(""), GtidList::default());
        assert_eq!(list("  \n"), GtidList::default());
        let two = list("1-2-7,\n0-1-42");
        assert_eq!(two.to_string(), "0-1-42,1-2-7");
        assert_eq!(
            two.get(1),
            Some(Gtid {
                domain: 1,
                server: 2,
                seq: 7
            })
        );
        assert_eq!(
            list("0-4294967295-18446744073709551615").to_string(),
            "0-4294967295-18446744073709551615"
        );
    }

    #[test]
    fn refuses_malformed_positions_with_the_culprit_named() {
        let err = |text: &str| text.parse::<GtidList>().expect_err("malformed").to_string();
        assert_eq!(
            err("0-1"),
            "gtid `0-1`: expected domain-server-sequence, three numbers joined by `-`"
        );
        assert_eq!(
            err("0-1-42,,1-2-3"),
            "gtid ``: expected domain-server-sequence, three numbers joined by `-`"
        );
        assert_eq!(
            err("0-x-42"),
            "gtid `0-x-42`: the server id `x` is not a number in range"
        );
        assert_eq!(
            err("0-1-+4"),
            "gtid `0-1-+4`: the sequence `+4` is not a number in range"
        );
        assert_eq!(
            err("4294967296-1-1"),
            "gtid `4294967296-1-1`: the domain `4294967296` is not a number in range"
        );
        assert_eq!(
            err("0-1-5,0-2-6"),
            "gtid position `0-1-5,0-2-6`: domain 0 appears twice (a position has one gtid per domain)"
        );
    }

    #[test]
    fn compares_domain_by_domain() {
        let cmp = |a: &str, b: &str| list(a).compare(&list(b));
        assert_eq!(cmp("0-1-42", "0-1-42"), History::Equal);
        assert_eq!(cmp("", ""), History::Equal);
        assert_eq!(cmp("0-1-41", "0-1-42"), History::Behind);
        // A failover changes the server id of new transactions; the old ones are a prefix.
        assert_eq!(cmp("0-1-42", "0-2-50"), History::Behind);
        assert_eq!(cmp("", "0-1-1"), History::Behind);
        assert_eq!(cmp("0-1-42", "0-1-42,1-2-7"), History::Behind);
        assert_eq!(cmp("0-1-43", "0-1-42"), History::Ahead);
        // The same sequence written by two servers: two different transactions.
        assert_eq!(cmp("0-1-43", "0-2-43"), History::Diverged);
        assert_eq!(cmp("0-1-43,1-2-1", "0-1-42,1-2-5"), History::Diverged);
        assert!(list("0-1-41").is_prefix_of(&list("0-1-42")));
        assert!(!list("0-1-43").is_prefix_of(&list("0-1-42")));
    }

    #[test]
    fn extra_over_names_what_the_other_lacks() {
        let extra = list("0-1-45,1-1-3,2-1-9").extra_over(&list("0-2-44,1-1-3"));
        let shown: Vec<String> = extra
            .iter()
            .map(|(ours, theirs)| {
                format!(
                    "{ours}/{}",
                    theirs.map(|t| t.to_string()).unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(shown, ["0-1-45/0-2-44", "2-1-9/"]);
        assert!(list("0-1-4").extra_over(&list("0-1-4")).is_empty());
    }

    fn arb_list() -> impl Strategy<Value = GtidList> {
        // Few domains, servers and sequences, so that equal and prefix cases come up often.
        prop::collection::vec((0u32..3, 1u32..3, 0u64..6), 0..4).prop_map(|v| {
            v.into_iter()
                .map(|(domain, server, seq)| Gtid {
                    domain,
                    server,
                    seq,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(a in arb_list()) {
            prop_assert_eq!(a.to_string().parse::<GtidList>(), Ok(a));
        }

        #[test]
        fn prefix_is_reflexive(a in arb_list()) {
            prop_assert_eq!(a.compare(&a), History::Equal);
            prop_assert!(a.is_prefix_of(&a));
        }

        #[test]
        fn prefix_is_transitive(a in arb_list(), b in arb_list(), c in arb_list()) {
            if a.is_prefix_of(&b) && b.is_prefix_of(&c) {
                prop_assert!(a.is_prefix_of(&c), "{a} ≤ {b} ≤ {c}");
            }
        }

        #[test]
        fn prefix_both_ways_is_equality(a in arb_list(), b in arb_list()) {
            prop_assert_eq!(a.is_prefix_of(&b) && b.is_prefix_of(&a), a == b);
        }

        #[test]
        fn comparison_is_antisymmetric(a in arb_list(), b in arb_list()) {
            prop_assert_eq!(a.compare(&b), b.compare(&a).reverse());
        }

        #[test]
        fn nothing_extra_exactly_when_a_prefix(a in arb_list(), b in arb_list()) {
            prop_assert_eq!(a.extra_over(&b).is_empty(), a.is_prefix_of(&b));
        }

        #[test]
        fn advancing_never_goes_back(a in arb_list(), b in arb_list()) {
            let c = a.advanced_to(&b);
            prop_assert!(matches!(c.compare(&a), History::Equal | History::Ahead), "{c} from {a}");
            if a.is_prefix_of(&b) {
                prop_assert_eq!(c, b);
            }
        }
    }
}
