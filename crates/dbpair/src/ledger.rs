//! The promotion ledger: the newest promotion epoch and the node that holds it, on disk.
//!
//! Only the node the ledger names may ever be made writable, so the ledger is written before
//! any promotion (fsync, atomic rename, directory fsync: a crash leaves the old ledger or the
//! new one, never half of one) and read back before every step that clears `read_only`. An
//! epoch never goes backwards: a write that would lower it is refused.
//!
//! The format is a few lines of text, versioned, so that a person restoring a box at night can
//! read it with `cat`:
//!
//! ```text
//! oscarbox promotion ledger v1
//! epoch = 7
//! primary = B
//! ```

use std::path::{Path, PathBuf};

use oscarbox_failover::{Ledger, NodeId};

const HEADER: &str = "oscarbox promotion ledger v1";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot read the promotion ledger {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the promotion ledger {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the promotion ledger {} is damaged ({what}); do not start the database pair until a person has looked: restore it from the backup disk, or write it by hand from the incident reports", path.display())]
    Damaged { path: PathBuf, what: String },
    #[error("refused to move the promotion epoch back from {current} to {proposed}")]
    Backwards { current: u64, proposed: u64 },
}

/// Parses a ledger's text.
pub fn parse(text: &str) -> Result<Ledger, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some(HEADER) {
        return Err(format!("the first line is not {HEADER:?}"));
    }
    let (mut epoch, mut primary) = (None, None);
    for line in lines {
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("a line is not `key = value`: {line:?}"));
        };
        match (key.trim(), value.trim()) {
            ("epoch", v) => {
                epoch = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("epoch {v:?} is not a whole number"))?,
                );
            }
            ("primary", "A") => primary = Some(NodeId::A),
            ("primary", "B") => primary = Some(NodeId::B),
            ("primary", v) => return Err(format!("primary {v:?} is not A or B")),
            (k, _) => return Err(format!("unknown key {k:?}")),
        }
    }
    match (epoch, primary) {
        (Some(epoch), Some(primary)) => Ok(Ledger { epoch, primary }),
        (None, _) => Err("no epoch line".into()),
        (_, None) => Err("no primary line".into()),
    }
}

/// A ledger's text.
pub fn render(ledger: &Ledger) -> String {
    let primary = match ledger.primary {
        NodeId::A => "A",
        NodeId::B => "B",
    };
    format!("{HEADER}\nepoch = {}\nprimary = {primary}\n", ledger.epoch)
}

/// The ledger at `path`, or `None` when the pair was never set up.
pub fn read(path: &Path) -> Result<Option<Ledger>, LedgerError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map(Some).map_err(|what| LedgerError::Damaged {
            path: path.to_owned(),
            what,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LedgerError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `next` durably, unless it would move the epoch backwards (a same-epoch rewrite of
/// the same holder is allowed, so that a step retried after a crash is idempotent).
pub fn write(path: &Path, next: &Ledger) -> Result<(), LedgerError> {
    if let Some(current) = read(path)? {
        let same = current == *next;
        if next.epoch < current.epoch || (next.epoch == current.epoch && !same) {
            return Err(LedgerError::Backwards {
                current: current.epoch,
                proposed: next.epoch,
            });
        }
    }
    oscarbox_common::write_private(path, render(next).as_bytes()).map_err(|source| {
        LedgerError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_to_go_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db/ledger");
        assert!(read(&path).expect("read").is_none(), "never set up");
        let first = Ledger {
            epoch: 1,
            primary: NodeId::A,
        };
        write(&path, &first).expect("write");
        assert_eq!(read(&path).expect("read"), Some(first));
        write(&path, &first).expect("the same ledger again is a no-op");
        let next = Ledger {
            epoch: 2,
            primary: NodeId::B,
        };
        write(&path, &next).expect("forward");
        assert!(matches!(
            write(&path, &first),
            Err(LedgerError::Backwards {
                current: 2,
                proposed: 1
            })
        ));
        let other_holder = Ledger {
            epoch: 2,
            primary: NodeId::A,
        };
        assert!(
            write(&path, &other_holder).is_err(),
            "one epoch has one holder"
        );
        assert_eq!(read(&path).expect("read"), Some(next));
    }

    #[test]
    fn damage_is_named() {
        for (text, what) in [
            ("", "first line"),
            (
                "oscarbox promotion ledger v1\nepoch = x\nprimary = A\n",
                "whole number",
            ),
            ("oscarbox promotion ledger v1\nepoch = 3\n", "no primary"),
            (
                "oscarbox promotion ledger v1\nepoch = 3\nprimary = C\n",
                "not A or B",
            ),
            (
                "oscarbox promotion ledger v1\nepoch = 3\nprimary = A\ncolour = red\n",
                "unknown key",
            ),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(what), "{text:?}: {err}");
        }
    }
}
