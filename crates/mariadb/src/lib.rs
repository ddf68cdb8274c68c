//! The I/O adapter for MariaDB: initialize a data directory with `mariadb-install-db`, run
//! `mariadbd` as a supervised child, wait until it answers, and bootstrap the least-privilege
//! account the EMR uses. Used by `oscarbox up`, the test harness and (later) the watchdog.

pub mod backup;
pub mod secrets;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use oscarbox_supervisor::{Child, ChildSpec, Output};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot find {program} on PATH; install it with `apt-get install mariadb-server` (or run scripts/install-deps)")]
    NotInstalled { program: &'static str },
    #[error("{program} failed with {status}: {detail}")]
    Tool {
        program: &'static str,
        status: std::process::ExitStatus,
        detail: String,
    },
    #[error("mariadbd for {data_dir} exited during startup with {status}; its log ends with:\n{log_tail}")]
    ExitedDuringStartup {
        data_dir: PathBuf,
        status: std::process::ExitStatus,
        log_tail: String,
    },
    #[error("mariadbd for {data_dir} did not accept connections within {waited:?}")]
    StartTimeout { data_dir: PathBuf, waited: Duration },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Sql(#[from] mysql_async::Error),
    #[error("{what} {value:?} is not safe to use in SQL: expected letters, digits and '_' only")]
    UnsafeIdentifier { what: &'static str, value: String },
}

/// How to run one `mariadbd`.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub data_dir: PathBuf,
    pub bind: IpAddr,
    pub port: u16,
    /// The unix socket root uses; keep its directory private (0700).
    pub socket: PathBuf,
    /// Where mariadbd's own log goes.
    pub log_file: PathBuf,
    /// Small buffers for tests and developer machines; production sizing otherwise.
    pub small: bool,
    /// More server options for `mariadbd` (a pair node's replication settings); not given to
    /// `mariadb-install-db`.
    pub extra_args: Vec<String>,
}

impl NodeSpec {
    /// The node's own temporary directory, beside its data directory. Sharing `/tmp` between
    /// servers lets concurrent bootstraps collide on temporary table names.
    pub fn tmp_dir(&self) -> PathBuf {
        let name = self
            .data_dir
            .file_name()
            .map_or_else(|| "mariadb".into(), |n| n.to_string_lossy().into_owned());
        self.data_dir.with_file_name(format!("{name}.tmp"))
    }

    fn common_args(&self) -> Vec<String> {
        let mut args = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", self.data_dir.display()),
            format!("--tmpdir={}", self.tmp_dir().display()),
            "--character-set-server=utf8mb4".to_owned(),
            "--collation-server=utf8mb4_general_ci".to_owned(),
            "--default-storage-engine=InnoDB".to_owned(),
            "--innodb-flush-log-at-trx-commit=1".to_owned(),
        ];
        if self.small {
            args.extend([
                "--innodb-buffer-pool-size=32M".to_owned(),
                "--innodb-log-file-size=16M".to_owned(),
                "--performance-schema=OFF".to_owned(),
                "--max-connections=200".to_owned(),
            ]);
        }
        if nix::unistd::geteuid().is_root() {
            // mariadbd refuses to run as root unless told to; the appliance runs it as `mysql`.
            args.push("--user=root".to_owned());
        }
        args
    }
}

fn which(program: &'static str) -> Result<PathBuf, Error> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
    {
        let candidate = dir.join(program);
        if std::fs::metadata(&candidate).is_ok_and(|m| m.is_file()) {
            return Ok(candidate);
        }
    }
    Err(Error::NotInstalled { program })
}

