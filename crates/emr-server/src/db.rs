//! The MariaDB pool: bounded, with timeouts, and error descriptions that carry no patient data.

use std::time::Duration;

use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use oscarbox_config::Config;

/// Why a database call failed, in words that are safe to log.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database connection within {0:?}")]
    Timeout(Duration),
    #[error("{}", describe(.0))]
    Sql(#[from] mysql_async::Error),
    /// A row of an unexpected shape; the message names columns, never values.
    #[error("unexpected row: {0}")]
    Row(String),
}

/// A description of a MariaDB error without the server's message, which can quote row values
/// (a duplicate key error names the duplicated value): codes and states only.
pub fn describe(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("server error {} (SQLSTATE {})", s.code, s.state),
        mysql_async::Error::Io(io) => format!("connection error: {io}"),
        mysql_async::Error::Driver(d) => format!("driver error: {d}"),
        mysql_async::Error::Url(u) => format!("bad database URL: {u}"),
        mysql_async::Error::Other(_) => "unexpected database error".to_owned(),
    }
}

/// The pool, with the acquire timeout every caller goes through.
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
    acquire_timeout: Duration,
}

impl Db {
    pub fn new(config: &Config, password: &str) -> Db {
        let max = config.emr.db_pool_max.get() as usize;
        let constraints = PoolConstraints::new(0, max).expect("0 <= max holds for any max");
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(Duration::from_secs(60));
        let opts: Opts = OptsBuilder::default()
            .ip_or_hostname(config.database.endpoint.ip().to_string())
            .tcp_port(config.database.endpoint.port())
            .user(Some(config.database.app_user.clone()))
            .pass(Some(password.to_owned()))
            .db_name(Some(config.database.name.clone()))
            .prefer_socket(false)
            .pool_opts(pool_opts)
            .into();
        Db {
            pool: Pool::new(opts),
            acquire_timeout: config.emr.db_connect_timeout,
        }
    }

    /// A connection, or [`DbError::Timeout`] when none comes in time (a hung or failed-over
    /// database must not hang every request with it).
    pub async fn conn(&self) -> Result<Conn, DbError> {
        match tokio::time::timeout(self.acquire_timeout, self.pool.get_conn()).await {
            Ok(conn) => Ok(conn?),
            Err(_) => Err(DbError::Timeout(self.acquire_timeout)),
        }
    }

    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }
}

/// A `DATE`/`DATETIME` value as a time in the box's zone, the way OSCAR's JVM reads them.
/// MariaDB's zero date and NULL are `None`.
pub fn local_time(v: Option<mysql_async::Value>) -> Option<jiff::Zoned> {
    civil_date_time(v?)?
        .to_zoned(jiff::tz::TimeZone::system())
        .ok()
}

/// A `DATETIME` value (a `DATE` at midnight) as the wall-clock time stored, from either of the
/// protocols' encodings. MariaDB's zero date, NULL and anything unreadable are `None`.
pub fn civil_date_time(v: mysql_async::Value) -> Option<jiff::civil::DateTime> {
    use mysql_async::Value;
    match v {
        Value::Date(y, mo, d, h, mi, s, us) => {
            if y == 0 || mo == 0 || d == 0 {
                return None;
            }
            jiff::civil::DateTime::new(
                i16::try_from(y).ok()?,
                i8::try_from(mo).ok()?,
                i8::try_from(d).ok()?,
                i8::try_from(h).ok()?,
                i8::try_from(mi).ok()?,
                i8::try_from(s).ok()?,
                i32::try_from(us).ok()?.checked_mul(1000)?,
            )
            .ok()
        }
        Value::Bytes(b) => {
            let s = std::str::from_utf8(&b).ok()?.trim();
            // jiff accepts the space MariaDB puts between date and time.
            s.parse::<jiff::civil::DateTime>().ok().or_else(|| {
                s.parse::<jiff::civil::Date>()
                    .ok()
                    .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
            })
        }
        _ => None,
    }
}
