//! Real signals and injected faults: SIGTERM drains, SIGQUIT dumps, and the fault switch makes
//! an instance hang with its socket open, answer slowly, or exit.

use std::time::Duration;

use oscarbox_test_harness::{is_alive, Emr, MariaDb, Signal, IS_ALIVE};

const EMR: &str = env!("CARGO_BIN_EXE_oscar-emr");

async fn fault(c: &reqwest::Client, emr: &Emr, mode: &str) -> anyhow::Result<()> {
    let resp = c
        .post(emr.url(&format!("/oscarbox/fault/{mode}")))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status() == 200,
        "fault switch answered {}",
        resp.status()
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let mut emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let c = reqwest::Client::new();
    fault(&c, &emr, "slow?ms=1500").await?;
    let url = emr.url("/ws/SystemInfoService");
    let slow = tokio::spawn({
        let c = c.clone();
        async move { c.post(url).body(IS_ALIVE).send().await?.text().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    emr.signal(Signal::SIGTERM);
    let answer = slow.await??;
    assert!(
        answer.contains("<return>alive</return>"),
        "the in-flight request finished: {answer}"
    );
    let status = emr.wait_exit(Duration::from_secs(10)).await?;
    assert_eq!(status.code(), Some(0));
    // It stopped accepting: nothing answers on its port any more.
    assert!(!is_alive(&c, emr.addr).await);
    Ok(())
}

#[tokio::test]
async fn sigquit_dumps_in_flight_requests_and_keeps_serving() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let c = reqwest::Client::new();
    fault(&c, &emr, "slow?ms=2000").await?;
    let url = emr.url("/oscar/ws/LoginService");
    let pending = tokio::spawn({
        let c = c.clone();
        async move { c.post(url).body("<x/>").send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    emr.signal(Signal::SIGQUIT);
    emr.wait_for_log("task dump (SIGQUIT)", Duration::from_secs(5))
        .await?;
    let line = emr
        .wait_for_log(
            "POST /oscar/ws/LoginService running for",
            Duration::from_secs(5),
        )
        .await?;
    assert!(line.contains("task dump: request"), "{line}");
    emr.wait_for_log("task dump: end", Duration::from_secs(5))
        .await?;
    pending.await??;
    fault(&c, &emr, "clear").await?;
    assert!(is_alive(&c, emr.addr).await, "still serving after the dump");
    Ok(())
}

#[tokio::test]
async fn injected_hang_keeps_the_socket_open_but_answers_nothing() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()?;
    fault(&c, &emr, "hang").await?;
    // TCP is accepted (the kernel completes the handshake), yet no answer comes.
    let _socket = tokio::net::TcpStream::connect(emr.addr).await?;
    let err = c
        .post(emr.url("/ws/SystemInfoService"))
        .body(IS_ALIVE)
        .send()
        .await
        .expect_err("a hung instance does not answer");
    assert!(err.is_timeout(), "{err}");
    // The process is alive all along.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(emr.pid()), None)?;
    fault(&c, &emr, "clear").await?;
    assert!(is_alive(&c, emr.addr).await);
    Ok(())
}

#[tokio::test]
async fn injected_exit_ends_the_process() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let mut emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let c = reqwest::Client::new();
    let _ = c.post(emr.url("/oscarbox/fault/exit")).send().await;
    let status = emr.wait_exit(Duration::from_secs(10)).await?;
    assert_eq!(status.code(), Some(70));
    Ok(())
}

#[tokio::test]
async fn fault_switch_is_absent_unless_enabled() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let text =
        std::fs::read_to_string(&cfg.path)?.replace("[emr.fault-injection]\nenabled = true", "");
    std::fs::write(&cfg.path, text)?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let resp = reqwest::Client::new()
        .post(emr.url("/oscarbox/fault/hang"))
        .send()
        .await?;
    assert_eq!(resp.status(), 404);
    Ok(())
}
