//! The first administrator account, created once on a fresh database.
//!
//! Stock OSCAR ships `oscardoc` with the well-known password `mac2002`; we keep the familiar
//! user name and provider number but generate the password and PIN, print them once on the
//! console, and require a change at first sign-in.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rand::distr::{Alphanumeric, SampleString as _};
use rand::Rng as _;

use crate::auth::hash_password;
use crate::migrations::MigrationError;

pub const ADMIN_USER: &str = "oscardoc";
pub const ADMIN_PROVIDER_NO: &str = "999998";
/// The marker line tests and scripts look for; the credentials follow on the next lines.
pub const BANNER: &str = "OSCAR Box created the administrator account";

/// Creates the administrator when the `security` table is empty. Runs under the migration
/// lock, so exactly one instance creates it and prints the password.
pub async fn ensure(conn: &mut Conn) -> Result<(), MigrationError> {
    let count: Option<i64> = conn.query_first("SELECT COUNT(*) FROM security").await?;
    if count.unwrap_or(0) > 0 {
        return Ok(());
    }
    let password = Alphanumeric.sample_string(&mut rand::rng(), 16);
    let pin = format!("{:04}", rand::rng().random_range(0..10_000));
    let (password_hash, pin_hash) = {
        let (p, n) = (password.clone(), pin.clone());
        tokio::task::spawn_blocking(move || (hash_password(&p), hash_password(&n)))
            .await
            .expect("hashing does not panic")
    };
    conn.exec_drop(
        "INSERT IGNORE INTO provider (provider_no, last_name, first_name, provider_type, specialty, team, sex, status, lastUpdateDate)
         VALUES (?, 'oscardoc', 'doctor', 'doctor', '', '', 'M', '1', NOW())",
        (ADMIN_PROVIDER_NO,),
    )
    .await?;
    conn.exec_drop(
        "INSERT INTO security (security_no, user_name, password, provider_no, pin, forcePasswordReset, lastUpdateDate)
         VALUES (128, ?, ?, ?, ?, 1, NOW())",
        (ADMIN_USER, &password_hash, ADMIN_PROVIDER_NO, &pin_hash),
    )
    .await?;
    tracing::info!(
        user = ADMIN_USER,
        "created the administrator account; its password was shown once on the console"
    );
    show_once(&password, &pin);
    Ok(())
}

/// The one place a secret reaches a terminal: on purpose, once, outside the log.
#[expect(clippy::print_stderr)]
fn show_once(password: &str, pin: &str) {
    eprintln!(
        "\n==============================================================\n\
         {BANNER}.\n  user name: {ADMIN_USER}\n  password:  {password}\n  PIN:       {pin}\n\
         Write these down now: they are shown only this once, and a new\n\
         password is required at the first sign-in.\n\
         ==============================================================\n"
    );
}
