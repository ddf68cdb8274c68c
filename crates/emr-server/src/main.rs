//! `oscar-emr --config FILE --instance N`: one EMR server instance.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use oscarbox_common::EX_USAGE;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(version, about = "The OSCAR Box EMR server: one instance")]
struct Args {
    /// The box configuration; without it, the embedded development default (config/dev.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Which instance this is, from 1; it listens on emr.base-port + N - 1.
    #[arg(long, value_name = "N", default_value_t = 1)]
    instance: u32,
}

#[expect(
    clippy::print_stderr,
    reason = "errors before logging exists go to stderr"
)]
fn main() -> ExitCode {
    let args: Args = match oscarbox_common::parse_args() {
        Ok(a) => a,
        Err(code) => return code,
    };
    let config = match oscarbox_common::load_config(args.config.as_deref()) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    if config.emr.instance_addr(args.instance).is_none() {
        eprintln!(
            "--instance {}: expected an instance number from 1 to {} (emr.instances)",
            args.instance, config.emr.instances
        );
        return ExitCode::from(EX_USAGE);
    }
    let runtime = match oscarbox_common::start_runtime(&config.box_.log_level) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        oscarbox_common::cancel_on_signals(shutdown.clone())?;
        oscar_emr::run(config, args.instance, shutdown).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("failed to run: {e:#}");
            ExitCode::FAILURE
        }
    }
}
