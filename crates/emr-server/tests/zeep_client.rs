//! A real SOAP client generated from our own `?wsdl` (Python's zeep, Debian's python3-zeep)
//! calls `isAlive` and `login2`.

use oscarbox_test_harness::{Emr, MariaDb};

const EMR: &str = env!("CARGO_BIN_EXE_oscar-emr");
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/soap-clients/zeep_check.py"
);

#[tokio::test]
async fn zeep_client_from_our_wsdl_calls_is_alive_and_login2() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let (user, password) = emr
        .admin_credentials()
        .expect("the administrator was printed");
    // Debian's interpreter, where python3-zeep is installed by scripts/install-deps.
    let out = tokio::process::Command::new("/usr/bin/python3")
        .arg(SCRIPT)
        .arg(format!("http://{}", emr.addr))
        .arg(&user)
        .arg(&password)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "zeep client failed ({}); run scripts/install-deps if zeep is missing\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("isAlive: alive"), "{stdout}");
    assert!(
        stdout.contains("login2: securityId=128 providerNo=999998"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fault 'Invalid Username/Password'"),
        "{stdout}"
    );
    Ok(())
}
