//! The first administrator account, created once on a fresh database.
//!
//! Stock OSCAR ships `oscardoc` with the well-known password `mac2002`; we keep the familiar
//! user name and provider number but generate the password and PIN, and require a change at
//! first sign-in. They are written to a file of mode 0600 in the state directory (never to the
//! log, which under the watchdog is the journal), and shown on the console when there is one.

use std::io::IsTerminal as _;
use std::path::Path;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rand::distr::{Alphanumeric, SampleString as _};
use rand::Rng as _;

use crate::auth::hash_password;
use crate::migrations::MigrationError;

pub const ADMIN_USER: &str = "oscardoc";
pub const ADMIN_PROVIDER_NO: &str = "999998";
/// The log line that says an instance created the account.
pub const BANNER: &str = "OSCAR Box created the administrator account";

/// Creates the administrator when the `security` table is empty. Runs under the migration
/// lock, so exactly one instance creates it and prints the password.
/// `credentials` is where the generated password and PIN are written
/// (`BoxConfig::initial_admin_credentials`).
pub async fn ensure(conn: &mut Conn, credentials: &Path) -> Result<(), MigrationError> {
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
    // Written before the account exists, so that no account has a password nobody can read.
    let file = credentials.to_path_buf();
    write_credentials(&file, &password, &pin).map_err(|e| MigrationError::Credentials {
        path: file.clone(),
        cause: e.to_string(),
    })?;
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
        credentials = %file.display(),
        "{BANNER}; its initial password and PIN are in the credentials file (mode 0600): delete it after the first sign-in"
    );
    if std::io::stderr().is_terminal() {
        show_once(&password, &pin);
    }
    Ok(())
}

fn write_credentials(path: &Path, password: &str, pin: &str) -> std::io::Result<()> {
    let text = format!("user name: {ADMIN_USER}\npassword: {password}\nPIN: {pin}\n");
    oscarbox_common::write_private(path, text.as_bytes())
}

/// The one place a secret reaches a terminal: on purpose, once, outside the log, and only
/// when a person is watching (stderr is a terminal).
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
