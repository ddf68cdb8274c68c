//! The restore drill: proof that the backups restore, taken the way a technician would restore.
//!
//! Every base backup records the checksums of its tables (`CHECKSUM TABLE`, read from a
//! scratch server on the prepared copy before it is saved). The drill restores the base before
//! the newest one and replays the binlog archive up to the newest base's position, then
//! compares the result's table checksums with the newest base's record: two independent copies
//! of the same moment, one made by `mariabackup` and one rebuilt from the archive, must agree.
//! With a single base, that base is restored and compared with its own record (the archive is
//! then not exercised, and the report says so). A sample of documents is restored from the
//! newest documents snapshot and compared byte for byte with the live files that have not
//! changed since. The report is written to `<state>/backup/drill-report`; the outcome goes to
//! the backup state for the status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mysql_async::prelude::Queryable as _;
use oscarbox_config::Config;

use crate::pitr::{self, Target};
use crate::repo::{DATABASE, DATABASE_TAG, DOCUMENTS, DOCUMENTS_TAG};
use crate::state::State;

/// The file a base backup carries its table checksums in (`db.table checksum` lines).
pub const CHECKSUMS: &str = "oscarbox-checksums";
/// How many documents the drill restores and compares.
const SAMPLE: usize = 5;

/// Table checksums: `db.table` → checksum (`NULL` for a table that has none).
pub type Checksums = BTreeMap<String, String>;

/// The checksum of every table outside MariaDB's own schemas, through root on `socket`.
pub async fn checksums(socket: &Path) -> Result<Checksums, String> {
    let mut conn = mysql_async::Conn::new(oscarbox_mariadb::root_opts(socket))
        .await
        .map_err(|e| format!("the scratch server: {e}"))?;
    let tables: Vec<(String, String)> = conn
        .query(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys') \
             ORDER BY table_schema, table_name",
        )
        .await
        .map_err(|e| format!("listing the tables: {e}"))?;
    let mut out = Checksums::new();
    for (db, table) in tables {
        let name = format!("`{}`.`{}`", db.replace('`', "``"), table.replace('`', "``"));
        let row: Option<(String, Option<u64>)> = conn
            .query_first(format!("CHECKSUM TABLE {name}"))
            .await
            .map_err(|e| format!("CHECKSUM TABLE {name}: {e}"))?;
        let sum = row
            .and_then(|(_, s)| s)
            .map_or("NULL".to_owned(), |s| s.to_string());
        out.insert(format!("{db}.{table}"), sum);
    }
    let _ = conn.disconnect().await;
    Ok(out)
}

pub fn to_text(sums: &Checksums) -> String {
    sums.iter().map(|(t, s)| format!("{t} {s}\n")).collect()
}

pub fn parse(text: &str) -> Checksums {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(t, s)| (t.to_owned(), s.to_owned()))
        .collect()
}

/// The differences between what was recorded and what the restore holds, in words.
pub fn compare(recorded: &Checksums, restored: &Checksums) -> Vec<String> {
    let mut out = Vec::new();
    for (t, want) in recorded {
        match restored.get(t) {
            None => out.push(format!("{t}: missing from the restore")),
            Some(got) if got != want => {
                out.push(format!("{t}: checksum {got}, recorded {want}"));
            }
            Some(_) => {}
        }
    }
    for t in restored.keys().filter(|t| !recorded.contains_key(*t)) {
        out.push(format!("{t}: in the restore but not in the record"));
    }
    out
}

/// What a drill found.
#[derive(Debug, Clone)]
pub struct Report {
    pub passed: bool,
    pub text: String,
}

