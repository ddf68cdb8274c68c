//! The two repairs of a node that cannot follow the primary: save what only it has, as SQL a
//! person can review, then rebuild it from the primary with `mariabackup`.
//!
//! Nothing a clinician wrote vanishes silently: the diverged node's binlog events that the
//! primary lacks are listed GTID by GTID (positions alone cannot see a divergence below the
//! last GTID: `0-1-165` on one node and `0-2-165` on the other have the same number), the
//! binlog files holding them are decoded to SQL with stock `mariadb-binlog`, and the node's
//! whole data directory is kept beside the new one until a person deletes it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mysql_async::prelude::Queryable;

use crate::node::{PairNode, StepError};

/// A GTID as `SHOW BINLOG EVENTS` prints it, and the binlog file it is in.
type Located = (String, String);

/// Every GTID in a node's binlogs, with its file. Reads the whole binlog: bounded by the
/// binlog retention, and run only when a node has already failed to follow.
async fn binlog_gtids(node: &PairNode) -> Result<Vec<Located>, StepError> {
    let id = node.id;
    let sql = |source| StepError::Sql { node: id, source };
    let mut conn = node.conn().await?;
    let files: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.map_err(sql)?;
    let files: Vec<String> = files
        .into_iter()
        .filter_map(|r| r.get_opt::<String, _>(0).and_then(Result::ok))
        .collect();
    let mut out = Vec::new();
    for file in files {
        let events: Vec<mysql_async::Row> = conn
            .query(format!(
                "SHOW BINLOG EVENTS IN '{}'",
                file.replace('\'', "")
            ))
            .await
            .map_err(sql)?;
        for e in events {
            let kind: Option<String> = e.get_opt("Event_type").and_then(Result::ok);
            let info: Option<String> = e.get_opt("Info").and_then(Result::ok);
            if kind.as_deref() == Some("Gtid") {
                // "BEGIN GTID 0-1-165" or "GTID 0-1-165" (DDL).
                if let Some(gtid) = info
                    .as_deref()
                    .and_then(|i| i.split_whitespace().find(|w| w.matches('-').count() == 2))
                {
                    out.push((gtid.to_owned(), file.clone()));
                }
            }
        }
    }
    let _ = conn.disconnect().await;
    Ok(out)
}

/// Saves `node`'s transactions that `primary` lacks under `dir`: a `README.txt` listing their
/// GTIDs, the SQL of the binlog files that hold them (decoded with `mariadb-binlog`), and a
/// copy of those files. Returns the GTIDs saved (none: nothing diverged).
pub async fn preserve_extra(
    node: &PairNode,
    primary: &PairNode,
    dir: &Path,
) -> Result<Vec<String>, StepError> {
    let theirs: BTreeSet<String> = binlog_gtids(primary)
        .await?
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    let extra: Vec<Located> = binlog_gtids(node)
        .await?
        .into_iter()
        .filter(|(g, _)| !theirs.contains(g))
        .collect();
    if extra.is_empty() {
        return Ok(Vec::new());
    }
    let files: BTreeSet<&String> = extra.iter().map(|(_, f)| f).collect();
    std::fs::create_dir_all(dir)
        .map_err(|e| StepError::Other(format!("create {}: {e}", dir.display())))?;
    let mut readme = format!(
        "{} had these transactions that {} lacked when it was rebuilt from it:\n",
        node.id, primary.id
    );
    for (g, f) in &extra {
        readme.push_str(&format!("  {g}  (in {f})\n"));
    }
    readme.push_str("\nTheir SQL is in the .sql files beside this one (search for the GTIDs above); the binlog files themselves are copied here too. Review them with the clinic before re-entering anything.\n");
    oscarbox_common::write_private(&dir.join("README.txt"), readme.as_bytes())
        .map_err(|e| StepError::Other(format!("write the review notes: {e}")))?;
    for file in files {
        let source = node.spec.data_dir.join(file);
        let copy = dir.join(file);
        std::fs::copy(&source, &copy)
            .map_err(|e| StepError::Other(format!("copy a binlog file: {e}")))?;
        let out = tokio::process::Command::new("mariadb-binlog")
            .arg("--base64-output=decode-rows")
            .arg("--verbose")
            .arg(&copy)
            .output()
            .await
            .map_err(|e| {
                StepError::Other(format!("run mariadb-binlog (install mariadb-client): {e}"))
            })?;
        if !out.status.success() {
            return Err(StepError::Other(format!(
                "mariadb-binlog failed with {}",
                out.status
            )));
        }
        oscarbox_common::write_private(&dir.join(format!("{file}.sql")), &out.stdout)
            .map_err(|e| StepError::Other(format!("write the SQL for review: {e}")))?;
    }
    tracing::warn!(
        alert = true,
        node = %node.id,
        transactions = extra.len(),
        saved = %dir.display(),
        "a node had transactions its new primary lacks; they are saved for a person to review"
    );
    Ok(extra.into_iter().map(|(g, _)| g).collect())
}

/// Replaces `node`'s data directory (it must be stopped) with a prepared `mariabackup` of
/// `from`; the old directory is kept as `<data>.replaced-<unix time>`. Returns the GTID
/// position the backup holds, from which the node replicates.
pub async fn rebuild_data_dir(node: &PairNode, from: &PairNode) -> Result<String, StepError> {
    let data = &node.spec.data_dir;
    let scratch: PathBuf = data.with_extension("rebuild");
    let _ = std::fs::remove_dir_all(&scratch);
    oscarbox_mariadb::backup::prepared_copy(&from.spec.socket, &scratch)
        .await
        .map_err(StepError::Other)?;
    let gtid = oscarbox_mariadb::backup::copy_position(&scratch).ok_or_else(|| {
        StepError::Other("read the backup's binlog position: the copy recorded none".into())
    })?;
    let stamp = crate::executor::unix_seconds();
    if std::fs::symlink_metadata(data).is_ok() {
        let kept = data.with_extension(format!("replaced-{stamp}"));
        std::fs::rename(data, &kept)
            .map_err(|e| StepError::Other(format!("set the old data aside: {e}")))?;
        tracing::warn!(alert = true, node = %node.id, kept = %kept.display(), "the node's old data directory is kept for review; delete it once nothing in it is needed");
    }
    std::fs::rename(&scratch, data)
        .map_err(|e| StepError::Other(format!("put the rebuilt data in place: {e}")))?;
    Ok(gtid)
}
