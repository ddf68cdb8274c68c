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
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Which instance this is, from 1; it listens on emr.base-port + N - 1.
    #[arg(long, value_name = "N", default_value_t = 1)]
    instance: u32,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Register, list or remove the applications allowed to use the REST API (OAuth 1.0a).
    #[command(subcommand)]
    OauthClient(ClientCommand),
}

#[derive(Debug, clap::Subcommand)]
enum ClientCommand {
    /// Register an application; prints its key and secret (shown only this once).
    Add {
        /// A name for the application, unique on this box.
        #[arg(long)]
        name: String,
        /// Its address: callbacks must start with it (omit to allow any, or only "oob").
        #[arg(long)]
        uri: Option<String>,
        /// How long its access tokens last: seconds, or with a unit (30m, 12h, 30d), or "never".
        #[arg(long, default_value = "1d", value_parser = parse_lifetime)]
        lifetime: i64,
    },
    /// List the registered applications (without their secrets).
    List,
    /// Remove an application and every token it holds.
    Remove {
        /// Its key, as `list` shows it.
        key: String,
    },
}

/// A token lifetime in seconds; -1 for "never" (CXF's convention, which OSCAR's tables keep).
fn parse_lifetime(s: &str) -> Result<i64, String> {
    if s == "never" {
        return Ok(-1);
    }
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits.parse().map_err(|_| {
        format!("expected seconds, a number with s, m, h or d, or \"never\"; found {s:?}")
    })?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use s, m, h or d")),
    };
    n.checked_mul(factor)
        .filter(|v| (1..=10 * 366 * 86_400).contains(v))
        .ok_or_else(|| format!("{s:?}: expected from 1 second to 10 years, or \"never\""))
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
    if let Some(Command::OauthClient(cmd)) = args.command {
        return oauth_client(config, cmd);
    }
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

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an administrator's command: its answer is its output"
)]
fn oauth_client(config: Arc<oscarbox_config::Config>, cmd: ClientCommand) -> ExitCode {
    use oscar_emr::oauth::clients;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("failed to start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let db = oscar_emr::open_database(&config).await?;
        let out = match cmd {
            ClientCommand::Add { name, uri, lifetime } => {
                let (key, secret) = clients::add(&db, &name, uri.as_deref(), lifetime).await?;
                format!("registered {name:?}\nkey:    {key}\nsecret: {secret}\nGive both to the application's administrator; the secret is not shown again.")
            }
            ClientCommand::List => {
                let mut out = String::from("KEY               NAME                  LIFETIME   TOKENS  URI");
                for c in clients::list(&db).await? {
                    let lifetime = if c.lifetime == -1 { "never".to_owned() } else { format!("{}s", c.lifetime) };
                    out.push_str(&format!(
                        "\n{:<17} {:<21} {:<10} {:<7} {}",
                        c.key, c.name, lifetime, c.access_tokens, c.uri.as_deref().unwrap_or("-")
                    ));
                }
                out
            }
            ClientCommand::Remove { key } => {
                clients::remove(&db, &key).await?;
                format!("removed the client with key {key} and its tokens")
            }
        };
        db.close().await;
        Ok::<_, anyhow::Error>(out)
    });
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oscar-emr oauth-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}
