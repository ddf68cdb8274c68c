//! Several instances starting at once against a fresh database: migrations run once, one
//! administrator is created, and every instance serves.

use mysql_async::prelude::Queryable;
use oscarbox_test_harness::{login_envelope, soap, Emr, MariaDb};

const EMR: &str = env!("CARGO_BIN_EXE_oscar-emr");

#[tokio::test]
async fn two_instances_migrate_once_and_both_serve() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(2, "")?;
    let mut a = Emr::spawn(EMR.as_ref(), &cfg, 1)?;
    let mut b = Emr::spawn(EMR.as_ref(), &cfg, 2)?;
    let wait = std::time::Duration::from_secs(60);
    let (ra, rb) = tokio::join!(a.wait_alive(wait), b.wait_alive(wait));
    ra?;
    rb?;

    let mut root = db.root().await?;
    let versions: Vec<u32> = root
        .query("SELECT version FROM oscarbox_schema_migrations ORDER BY version")
        .await?;
    let all: Vec<u32> = (1..=oscar_emr::migrations::MIGRATIONS.len() as u32).collect();
    assert_eq!(versions, all, "each migration recorded exactly once");
    let admins: Option<i64> = root.query_first("SELECT COUNT(*) FROM security").await?;
    assert_eq!(admins, Some(1));

    let creds = [a.admin_credentials(), b.admin_credentials()];
    assert_eq!(
        creds.iter().filter(|c| c.is_some()).count(),
        1,
        "exactly one instance created the administrator"
    );
    let (user, password) = creds.into_iter().flatten().next().expect("one created it");
    // The password is in a file for this user only, and never in any log.
    let file = cfg
        .path
        .parent()
        .expect("a directory")
        .join("state/secrets/initial-admin-password");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file)?.permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        a.log()
            .iter()
            .chain(b.log().iter())
            .all(|l| !l.contains(&password)),
        "the administrator's password reached a log"
    );

    // A token from one instance is the token the other gives too: clients may land on either.
    let c = reqwest::Client::new();
    let mut tokens = Vec::new();
    for emr in [&a, &b] {
        let (status, body) = soap(
            &c,
            &emr.url("/ws/LoginService"),
            &login_envelope("login", &user, &password),
        )
        .await?;
        assert_eq!(status, 200, "{body}");
        tokens.push(
            body.split("<securityTokenKey>")
                .nth(1)
                .and_then(|s| s.split('<').next())
                .map(str::to_owned),
        );
    }
    assert!(tokens[0].is_some());
    assert_eq!(tokens[0], tokens[1]);
    Ok(())
}
