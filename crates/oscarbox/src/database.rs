//! MariaDB as the box runs it. With one node, clients reach it directly; with two nodes and an
//! endpoint of their own, the pair runs behind the stable endpoint under its executor
//! (`crates/dbpair`), in this process: `oscarbox up` on a laptop and `oscarbox watchdog` on
//! the appliance both start it here, so the watchdog owns both `mariadbd` as DESIGN.md says.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use oscarbox_config::{Config, DbNode, Profile};
use oscarbox_dbpair::executor::{Command, Executor, Paths, TICK};
use oscarbox_failover::{NodeId, Policy};
use oscarbox_mariadb::NodeSpec;
use oscarbox_watchdog_api::db::{DbAnswer, DbRequest};
use tokio_util::sync::CancellationToken;

/// How long the pair may take to settle (a first start initializes both data directories).
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// How the configuration lays the database out.
pub enum Layout<'a> {
    /// One node that clients reach directly (the endpoint is its own address).
    Single(&'a DbNode),
    /// Two nodes behind an endpoint of their own.
    Pair(&'a DbNode, &'a DbNode),
}

/// The layout `config` asks for, or what is wrong with it.
pub fn layout(config: &Config) -> anyhow::Result<Layout<'_>> {
    let endpoint = config.database.endpoint;
    match config.database.nodes.as_slice() {
        [a, b] if config.database.is_pair() => Ok(Layout::Pair(a, b)),
        [first, ..] if endpoint.port() == first.port => Ok(Layout::Single(first)),
        [first, ..] => bail!(
            "database.endpoint ({endpoint}) must be either the first node's own address (127.0.0.1:{}, one node) or, with two nodes, a port of its own (the endpoint the watchdog points at the primary)",
            first.port
        ),
        [] => bail!("no [[database.nodes]] configured"),
    }
}

/// How a node runs: its data directory, port, socket and log under the state directory.
pub fn node_spec(
    config: &Config,
    node: &DbNode,
    state_dir: &Path,
    extra_args: Vec<String>,
) -> anyhow::Result<NodeSpec> {
    Ok(NodeSpec {
        name: node.name.clone(),
        data_dir: std::path::absolute(&node.data_dir)
            .with_context(|| format!("resolve {}", node.data_dir.display()))?,
        bind: config.database.endpoint.ip(),
        port: node.port,
        socket: oscarbox_mariadb::node_socket(state_dir, &node.name),
        log_file: state_dir
            .join("log")
            .join(format!("mariadb-{}.log", node.name)),
        small: config.box_.profile == Profile::Dev,
        extra_args,
    })
}

/// The pair, running: its executor ticks in a task and answers `oscarbox db` between ticks.
pub struct RunningPair {
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningPair {
    /// Bootstraps the pair if needed (data directories, accounts with their generated secrets,
    /// the ledger), waits until a primary serves behind the endpoint, then leaves the executor
    /// ticking. Returns `None` when `shutdown` came first.
    pub async fn start(
        config: &Config,
        state_dir: &Path,
        app_password: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<RunningPair>> {
        let Layout::Pair(a, b) = layout(config)? else {
            bail!("the pair needs two [[database.nodes]] and an endpoint port of its own");
        };
        let secrets = state_dir.join("secrets");
        let repl = oscarbox_mariadb::secrets::ensure(&secrets.join("db-replication-password"))
            .context("read or create the replication password")?;
        let monitor = oscarbox_mariadb::secrets::ensure(&secrets.join("db-monitor-password"))
            .context("read or create the monitoring password")?;
        let token = CancellationToken::new();
        let endpoint =
            oscarbox_dbpair::endpoint::Endpoint::bind(config.database.endpoint, token.clone())
                .await
                .with_context(|| {
                    format!(
                        "listen on the database endpoint {} (database.endpoint)",
                        config.database.endpoint
                    )
                })?;
        let paths = Paths::under(state_dir);
        let mut ex = Executor::new(
            node_spec(config, a, state_dir, oscarbox_dbpair::node::pair_args(1))?,
            node_spec(config, b, state_dir, oscarbox_dbpair::node::pair_args(2))?,
            endpoint,
            paths.clone(),
            repl,
            Policy::default(),
        );
        let settled = async {
            ex.bootstrap(
                &config.database.name,
                &config.database.app_user,
                app_password,
                &monitor,
            )
            .await
            .context("set up the database pair")?;
            // The pair settles (a primary promoted, the endpoint on it) before the EMR starts;
            // the instances would wait for it anyway, but a clear error here beats a silent
            // wait.
            let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
            loop {
                let plan = ex.tick().await;
                let primary =
                    oscarbox_dbpair::ledger::read(&paths.ledger)?.map_or(NodeId::A, |l| l.primary);
                if ex.writable(primary).await == Some(true) {
                    return Ok(true);
                }
                if tokio::time::Instant::now() > deadline {
                    bail!(
                        "the database pair did not settle within {}s: {plan}",
                        SETTLE_LIMIT.as_secs()
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(false),
                    () = tokio::time::sleep(TICK) => {}
                }
            }
        }
        .await;
        match settled {
            Ok(true) => {}
            outcome => {
                // Both nodes are stopped again, whether it failed or was asked to stop.
                token.cancel();
                ex.stop().await;
                return outcome.map(|_| None);
            }
        }
        tracing::info!(endpoint = %config.database.endpoint, "the database pair is up");
        // `oscarbox db status|switchover` reach the executor through its socket, between ticks.
        let (commands, requests) = tokio::sync::mpsc::channel::<Command>(8);
        let listener = match oscarbox_socket_rpc::bind(&config.database.control_socket) {
            Ok(l) => l,
            Err(e) => {
                token.cancel();
                ex.stop().await;
                return Err(e).with_context(|| {
                    format!(
                        "listen on the database pair's control socket {}",
                        config.database.control_socket.display()
                    )
                });
            }
        };
        tokio::spawn(oscarbox_socket_rpc::serve(
            listener,
            token.clone().cancelled_owned(),
            |message| DbAnswer::Error { message },
            move |request: DbRequest| {
                let commands = commands.clone();
                async move {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    if commands.send((request, reply)).await.is_err() {
                        return DbAnswer::Error {
                            message: "the database pair is stopping".into(),
                        };
                    }
                    answer.await.unwrap_or(DbAnswer::Error {
                        message: "the database pair stopped before answering".into(),
                    })
                }
            },
        ));
        let task = tokio::spawn(ex.run(token.clone(), requests));
        Ok(Some(RunningPair { token, task }))
    }

    /// Stops ticking, closes the endpoint and stops both nodes cleanly.
    pub async fn stop(self) {
        tracing::info!("stopping the database pair");
        self.token.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!("failed to stop the database pair cleanly: {e}");
        }
    }
}
