//! Patients in MariaDB: load, search and write `demographic` rows. Every value goes through a
//! placeholder; column names are constants; search text has its `LIKE` wildcards escaped, so
//! that a `%` or `_` in a search means the character, as a user typing it expects.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Transaction};
use oscar_emr_api::ProviderTo1;

use super::record::{self, Demographic, SELECT_COLUMNS};
use crate::db::DbError;

/// OSCAR's inactive patient statuses (inactive, deceased, moved, fired, ...): a patient with any
/// other status, a clinic's own included, counts as active.
const ACTIVE: &str =
    "(patient_status IS NULL OR patient_status NOT IN ('IN', 'DE', 'IC', 'ID', 'MO', 'FI'))";

/// `quickSearch` answers at most this many rows (OSCAR: "first 10"), with the full count.
pub const QUICK_SEARCH_ROWS: usize = 10;

fn decode(rows: Vec<Row>) -> Result<Vec<Demographic>, DbError> {
    rows.into_iter()
        .map(|r| record::from_row(r).map_err(|e| DbError::Row(e.to_string())))
        .collect()
}

/// `text` as a `LIKE` prefix pattern, its own wildcards escaped.
pub fn like_prefix(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

pub async fn load(conn: &mut Conn, id: i32) -> Result<Option<Demographic>, DbError> {
    let rows: Vec<Row> = conn
        .exec(
            format!("SELECT {SELECT_COLUMNS} FROM demographic WHERE demographic_no = ?"),
            (id,),
        )
        .await?;
    Ok(decode(rows)?.into_iter().next())
}

/// The row, locked until the transaction ends (an update reads, merges, then writes).
pub async fn load_for_update(
    tx: &mut Transaction<'_>,
    id: i32,
) -> Result<Option<Demographic>, DbError> {
    let rows: Vec<Row> = tx
        .exec(
            format!("SELECT {SELECT_COLUMNS} FROM demographic WHERE demographic_no = ? FOR UPDATE"),
            (id,),
        )
        .await?;
    Ok(decode(rows)?.into_iter().next())
}

/// Several patients in the order asked; unknown ids are skipped.
pub async fn load_many(conn: &mut Conn, ids: &[i32]) -> Result<Vec<Demographic>, DbError> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        if let Some(d) = load(conn, id).await? {
            out.push(d);
        }
    }
    Ok(out)
}

/// `searchDemographicByName` (OSCAR's `searchDemographicByNameString`): `LAST[,FIRST]`, each a
/// prefix, case-insensitive by collation; empty text matches everyone; no status filter.
pub async fn search_by_name(
    conn: &mut Conn,
    text: &str,
    start: u32,
    limit: u32,
) -> Result<Vec<Demographic>, DbError> {
    let (last, first) = match text.split_once(',') {
        Some((l, f)) => (l.trim(), Some(f.trim())),
        None => (text.trim(), None),
    };
    let rows: Vec<Row> = if text.trim().is_empty() {
        conn.exec(
            format!(
                "SELECT {SELECT_COLUMNS} FROM demographic ORDER BY demographic_no LIMIT ? OFFSET ?"
            ),
            (limit, start),
        )
        .await?
    } else {
        conn.exec(
            format!(
                "SELECT {SELECT_COLUMNS} FROM demographic
                 WHERE last_name LIKE ? AND (? IS NULL OR first_name LIKE ?)
                 ORDER BY demographic_no LIMIT ? OFFSET ?"
            ),
            (
                like_prefix(last),
                first,
                first.map(like_prefix),
                limit,
                start,
            ),
        )
        .await?
    };
    decode(rows)
}