/// Runs a drill now (the backup disk must be this box's), records it, and returns the report.
pub async fn run(config: &Config) -> Result<Report, String> {
    crate::documents::guard_for_upkeep(config).await?;
    let repo = crate::documents::open(config).await?;
    let r = std::sync::Arc::clone(&repo);
    let bases = tokio::task::spawn_blocking(move || r.snapshots(Some(DATABASE_TAG)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let Some(newest) = bases.last().cloned() else {
        return Err("there is no database base backup to drill yet".into());
    };
    let target: Target = match newest.gtid().and_then(|g| g.parse().ok()) {
        Some(g) => Target::Gtid(g),
        None => return Err(format!("base backup {} has no position", newest.short_id)),
    };
    let scratch = config
        .backup
        .disk
        .join("scratch")
        .join(format!("drill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let result = drill(config, &repo, &bases, &newest, &target, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let report = match result {
        Ok(r) => r,
        Err(why) => Report {
            passed: false,
            text: format!("FAILED: {why}\n"),
        },
    };
    let state_dir = config.box_.state_dir.join("backup");
    let _ = std::fs::create_dir_all(&state_dir);
    let stamped = format!(
        "OSCAR Box restore drill, {}\n{}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        report.text
    );
    if let Err(e) =
        oscarbox_common::write_private(&state_dir.join("drill-report"), stamped.as_bytes())
    {
        tracing::warn!("cannot write the drill report: {e}");
    }
    let (now, passed) = (crate::state::unix_now(), report.passed);
    State::update(&State::path(&config.box_.state_dir), |s| {
        s.drill_last = Some(now);
        s.drill_passed = Some(passed);
    });
    Ok(report)
}

async fn drill(
    config: &Config,
    repo: &crate::repo::Repo,
    bases: &[crate::repo::Snapshot],
    newest: &crate::repo::Snapshot,
    target: &Target,
    scratch: &Path,
) -> Result<Report, String> {
    let mut text = String::new();
    let mut passed = true;
    // The record: the newest base's checksums.
    let record_dir = scratch.join("record");
    let (r, id, dest) = (repo.clone(), newest.id.clone(), record_dir.clone());
    tokio::task::spawn_blocking(move || r.restore(&id, &format!("{DATABASE}/{CHECKSUMS}"), &dest))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "base backup {} carries no table checksums ({e})",
                newest.short_id
            )
        })?;
    let recorded = parse(
        &std::fs::read_to_string(record_dir.join(CHECKSUMS))
            .map_err(|e| format!("the recorded checksums: {e}"))?,
    );
    // From the base before it, replaying the archive; or from itself when it is the only one.
    // Only bases of the newest's own history: a restore that replaced the live database
    // started a new one.
    let dir = crate::archive::dir(config);
    let (scanned, replaced) = tokio::task::spawn_blocking(move || {
        Ok::<_, String>((pitr::scan_archive(&dir)?, pitr::replacements(&dir)?))
    })
    .await
    .map_err(|e| e.to_string())??;
    let older: Vec<crate::repo::Snapshot> = bases[..bases.len().saturating_sub(1)]
        .iter()
        .filter(|b| pitr::same_history(b, target, &replaced))
        .cloned()
        .collect();
    // With no older base of its history, the newest is compared with its own record; its
    // target is its own position, so nothing is replayed and no history is crossed.
    let plan = if older.is_empty() {
        pitr::plan(std::slice::from_ref(newest), &scanned, target, &[])?
    } else {
        pitr::plan(&older, &scanned, target, &replaced)?
    };
    let data = scratch.join("data");
    pitr::restore(config, &plan, &data, &|_| {}).await?;
    let restored = pitr::with_scratch_server(&data, &scratch.join("work"), |socket| async move {
        checksums(&socket).await
    })
    .await??;
    let differences = compare(&recorded, &restored);
    text.push_str(&format!(
        "database: base {} ({}) restored{}, compared with the {} table checksums recorded by base {} at {}: ",
        plan.base.short_id,
        plan.base.gtid().unwrap_or("?"),
        if plan.replayed > 0 {
            format!(" and {} archived transaction(s) replayed", plan.replayed)
        } else if older.is_empty() {
            " (the only base: the binlog archive was not exercised)".to_owned()
        } else {
            " (no transaction between the two bases)".to_owned()
        },
        recorded.len(),
        newest.short_id,
        newest.gtid().unwrap_or("?"),
    ));
    if differences.is_empty() {
        text.push_str("all match\n");
    } else {
        passed = false;
        text.push_str(&format!("{} differ\n", differences.len()));
        for d in differences {
            text.push_str(&format!("  {d}\n"));
        }
    }
    let (docs_passed, docs_text) = documents_sample(config, repo, scratch).await?;
    passed &= docs_passed;
    text.push_str(&docs_text);
    text.push_str(if passed { "PASSED\n" } else { "FAILED\n" });
    Ok(Report { passed, text })
}

