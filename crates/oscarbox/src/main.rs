//! `oscarbox`: the box's command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod backup;
mod check_config;
mod control;
mod database;
mod db;
mod fleet;
mod proxy;
mod restore;
mod service;
mod up;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "OSCAR Box: a self-healing OSCAR EMR server on one computer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a configuration file and print the effective configuration, or every error.
    CheckConfig {
        /// The file to check; without it, the embedded development default.
        file: Option<PathBuf>,
    },
    /// Run the whole box in the foreground (MariaDB, the watchdog and its EMR instances);
    /// Ctrl-C stops it.
    Up {
        /// The box configuration; without it, the embedded development default.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run the watchdog: start the EMR instances, probe them, heal hung ones, and with two
    /// database nodes configured run the MariaDB pair and fail it over (systemd runs this as a
    /// Type=notify service).
    Watchdog {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run the HTTPS reverse proxy in front of the EMR instances (systemd runs this as its own
    /// unit), or act on a running one.
    Proxy {
        #[command(subcommand)]
        action: Option<ProxyAction>,
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
    },
    /// Show the whole box: a verdict (ok, degraded, critical) with what to do, the EMR
    /// instances, proxy, database, backups, disks, memory and certificate. Exits 0 when ok, 1
    /// when degraded, 2 when critical.
    Status {
        #[command(subcommand)]
        action: Option<StatusAction>,
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        /// Print the status document as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Watch many boxes, as a support provider does.
    Fleet {
        #[command(subcommand)]
        action: FleetAction,
    },
    /// The two-node database: `status` shows roles, epoch, positions, lag and semi-sync;
    /// `switchover` makes the replica the primary with nothing lost.
    Db {
        #[command(subcommand)]
        action: DbAction,
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
    },
    /// The backups on the backup disk: `status`, `now` (a documents snapshot and a database
    /// base backup), `verify` (the repository check), `drill` (a test restore),
    /// `recovery-key` (what opens the repository on another machine).
    Backup {
        #[command(subcommand)]
        action: BackupAction,
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
    },
    /// Restore from the backup disk: `list` the restore points, restore `documents` or the
    /// database (`db`, to a point in time) into a directory.
    Restore {
        #[command(subcommand)]
        action: RestoreAction,
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
    },
    /// Act on the EMR instances.
    Workers {
        #[command(subcommand)]
        action: WorkersAction,
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ProxyAction {
    /// Show every instance behind the proxy: state, requests in flight, and why.
    Backends {
        /// Print JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Send an instance no new requests, and wait for those in flight (before maintenance).
    Drain {
        instance: u32,
        /// How long to wait for requests in flight, e.g. "30s".
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Send a drained instance requests again.
    Enable { instance: u32 },
}

#[derive(Debug, Subcommand)]
enum StatusAction {
    /// Print the token the admin listener wants from clients off the box (a provider's
    /// Prometheus, `oscarbox fleet status`).
    Token,
}

#[derive(Debug, Subcommand)]
enum FleetAction {
    /// Ask every box in FILE for its health, at once, and print one line per box. Exits 0 when
    /// all are ok, 1 when any is degraded, 2 when any is critical or cannot be asked.
    Status {
        /// The fleet file: `version = 1` and a `[[box]]` table per box with name, url,
        /// token-file and ca-file.
        file: PathBuf,
        /// Print JSON, for tools.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DbAction {
    /// Each node's role and state, the epoch, GTID positions, lag, semi-sync, the last incident.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Make the replica the primary (writes block for at most about 2 s; nothing is lost);
    /// refused, with the reason, when the pair is not in a state to do it safely. Exit 2 when
    /// refused.
    Switchover,
}

#[derive(Debug, Subcommand)]
enum BackupAction {
    /// The backup disk, the newest snapshot and the last repository check. Exit 2 when the
    /// disk is refused or the last check found damage.
    Status,
    /// Take a documents snapshot now and, when the box runs the database pair, a database
    /// base backup (`mariabackup` of the primary).
    Now,
    /// Check the repository; with --read-data, read every pack back and check its hashes.
    /// Exit 2 on damage.
    Verify {
        #[arg(long)]
        read_data: bool,
    },
    /// Run a restore drill now: rebuild the database from a base backup and the binlog
    /// archive into a scratch directory, compare its tables with the checksums recorded at
    /// the newest base, and compare a sample of restored documents with the live ones. Exit 2
    /// when it fails.
    Drill,
    /// Write this box's marker on a backup disk that holds files but lost its marker (another
    /// box's disk is still refused).
    ClaimDisk,
    /// Print the repository's location and password: with it, stock restic (or this command
    /// on a fresh machine) opens the backups. Keep it off the box, like a key.
    RecoveryKey,
}

#[derive(Debug, Subcommand)]
enum RestoreAction {
    /// The restore points (snapshots), oldest first, with their time, contents and the
    /// database position they belong with.
    List,
    /// Restore documents into an empty directory: all of them, one file or folder (--path),
    /// or one patient's (--patient), from the newest snapshot, the one named (--snapshot) or
    /// the one taken by a time (--at).
    Documents {
        /// Where to put them: a new or empty directory.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// A snapshot id (or its first characters) from `oscarbox restore list`.
        #[arg(long, default_value = "latest", conflicts_with = "at")]
        snapshot: String,
        /// The documents as they were at this time (the newest snapshot taken by then):
        /// `2026-11-23 10:15:00` (the box's local time) or RFC 3339.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// One file or folder, relative to the documents directory.
        #[arg(long, conflicts_with = "patient")]
        path: Option<String>,
        /// One patient's documents (their demographic number), as the box's database links
        /// them; the box must be running.
        #[arg(long, value_name = "DEMOGRAPHIC_NO")]
        patient: Option<u32>,
        /// Say what would be restored, and restore nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rebuild the database as it was at a point in time: the newest base backup before it,
    /// with the binlog archive replayed up to it. Into a new data directory (--into), leaving
    /// the live database untouched; or, with --replace-live and the box stopped, as the box's
    /// live database (the data directories it replaces are kept aside).
    Db {
        /// `2026-11-23 10:15:00` (the box's local time; everything written before it), RFC
        /// 3339, or a GTID such as `0-1-4242` (everything up to and including it).
        #[arg(long, value_name = "TIME|GTID")]
        to: String,
        /// Where to put the data directory: a new or empty directory.
        #[arg(long, value_name = "DIR", required_unless_present = "replace_live")]
        into: Option<PathBuf>,
        /// Replace the box's live database with the restored one. The box must be stopped;
        /// its data directories are moved aside, never deleted.
        #[arg(long, conflicts_with = "into")]
        replace_live: bool,
        /// Say which base and how much of the archive would be used, and restore nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rebuild a whole box on a fresh machine from its backup disk (mounted at backup.disk)
    /// and its recovery key: the box's identity, its database (to the newest archived
    /// transaction, or --to) and its documents. The machine must hold no box's data yet.
    Box {
        /// The recovery key, as `oscarbox backup recovery-key` printed it.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// A point in time instead of the newest: as for `restore db --to`.
        #[arg(long, value_name = "TIME|GTID")]
        to: Option<String>,
        /// Say what would be restored, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum WorkersAction {
    /// Restart the instances one at a time, each after its replacement is healthy (upgrades).
    Restart,
}

fn main() -> ExitCode {
    let cli: Cli = match oscarbox_common::parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.command {
        Command::CheckConfig { file } => check_config::run(file.as_deref()),
        Command::Up { config } => up::run(config.as_deref(), up::Mode::Up),
        Command::Watchdog { config } => up::run(config.as_deref(), up::Mode::WatchdogOnly),
        Command::Proxy { action, config } => match action {
            None => proxy::run(config.as_deref()),
            Some(ProxyAction::Backends { json }) => proxy::backends(config.as_deref(), json),
            Some(ProxyAction::Drain { instance, wait }) => {
                proxy::drain(config.as_deref(), instance, wait)
            }
            Some(ProxyAction::Enable { instance }) => proxy::enable(config.as_deref(), instance),
        },
        Command::Status {
            action: None,
            config,
            json,
        } => control::status(config.as_deref(), json),
        Command::Status {
            action: Some(StatusAction::Token),
            config,
            ..
        } => control::token(config.as_deref()),
        Command::Fleet {
            action: FleetAction::Status { file, json },
        } => fleet::status(&file, json),
        Command::Db { action, config } => match action {
            DbAction::Status { json } => db::status(config.as_deref(), json),
            DbAction::Switchover => db::switchover(config.as_deref()),
        },
        Command::Backup { action, config } => match action {
            BackupAction::Status => backup::status(config.as_deref()),
            BackupAction::Now => backup::now(config.as_deref()),
            BackupAction::Verify { read_data } => backup::verify(config.as_deref(), read_data),
            BackupAction::RecoveryKey => backup::recovery_key(config.as_deref()),
            BackupAction::ClaimDisk => backup::claim_disk(config.as_deref()),
            BackupAction::Drill => backup::drill(config.as_deref()),
        },
        Command::Restore { action, config } => match action {
            RestoreAction::List => backup::list(config.as_deref()),
            RestoreAction::Documents {
                to,
                snapshot,
                at,
                path,
                patient,
                dry_run,
            } => {
                let which = match (path, patient) {
                    (_, Some(n)) => backup::Which::Patient(n),
                    (Some(p), None) => backup::Which::Path(p),
                    (None, None) => backup::Which::All,
                };
                backup::documents(config.as_deref(), to, snapshot, at, which, dry_run)
            }
            RestoreAction::Db {
                to,
                into,
                replace_live: _,
                dry_run,
            } => match (backup::target(&to), into) {
                (Err(code), _) => code,
                (Ok(target), Some(into)) => {
                    backup::database(config.as_deref(), target, into, dry_run)
                }
                // Without --into, clap made sure --replace-live was given.
                (Ok(target), None) => restore::database_live(config.as_deref(), target, dry_run),
            },
            RestoreAction::Box { key, to, dry_run } => {
                match to.as_deref().map(backup::target).transpose() {
                    Err(code) => code,
                    Ok(target) => restore::whole_box(
                        config.as_deref(),
                        key,
                        target.unwrap_or_else(oscarbox_backup::pitr::Target::latest),
                        dry_run,
                    ),
                }
            }
        },
        Command::Workers {
            action: WorkersAction::Restart,
            config,
        } => control::restart_workers(config.as_deref()),
    }
}
