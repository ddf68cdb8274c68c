//! Versioned, idempotent schema migrations, safe when several instances start at once.
//!
//! Instances serialize on a MariaDB named lock (`GET_LOCK`), so exactly one applies each
//! migration while the others wait and then find nothing to do. Each applied migration is
//! recorded with a checksum of its SQL; an edited migration, or a database migrated by a newer
//! `oscar-emr`, is refused with a message saying what to do.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use sha1::{Digest, Sha1};

use crate::db::{describe, DbError};

/// One migration: a version, a name and semicolon-separated idempotent statements.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Append only: never edit one that has shipped.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "oscar core schema",
        sql: include_str!("../migrations/0001_oscar_core.sql"),
    },
    Migration {
        version: 2,
        name: "oscarbox support tables",
        sql: include_str!("../migrations/0002_oscarbox_support.sql"),
    },
    Migration {
        version: 3,
        name: "clinical api: oauth, sessions, document hashes",
        sql: include_str!("../migrations/0003_clinical_api.sql"),
    },
];

const LOCK_NAME: &str = "oscarbox.migrations";
const LOCK_WAIT_SECONDS: u32 = 120;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("{0}")]
    Db(#[from] DbError),
    #[error("another instance held the migration lock for over {LOCK_WAIT_SECONDS} s; check for a stuck oscar-emr")]
    LockTimeout,
    #[error("the database was migrated to version {found} by a newer oscar-emr (this one knows up to {known}); upgrade oscar-emr on this box")]
    TooNew { found: u32, known: u32 },
    #[error("migration {version} ({name}) in the database differs from the one built into this oscar-emr; restore the original migration file")]
    Edited { version: u32, name: &'static str },
    #[error("cannot write the administrator's initial credentials to {}: {cause}", path.display())]
    Credentials {
        path: std::path::PathBuf,
        cause: String,
    },
    #[error("migration {version} ({name}) failed: {cause}")]
    Failed {
        version: u32,
        name: &'static str,
        cause: String,
    },
}

impl From<mysql_async::Error> for MigrationError {
    fn from(e: mysql_async::Error) -> Self {
        MigrationError::Db(DbError::Sql(e))
    }
}

fn checksum(sql: &str) -> String {
    Sha1::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Splits a migration into statements: comment lines out first (they may hold semicolons),
/// then on `;`. Our migration files hold no semicolons inside strings or bodies (no
/// procedures), which a unit test checks.
fn statements(sql: &str) -> Vec<String> {
    let code: Vec<&str> = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What [`apply`] did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub applied: Vec<u32>,
}

/// Takes the box-wide migration lock on `conn`, waiting up to two minutes for another instance.
pub async fn lock(conn: &mut Conn) -> Result<(), MigrationError> {
    let got: Option<Option<i64>> = conn
        .exec_first("SELECT GET_LOCK(?, ?)", (LOCK_NAME, LOCK_WAIT_SECONDS))
        .await?;
    if got.flatten() != Some(1) {
        return Err(MigrationError::LockTimeout);
    }
    Ok(())
}

/// Releases the lock (closing the connection would release it too).
pub async fn unlock(conn: &mut Conn) {
    let _ = conn.exec_drop("SELECT RELEASE_LOCK(?)", (LOCK_NAME,)).await;
}

/// Applies every pending migration. Call it between [`lock`] and [`unlock`].
pub async fn apply(conn: &mut Conn) -> Result<Outcome, MigrationError> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS oscarbox_schema_migrations (
           version int NOT NULL PRIMARY KEY,
           name varchar(100) NOT NULL,
           checksum char(40) NOT NULL,
           applied_at datetime NOT NULL
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    )
    .await?;
    let applied: Vec<(u32, String)> = conn
        .query("SELECT version, checksum FROM oscarbox_schema_migrations ORDER BY version")
        .await?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(&(found, _)) = applied.iter().find(|(v, _)| *v > known) {
        return Err(MigrationError::TooNew { found, known });
    }
    let mut outcome = Outcome::default();
    for m in MIGRATIONS {
        let sum = checksum(m.sql);
        if let Some((_, recorded)) = applied.iter().find(|(v, _)| *v == m.version) {
            if *recorded != sum {
                return Err(MigrationError::Edited {
                    version: m.version,
                    name: m.name,
                });
            }
            continue;
        }
        for stmt in statements(m.sql) {
            conn.query_drop(stmt)
                .await
                .map_err(|e| MigrationError::Failed {
                    version: m.version,
                    name: m.name,
                    // Our own DDL: the server's message quotes our SQL, not patient data.
                    cause: match &e {
                        mysql_async::Error::Server(s) => format!("{}: {}", describe(&e), s.message),
                        _ => describe(&e),
                    },
                })?;
        }
        conn.exec_drop(
            "INSERT INTO oscarbox_schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, NOW())",
            (m.version, m.name, sum),
        )
        .await?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied database migration"
        );
        outcome.applied.push(m.version);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_statements_split_cleanly() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                m.version as usize,
                i + 1,
                "migration versions are 1, 2, 3, ..."
            );
            for stmt in statements(m.sql) {
                assert!(
                    stmt.starts_with("CREATE TABLE IF NOT EXISTS")
                        || stmt.starts_with("CREATE INDEX IF NOT EXISTS")
                        || stmt.starts_with("INSERT IGNORE")
                        || stmt.starts_with("ALTER TABLE"),
                    "migration {} has a statement that is not obviously idempotent: {stmt}",
                    m.version
                );
                // A semicolon inside a string literal would split it and leave an odd count.
                assert_eq!(
                    stmt.matches('\'').count() % 2,
                    0,
                    "migration {} splits inside a string: {stmt}",
                    m.version
                );
            }
        }
    }
}
