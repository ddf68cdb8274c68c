//! `oscarbox proxy`: run the proxy (systemd runs this as its own unit), or talk to a running
//! one through its admin socket: `backends`, `drain`, `enable`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use oscarbox_proxy_api::{to_line, Answer, BackendStatus, Request};

pub fn run(config_path: Option<&Path>) -> ExitCode {
    crate::service::run(config_path, "the proxy", |config, shutdown| async move {
        let path = config_path
            .map(std::path::absolute)
            .transpose()
            .context("resolve the config path")?;
        oscarbox_proxy::run(config, path, shutdown).await
    })
}

fn ask(config: Option<&Path>, request: &Request) -> Result<Answer, ExitCode> {
    let answer = crate::service::ask(
        config,
        "proxy",
        "oscarbox-proxy",
        |c| &c.proxy.admin_socket,
        request,
    )?;
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