/// Creates the system tables in `spec.data_dir` unless they are already there. The tables are
/// built in a scratch directory and renamed into place, so that an interrupted first start
/// never leaves a half-built data directory that a later start would take for a whole one.
pub async fn init_data_dir(spec: &NodeSpec) -> Result<bool, Error> {
    if std::fs::metadata(spec.data_dir.join("mysql")).is_ok_and(|m| m.is_dir()) {
        return Ok(false);
    }
    if std::fs::read_dir(&spec.data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Io(std::io::Error::other(format!(
            "{} is not empty but holds no MariaDB system tables; move it aside or empty it",
            spec.data_dir.display()
        ))));
    }
    let scratch = spec.data_dir.with_extension("initializing");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    std::fs::create_dir_all(spec.tmp_dir())?;
    let program = which("mariadb-install-db")?;
    let scratch_spec = NodeSpec {
        data_dir: scratch.clone(),
        ..spec.clone()
    };
    let mut args = scratch_spec.common_args();
    // The scratch directory's name would give a different tmpdir: keep the node's own.
    args.retain(|a| !a.starts_with("--tmpdir="));
    args.push(format!("--tmpdir={}", spec.tmp_dir().display()));
    args.extend([
        "--auth-root-authentication-method=normal".to_owned(),
        "--skip-test-db".to_owned(),
    ]);
    // Its own process group, killed if this future is dropped (Ctrl-C during a first start).
    let out = tokio::process::Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .output()
        .await?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(Error::Tool {
            program: "mariadb-install-db",
            status: out.status,
            detail: tail(&String::from_utf8_lossy(&out.stderr), 20),
        });
    }
    let _ = std::fs::remove_dir(&spec.data_dir);
    std::fs::rename(&scratch, &spec.data_dir)?;
    Ok(true)
}

/// Starts `mariadbd` for `spec` as a supervised child and waits until root can connect
/// through the socket.
pub async fn start(spec: &NodeSpec, timeout: Duration) -> Result<Child, Error> {
    let program = which("mariadbd")?;
    if let Some(dir) = spec.socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::create_dir_all(spec.tmp_dir())?;
    let mut args = spec.common_args();
    args.extend([
        format!("--port={}", spec.port),
        format!("--bind-address={}", spec.bind),
        format!("--socket={}", spec.socket.display()),
        format!(
            "--pid-file={}",
            spec.data_dir.join("mariadbd.pid").display()
        ),
        format!("--log-error={}", spec.log_file.display()),
        // Accounts are matched by address, never by a DNS lookup that can hang.
        "--skip-name-resolve".to_owned(),
    ]);
    args.extend(spec.extra_args.iter().cloned());
    let child_spec = ChildSpec::new(format!("mariadb-{}", spec.name), program)
        .args(args)
        .output(Output::Null);
    let mut child = Child::spawn(&child_spec)?;
    let started = tokio::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(Error::ExitedDuringStartup {
                data_dir: spec.data_dir.clone(),
                status,
                log_tail: tail(
                    &std::fs::read_to_string(&spec.log_file).unwrap_or_default(),
                    20,
                ),
            });
        }
        if let Ok(mut conn) = mysql_async::Conn::new(root_opts(&spec.socket)).await {
            conn.query_drop("SELECT 1").await?;
            let _ = conn.disconnect().await;
            return Ok(child);
        }
        if started.elapsed() > timeout {
            let _ = child.terminate(Duration::from_secs(5)).await;
            return Err(Error::StartTimeout {
                data_dir: spec.data_dir.clone(),
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connection options for root over the node's unix socket (root has no network account).
/// The root socket of the box's database node `name`, under its state directory.
pub fn node_socket(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("run").join(format!("mariadb-{name}.sock"))
}

pub fn root_opts(socket: &Path) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .socket(Some(socket.display().to_string()))
        .user(Some("root"))
        .into()
}

fn check_identifier(what: &'static str, value: &str) -> Result<(), Error> {
    if value.is_empty()
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(Error::UnsafeIdentifier {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Creates the EMR's database and its least-privilege account (idempotent; resets the
/// password to `app_password` so that the secrets file stays the source of truth).
pub async fn bootstrap_app(
    socket: &Path,
    database: &str,
    app_user: &str,
    app_password: &str,
) -> Result<(), Error> {
    check_identifier("database name", database)?;
    check_identifier("user name", app_user)?;
    check_identifier("generated password", app_password)?;
    let mut conn = mysql_async::Conn::new(root_opts(socket)).await?;
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
    ))
    .await?;
    for host in ["127.0.0.1", "localhost", "::1"] {
        conn.query_drop(format!(
            "CREATE USER IF NOT EXISTS '{app_user}'@'{host}' IDENTIFIED BY '{app_password}'"
        ))
        .await?;
        conn.query_drop(format!(
            "ALTER USER '{app_user}'@'{host}' IDENTIFIED BY '{app_password}'"
        ))
        .await?;
        // Only what the EMR and its migrations need, only on its own database.
        conn.query_drop(format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, REFERENCES ON `{database}`.* TO '{app_user}'@'{host}'"
        ))
        .await?;
    }
    conn.disconnect().await?;
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