/// Restores a few documents from the newest documents snapshot and compares them with the
/// live files that have not changed since it was taken.
async fn documents_sample(
    config: &Config,
    repo: &crate::repo::Repo,
    scratch: &Path,
) -> Result<(bool, String), String> {
    let r = repo.clone();
    let snaps = tokio::task::spawn_blocking(move || r.snapshots(Some(DOCUMENTS_TAG)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let Some(newest) = snaps.last().cloned() else {
        return Ok((true, "documents: no snapshot yet, none compared\n".into()));
    };
    let live = config.emr.documents_dir.clone();
    let taken = newest.unix_seconds;
    let (root, r, id, scratch) = (live, repo.clone(), newest.id.clone(), scratch.to_path_buf());
    // A walk of the documents tree and file reads: on the blocking pool.
    let (sample, bad) = tokio::task::spawn_blocking(move || {
        let sample = unchanged_since(&root, taken);
        let mut bad = Vec::new();
        for (i, file) in sample.iter().enumerate() {
            let Ok(rel) = file.strip_prefix(&root) else {
                continue;
            };
            let inside = format!("{DOCUMENTS}/{}", rel.to_string_lossy());
            let dest = scratch.join(format!("doc-{i}"));
            let restored = r.restore(&id, &inside, &dest);
            let name = rel.file_name().map(|n| dest.join(n));
            let same = restored.is_ok()
                && name.is_some_and(|n| std::fs::read(n).ok() == std::fs::read(file).ok());
            if !same {
                bad.push(rel.display().to_string());
            }
        }
        (sample, bad)
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(if bad.is_empty() {
        (
            true,
            format!(
                "documents: {} file(s) restored from snapshot {} and identical to the live ones\n",
                sample.len(),
                newest.short_id
            ),
        )
    } else {
        (
            false,
            format!(
                "documents: {} of {} restored file(s) differ from the live ones: {}\n",
                bad.len(),
                sample.len(),
                bad.join(", ")
            ),
        )
    })
}

/// Up to [`SAMPLE`] files under `root`, spread over the tree, last changed before `taken`
/// (Unix seconds): what a snapshot taken then must hold as they are now.
fn unchanged_since(root: &Path, taken: i64) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => {
                    let modified = m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .and_then(|d| i64::try_from(d.as_secs()).ok());
                    if modified.is_some_and(|t| t < taken) {
                        candidates.push(e.path());
                    }
                }
                _ => {}
            }
        }
    }
    candidates.sort();
    let step = (candidates.len() / SAMPLE).max(1);
    candidates.into_iter().step_by(step).take(SAMPLE).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_round_trip_and_every_difference_is_named() {
        let recorded = parse("oscar.a 12\noscar.b 7\noscar.c NULL\n");
        assert_eq!(parse(&to_text(&recorded)), recorded);
        assert!(compare(&recorded, &recorded).is_empty());
        let restored = parse("oscar.a 12\noscar.b 8\noscar.d 1\n");
        assert_eq!(
            compare(&recorded, &restored),
            [
                "oscar.b: checksum 8, recorded 7",
                "oscar.c: missing from the restore",
                "oscar.d: in the restore but not in the record"
            ]
        );
    }
}