/// What `quickSearch` looks in, from its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuickQuery<'a> {
    Address(&'a str),
    ChartNo(&'a str),
    Name {
        last: &'a str,
        first: Option<&'a str>,
    },
}

impl<'a> QuickQuery<'a> {
    /// OSCAR's prefixes: `addr:` searches addresses, `chartNo:` chart numbers, anything else is
    /// a name, `LAST[,FIRST]`.
    pub fn parse(query: &'a str) -> QuickQuery<'a> {
        let q = query.trim();
        if let Some(rest) = q.strip_prefix("addr:") {
            QuickQuery::Address(rest.trim())
        } else if let Some(rest) = q.strip_prefix("chartNo:") {
            QuickQuery::ChartNo(rest.trim())
        } else {
            match q.split_once(',') {
                Some((l, f)) => QuickQuery::Name {
                    last: l.trim(),
                    first: Some(f.trim()).filter(|f| !f.is_empty()),
                },
                None => QuickQuery::Name {
                    last: q,
                    first: None,
                },
            }
        }
    }
}

/// `quickSearch`: active patients only, the first [`QUICK_SEARCH_ROWS`] and the full count.
pub async fn quick_search(
    conn: &mut Conn,
    query: &QuickQuery<'_>,
) -> Result<(Vec<Demographic>, i64), DbError> {
    let (clause, params): (&str, Vec<mysql_async::Value>) = match query {
        QuickQuery::Address(t) => ("address LIKE ?", vec![like_prefix(t).into()]),
        QuickQuery::ChartNo(t) => ("chart_no LIKE ?", vec![like_prefix(t).into()]),
        QuickQuery::Name { last, first: None } => {
            ("last_name LIKE ?", vec![like_prefix(last).into()])
        }
        QuickQuery::Name {
            last,
            first: Some(first),
        } => (
            "last_name LIKE ? AND first_name LIKE ?",
            vec![like_prefix(last).into(), like_prefix(first).into()],
        ),
    };
    let filter = format!("WHERE {clause} AND {ACTIVE}");
    let rows: Vec<Row> = conn
        .exec(
            format!("SELECT {SELECT_COLUMNS} FROM demographic {filter} ORDER BY last_name, first_name, demographic_no LIMIT {QUICK_SEARCH_ROWS}"),
            params.clone(),
        )
        .await?;
    let total: Option<i64> = conn
        .exec_first(format!("SELECT COUNT(*) FROM demographic {filter}"), params)
        .await?;
    Ok((decode(rows)?, total.unwrap_or(0)))
}

/// The columns a write sets from the record: all but `lastUpdateDate`, which is always the
/// database's clock at the write.
fn written(d: &Demographic) -> Vec<(&'static str, mysql_async::Value)> {
    let mut cols = d.write_columns();
    cols.retain(|(name, _)| *name != "lastUpdateDate");
    cols
}

/// Inserts a new patient; returns its number.
pub async fn insert(tx: &mut Transaction<'_>, d: &Demographic) -> Result<i32, DbError> {
    let cols = written(d);
    let names: Vec<String> = cols.iter().map(|(n, _)| format!("`{n}`")).collect();
    let marks = vec!["?"; cols.len()].join(", ");
    let values: Vec<mysql_async::Value> = cols.into_iter().map(|(_, v)| v).collect();
    tx.exec_drop(
        format!(
            "INSERT INTO demographic ({}, lastUpdateDate) VALUES ({marks}, NOW())",
            names.join(", ")
        ),
        values,
    )
    .await?;
    tx.last_insert_id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| DbError::Row("no patient number was assigned".into()))
}

/// The columns whose values differ from `before` to `after`, with the new values.
pub fn changes(
    before: &Demographic,
    after: &Demographic,
) -> Vec<(&'static str, mysql_async::Value)> {
    written(before)
        .into_iter()
        .zip(written(after))
        .filter(|((_, a), (_, b))| a != b)
        .map(|(_, new)| new)
        .collect()
}

/// Writes the columns that differ between `before` (as read, under the row lock) and `after`.
/// Columns the client did not change are not written back: a value read lossily (bytes of an
/// imported OSCAR that are not UTF-8, a zero date) stays as it is in the database.
pub async fn update(
    tx: &mut Transaction<'_>,
    before: &Demographic,
    after: &Demographic,
) -> Result<(), DbError> {
    let changed = changes(before, after);
    let sets: String = changed
        .iter()
        .map(|(n, _)| format!("`{n}` = ?, "))
        .collect();
    let mut values: Vec<mysql_async::Value> = changed.into_iter().map(|(_, v)| v).collect();
    values.push(after.demographic_no.into());
    tx.exec_drop(
        format!("UPDATE demographic SET {sets}lastUpdateDate = NOW() WHERE demographic_no = ?"),
        values,
    )
    .await?;
    Ok(())
}

/// The provider a patient is assigned to, as `ProviderTo1`.
pub async fn provider(conn: &mut Conn, provider_no: &str) -> Result<Option<ProviderTo1>, DbError> {
    let row: Option<(String, String, String, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>)> = conn
        .exec_first(
            "SELECT provider_no, last_name, first_name, provider_type, specialty, status, sex, team, ohip_no
             FROM provider WHERE provider_no = ?",
            (provider_no,),
        )
        .await?;
    Ok(row.map(
        |(no, last, first, ptype, specialty, status, sex, team, ohip)| {
            let mut p = ProviderTo1::new(&no, &last, &first);
            p.provider_type = ptype;
            p.specialty = specialty;
            p.enabled = status.as_deref() == Some("1");
            p.sex = sex;
            p.team = team;
            p.ohip_no = ohip;
            p
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_prefix("O'Neil"), "O'Neil%");
        assert_eq!(like_prefix("50%_off\\"), "50\\%\\_off\\\\%");
        assert_eq!(like_prefix(""), "%");
    }

    #[test]
    fn quick_search_prefixes() {
        assert_eq!(
            QuickQuery::parse("addr:1 Main"),
            QuickQuery::Address("1 Main")
        );
        assert_eq!(QuickQuery::parse("chartNo:A12"), QuickQuery::ChartNo("A12"));
        assert_eq!(
            QuickQuery::parse("DOE, jo"),
            QuickQuery::Name {
                last: "DOE",
                first: Some("jo")
            }
        );
        assert_eq!(
            QuickQuery::parse("doe"),
            QuickQuery::Name {
                last: "doe",
                first: None
            }
        );
    }
}
