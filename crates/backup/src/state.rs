//! What the backups last did, in a small text file under the state directory
//! (`<state>/backup/state`, `key: value` lines), written by the watchdog's backup loop and the
//! `oscarbox backup` commands, read by the box's status.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The newest documents snapshot: when (Unix seconds) and its short id.
    pub documents_last: Option<i64>,
    pub documents_last_id: Option<String>,
    /// The last repository check: when, and what it found wrong (none: sound).
    pub check_last: Option<i64>,
    pub check_problem: Option<String>,
    /// The last moment the binlog archive was known current (connected, or closing a
    /// session).
    pub database_last: Option<i64>,
    /// The last restore drill: when, and whether it passed.
    pub drill_last: Option<i64>,
    pub drill_passed: Option<bool>,
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl State {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("backup").join("state")
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push_str(&format!("{k}: {}\n", v.replace('\n', " ")));
            }
        };
        line("documents-last", self.documents_last.map(|t| t.to_string()));
        line("documents-last-id", self.documents_last_id.clone());
        line("check-last", self.check_last.map(|t| t.to_string()));
        line("check-problem", self.check_problem.clone());
        line("database-last", self.database_last.map(|t| t.to_string()));
        line("drill-last", self.drill_last.map(|t| t.to_string()));
        line("drill-passed", self.drill_passed.map(|p| p.to_string()));
        out
    }

    /// Reads the state's text; unknown or damaged lines are ignored.
    pub fn parse(text: &str) -> State {
        let mut s = State::default();
        for l in text.lines() {
            let Some((k, v)) = l.split_once(": ") else {
                continue;
            };
            match k {
                "documents-last" => s.documents_last = v.parse().ok(),
                "documents-last-id" => s.documents_last_id = Some(v.to_owned()),
                "check-last" => s.check_last = v.parse().ok(),
                "check-problem" => s.check_problem = Some(v.to_owned()),
                "database-last" => s.database_last = v.parse().ok(),
                "drill-last" => s.drill_last = v.parse().ok(),
                "drill-passed" => s.drill_passed = v.parse().ok(),
                _ => {}
            }
        }
        s
    }

    /// The state at `path`, or the default when there is none yet.
    pub fn read(path: &Path) -> State {
        std::fs::read_to_string(path)
            .map(|t| State::parse(&t))
            .unwrap_or_default()
    }

    /// Reads, changes and writes back the state (best effort: a failure is logged; the state
    /// only informs the status).
    pub fn update(path: &Path, change: impl FnOnce(&mut State)) {
        // The documents loop and the binlog archive both write it: one at a time.
        static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = WRITING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut s = State::read(path);
        change(&mut s);
        if let Err(e) = oscarbox_common::write_private(path, s.to_text().as_bytes()) {
            tracing::warn!(
                "failed to record the backup state in {}: {e}",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_damage() {
        let s = State {
            documents_last: Some(1_795_460_568),
            documents_last_id: Some("a1b2c3d4".into()),
            check_last: Some(1_795_460_000),
            check_problem: Some("pack 12ab: hash mismatch\nsecond line".into()),
            database_last: Some(1_795_460_600),
            drill_last: Some(1_795_460_700),
            drill_passed: Some(false),
        };
        let back = State::parse(&s.to_text());
        assert_eq!(back.documents_last, s.documents_last);
        assert_eq!(back.database_last, s.database_last);
        assert_eq!(back.drill_passed, Some(false));
        assert_eq!(
            back.check_problem.as_deref(),
            Some("pack 12ab: hash mismatch second line")
        );
        assert_eq!(
            State::parse("garbage\ndocuments-last: x\n"),
            State::default()
        );
    }
}
