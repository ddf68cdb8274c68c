//! OSCAR's audit trail: one `log` row per sign-in and per authenticated read or write of a
//! patient (`LogAction.addLogSynchronous`), with who, what, which patient and from where.
//!
//! Reads of patient data are audited before the data is sent, and fail closed: a patient read
//! that cannot be recorded is refused. Writes are audited in the same transaction as the write.

use mysql_async::prelude::Queryable;

use crate::db::{Db, DbError};

/// OSCAR's `LogConst` actions.
pub const READ: &str = "read";
pub const ADD: &str = "add";
pub const UPDATE: &str = "update";
pub const DOWNLOAD: &str = "download";
/// OSCAR's `LogConst` content kinds.
pub const DEMOGRAPHIC: &str = "demographic";
pub const DOCUMENT: &str = "document";

/// One audit row. `data` is OSCAR's free-text column: never a patient's values, only what was
/// done (the operation, the fields changed).
#[derive(Debug, Clone, Default)]
pub struct Entry<'a> {
    pub provider_no: Option<&'a str>,
    pub security_no: Option<i32>,
    pub action: &'a str,
    pub content: Option<&'a str>,
    pub content_id: Option<String>,
    pub demographic_no: Option<i32>,
    pub ip: &'a str,
    pub data: Option<String>,
}

const INSERT: &str = "INSERT INTO `log` (`dateTime`, provider_no, action, content, contentId, ip, demographic_no, data, securityId)
     VALUES (NOW(), ?, ?, ?, ?, ?, ?, ?, ?)";

fn params(e: Entry<'_>) -> mysql_async::Params {
    (
        e.provider_no,
        e.action,
        e.content,
        e.content_id,
        e.ip,
        e.demographic_no,
        e.data,
        e.security_no,
    )
        .into()
}

/// Writes one row on its own connection.
pub async fn write(db: &Db, entry: Entry<'_>) -> Result<(), DbError> {
    let mut conn = db.conn().await?;
    conn.exec_drop(INSERT, params(entry)).await?;
    Ok(())
}

/// Writes one row inside the caller's transaction, so that the change and its record commit
/// together or not at all.
pub async fn write_in(
    tx: &mut mysql_async::Transaction<'_>,
    entry: Entry<'_>,
) -> Result<(), DbError> {
    tx.exec_drop(INSERT, params(entry)).await?;
    Ok(())
}
