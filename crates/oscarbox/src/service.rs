//! What `oscarbox up`, `watchdog` and `proxy` share when they run a long-lived service, and
//! what the subcommands that talk to one share when they ask it something.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use oscarbox_config::Config;
use oscarbox_socket_rpc::AskError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Exit status when a service cannot be reached (`EX_UNAVAILABLE`).
const EX_UNAVAILABLE: u8 = 69;

/// Loads the config (exit 64 on errors), starts logging and the runtime, and runs `service`
/// until it ends; SIGTERM or SIGINT cancels its token. `what` names it in the failure line.
pub fn run<F, Fut>(config_path: Option<&Path>, what: &str, service: F) -> ExitCode
where
    F: FnOnce(Arc<Config>, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
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
        service(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("failed to run {what}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Asks the `peer` ("watchdog", "proxy") on the socket `socket_of` the config names one
/// question. Not running is exit 69 with how to start it (`unit`: its systemd unit).
pub fn ask<Q: Serialize, A: DeserializeOwned>(
    config_path: Option<&Path>,
    peer: &'static str,
    unit: &str,
    socket_of: fn(&Config) -> &Path,
    request: &Q,
) -> Result<A, ExitCode> {
    let config = oscarbox_common::load_config(config_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|_| ExitCode::FAILURE)?;
    runtime
        .block_on(oscarbox_socket_rpc::ask(peer, socket_of(&config), request))
        .map_err(|e| {
            if let AskError::Unreachable { .. } = e {
                let _ = writeln!(
                    std::io::stderr(),
                    "the {peer} is not running ({e}); start the box with `oscarbox up`, or `systemctl start {unit}` on the appliance"
                );
                return ExitCode::from(EX_UNAVAILABLE);
            }
            let _ = writeln!(std::io::stderr(), "{e}");
            ExitCode::FAILURE
        })
}
