//! Registering OAuth clients, as OSCAR's Admin → Integration → REST Clients page does
//! (`clientManage.json?method=add|list|delete`), for `oscar-emr oauth-client`.

use mysql_async::prelude::Queryable;
use rand::distr::{Distribution as _, Uniform};

use crate::db::{Db, DbError};

/// OSCAR makes keys and secrets of 16 characters from `[0-9a-z]`. Keys keep that form, so that
/// they look familiar; secrets are twice as long (about 165 bits), since they are all that
/// stands between a stolen key and patient records.
const KEY_LEN: usize = 16;
const SECRET_LEN: usize = 32;

fn random_lower_alnum(len: usize) -> String {
    const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let pick = Uniform::new(0, CHARS.len()).expect("a non-empty range");
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(CHARS[pick.sample(&mut rng)]))
        .collect()
}

/// A client as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: i32,
    pub name: String,
    pub key: String,
    pub uri: Option<String>,
    pub lifetime: i64,
    pub access_tokens: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("a client named {0:?} already exists; choose another name or remove it first")]
    NameTaken(String),
    #[error("--uri {0:?} is not an absolute http(s) address such as https://booking.example/ (callbacks must start with it)")]
    BadUri(String),
    #[error("no client with key {0:?}; `oscar-emr oauth-client list` shows the registered ones")]
    NoSuchKey(String),
    #[error("{0}")]
    Db(#[from] DbError),
}

impl From<mysql_async::Error> for ClientError {
    fn from(e: mysql_async::Error) -> Self {
        ClientError::Db(DbError::Sql(e))
    }
}

/// Registers a client; returns its key and secret (shown once, to the administrator).
pub async fn add(
    db: &Db,
    name: &str,
    uri: Option<&str>,
    lifetime_secs: i64,
) -> Result<(String, String), ClientError> {
    if let Some(u) = uri.filter(|u| super::http_url(u).is_none() || u.len() > 255) {
        return Err(ClientError::BadUri(u.to_owned()));
    }
    let mut conn = db.conn().await?;
    let taken: Option<i32> = conn
        .exec_first("SELECT id FROM ServiceClient WHERE name = ?", (name,))
        .await?;
    if taken.is_some() {
        return Err(ClientError::NameTaken(name.to_owned()));
    }
    let key = random_lower_alnum(KEY_LEN);
    let secret = random_lower_alnum(SECRET_LEN);
    conn.exec_drop(
        "INSERT INTO ServiceClient (name, clientKey, clientSecret, uri, lifetime, dateCreated) VALUES (?, ?, ?, ?, ?, NOW())",
        (name, &key, &secret, uri, lifetime_secs),
    )
    .await?;
    Ok((key, secret))
}

/// Every registered client, without secrets.
pub async fn list(db: &Db) -> Result<Vec<Listed>, ClientError> {
    let mut conn = db.conn().await?;
    let rows: Vec<(i32, String, String, Option<String>, Option<i64>, i64)> = conn
        .query(
            "SELECT c.id, c.name, c.clientKey, c.uri, c.lifetime,
                    (SELECT COUNT(*) FROM ServiceAccessToken t WHERE t.clientId = c.id)
             FROM ServiceClient c ORDER BY c.id",
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, key, uri, lifetime, access_tokens)| Listed {
            id,
            name,
            key,
            uri,
            lifetime: lifetime.unwrap_or(0),
            access_tokens,
        })
        .collect())
}

/// Removes a client and every token it holds, so that nothing it was given still works.
pub async fn remove(db: &Db, key: &str) -> Result<(), ClientError> {
    let mut conn = db.conn().await?;
    let id: Option<i32> = conn
        .exec_first("SELECT id FROM ServiceClient WHERE clientKey = ?", (key,))
        .await?;
    let Some(id) = id else {
        return Err(ClientError::NoSuchKey(key.to_owned()));
    };
    let mut tx = conn
        .start_transaction(mysql_async::TxOpts::default())
        .await?;
    tx.exec_drop("DELETE FROM ServiceAccessToken WHERE clientId = ?", (id,))
        .await?;
    tx.exec_drop("DELETE FROM ServiceRequestToken WHERE clientId = ?", (id,))
        .await?;
    tx.exec_drop("DELETE FROM ServiceClient WHERE id = ?", (id,))
        .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_secrets_have_oscars_alphabet() {
        let k = random_lower_alnum(KEY_LEN);
        assert_eq!(k.len(), 16);
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        assert_ne!(
            random_lower_alnum(SECRET_LEN),
            random_lower_alnum(SECRET_LEN)
        );
    }
}
