//! `oscarbox proxy`: run the proxy (systemd runs this as its own unit), or talk to a running
//! one through its admin socket: `backends`, `drain`, `enable`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use oscarbox_proxy::admin::{self, AskError};
use oscarbox_proxy_api::{to_line, Answer, BackendStatus, Request};
use tokio_util::sync::CancellationToken;

/// Exit status when the proxy cannot be reached (`EX_UNAVAILABLE`).
const EX_UNAVAILABLE: u8 = 69;

pub fn run(config_path: Option<&Path>) -> ExitCode {
    let config = match oscarbox_common::load_config(config_path) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    let runtime = match oscarbox_common::start_runtime(&config.box_.log_level) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        oscarbox_common::cancel_on_signals(shutdown.clone()).context("install signal handlers")?;
        let path = config_path
            .map(std::path::absolute)
            .transpose()
            .context("resolve the config path")?;
        oscarbox_proxy::run(config, path, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("failed to run the proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ask(config: Option<&Path>, request: &Request) -> Result<Answer, ExitCode> {
    let config = oscarbox_common::load_config(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|_| ExitCode::FAILURE)?;
    let answer = runtime
        .block_on(admin::ask(&config.proxy.admin_socket, request))
        .map_err(|e| {
            if let AskError::Unreachable { .. } = e {
                let _ = writeln!(
                    std::io::stderr(),
                    "the proxy is not running ({e}); start the box with `oscarbox up`, or `systemctl start oscarbox-proxy` on the appliance"
                );
                return ExitCode::from(EX_UNAVAILABLE);
            }
            let _ = writeln!(std::io::stderr(), "{e}");
            ExitCode::FAILURE
        })?;
    if let Answer::Error { message } = &answer {
        let _ = writeln!(std::io::stderr(), "{message}");
        return Err(ExitCode::FAILURE);
    }
    Ok(answer)
}

pub fn backends(config: Option<&Path>, json: bool) -> ExitCode {
    match ask(config, &Request::Backends) {
        Ok(Answer::Backends { backends, .. }) => {
            let mut out = std::io::stdout().lock();
            let _ = if json {
                write!(out, "{}", to_line(&backends))
            } else {
                write!(out, "{}", table(&backends))
            };
            ExitCode::SUCCESS
        }
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

pub fn drain(config: Option<&Path>, instance: u32, wait: Duration) -> ExitCode {
    let request = Request::Drain {
        instance,
        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        lease_ms: None,
    };
    match ask(config, &request) {
        Ok(Answer::Drained {
            instance,
            in_flight: 0,
        }) => {
            let _ = writeln!(
                std::io::stdout(),
                "instance {instance} is drained and idle; `oscarbox proxy enable {instance}` sends it requests again"
            );
            ExitCode::SUCCESS
        }
        Ok(Answer::Drained {
            instance,
            in_flight,
        }) => {
            let _ = writeln!(
                std::io::stderr(),
                "instance {instance} takes no new requests, but {in_flight} were still in flight after {}",
                humantime::format_duration(wait)
            );
            ExitCode::FAILURE
        }
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

pub fn enable(config: Option<&Path>, instance: u32) -> ExitCode {
    let request = Request::Enable {
        instance,
        lease_only: false,
    };
    match ask(config, &request) {
        Ok(Answer::Enabled { instance }) => {
            let _ = writeln!(
                std::io::stdout(),
                "instance {instance} is enabled; it takes requests while its probes pass"
            );
            ExitCode::SUCCESS
        }
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

fn unexpected(answer: &Answer) -> ExitCode {
    let _ = writeln!(
        std::io::stderr(),
        "the proxy answered something unexpected: {}",
        to_line(answer).trim_end()
    );
    ExitCode::FAILURE
}

fn table(backends: &[BackendStatus]) -> String {
    let mut s = format!(
        "{:<9} {:<22} {:<9} {:>9} {:>9} {:>7}  {}\n",
        "INSTANCE", "ADDRESS", "STATE", "IN-FLIGHT", "REQUESTS", "WEIGHT", "WHY"
    );
    for b in backends {
        s.push_str(&format!(
            "{:<9} {:<22} {:<9} {:>9} {:>9} {:>7.2}  {}\n",
            b.instance, b.address, b.state, b.in_flight, b.requests, b.weight, b.why
        ));
    }
    s
}
