//! The executor: every tick it observes both nodes, the ledger and the endpoint, asks the
//! decision core for a plan, logs it, and applies its steps in order until one fails (the next
//! tick observes what happened and plans again). It also writes the heartbeat row on the
//! primary, from which a replica's lag is measured.
//!
//! Plan then apply (STYLE: rustic's prune plan): nothing here decides; every action is a step
//! the pure core chose and explained.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use oscarbox_failover::{Incident, Ledger, Node, NodeId, Observation, Pair, Plan, Policy, Step};
use oscarbox_mariadb::NodeSpec;
use tokio_util::sync::CancellationToken;

use oscarbox_watchdog_api::db::{DbAnswer, DbPairNode, DbPairStatus, DbRequest};

use crate::endpoint::Endpoint;
use crate::ledger;
use crate::node::{PairNode, StepError, PROBE_TIMEOUT};

/// How often the pair is observed and planned for.
pub const TICK: Duration = Duration::from_millis(500);
/// How long `mariadbd` gets to start (InnoDB crash recovery included).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node being rebuilt gets to stop cleanly before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The replication account's name.
pub const REPL_USER: &str = "oscarbox_repl";
/// The monitoring account's name (status only: no data).
pub const MONITOR_USER: &str = "oscarbox_monitor";

/// Where the pair keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub ledger: PathBuf,
    pub incidents: PathBuf,
    /// Transactions of a diverged node, saved for review before it is rebuilt.
    pub preserved: PathBuf,
}

impl Paths {
    pub fn under(state_dir: &Path) -> Paths {
        Paths {
            ledger: state_dir.join("db/ledger"),
            incidents: state_dir.join("db/incidents"),
            preserved: state_dir.join("db/preserved"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
    #[error("{0}")]
    Refused(String),
    #[error("the switchover stopped at \"{step}\": {cause}; the watchdog finishes or undoes it on its next tick")]
    Failed { step: String, cause: String },
}

/// The pair as the watchdog runs it.
#[derive(Debug)]
pub struct Executor {
    a: PairNode,
    b: PairNode,
    endpoint: Endpoint,
    paths: Paths,
    repl_password: String,
    pair: Pair,
    policy: Policy,
    started: tokio::time::Instant,
    /// When the primary last served, for the incident report's recovery time.
    last_served: Option<tokio::time::Instant>,
    /// The last plan that had steps, in words, for `oscarbox db status`.
    last_plan: Option<String>,
    /// The steps of the plan being applied, with when each finished: an incident's timeline.
    timeline: Vec<(Duration, String)>,
}

/// A request from the control socket and where its answer goes.
pub type Command = (DbRequest, tokio::sync::oneshot::Sender<DbAnswer>);

impl Executor {
    pub fn new(
        a: NodeSpec,
        b: NodeSpec,
        endpoint: Endpoint,
        paths: Paths,
        repl_password: String,
        policy: Policy,
    ) -> Executor {
        Executor {
            a: PairNode::new(NodeId::A, a),
            b: PairNode::new(NodeId::B, b),
            endpoint,
            paths,
            repl_password,
            pair: Pair::new(),
            policy,
            started: tokio::time::Instant::now(),
            last_served: None,
            last_plan: None,
            timeline: Vec::new(),
        }
    }

    pub fn node(&self, id: NodeId) -> &PairNode {
        match id {
            NodeId::A => &self.a,
            NodeId::B => &self.b,
        }
    }

    fn node_mut(&mut self, id: NodeId) -> &mut PairNode {
        match id {
            NodeId::A => &mut self.a,
            NodeId::B => &mut self.b,
        }
    }

    /// The child of a node, for tests and the watchdog's own signals.
    pub fn child_pid(&self, id: NodeId) -> Option<i32> {
        self.node(id)
            .child
            .as_ref()
            .map(oscarbox_supervisor::Child::pid)
    }

    /// Sends `signal` to a node's process group (tests inject faults this way).
    pub fn signal(&self, id: NodeId, signal: Signal) {
        if let Some(child) = self.node(id).child.as_ref() {
            let _ = child.signal_group(signal);
        }
    }

    /// Initializes and starts both nodes if needed and makes sure the accounts, the heartbeat
    /// table and the ledger exist. The first start makes node A the primary at epoch 0; the
    /// ticks that follow promote it (epoch 1) and attach B.
    pub async fn bootstrap(
        &mut self,
        database: &str,
        app_user: &str,
        app_password: &str,
        monitor_password: &str,
    ) -> anyhow::Result<()> {
        use anyhow::Context as _;
        for id in [NodeId::A, NodeId::B] {
            let node = self.node_mut(id);
            oscarbox_mariadb::init_data_dir(&node.spec)
                .await
                .with_context(|| format!("initialize {id}'s data directory"))?;
            if node.child.is_none() {
                node.child = Some(
                    oscarbox_mariadb::start(&node.spec, START_TIMEOUT)
                        .await
                        .with_context(|| format!("start {id}"))?,
                );
            }
        }
        let current = ledger::read(&self.paths.ledger)?;
        let ledger = current.unwrap_or(Ledger {
            epoch: 0,
            primary: NodeId::A,
        });
        if current.is_none() {
            // Accounts and the heartbeat table are made on the first primary and reach the
            // replica through replication, so both nodes hold the same grants. A database
            // restored onto a fresh machine (`oscarbox restore box`) has them already, with
            // the old machine's passwords: the secrets files here are the source of truth.
            let primary = self.node(ledger.primary);
            let repl = &self.repl_password;
            primary
                .exec(&[
                    "CREATE DATABASE IF NOT EXISTS oscarbox_pair".into(),
                    "CREATE TABLE IF NOT EXISTS oscarbox_pair.heartbeat (id tinyint NOT NULL PRIMARY KEY, beat datetime(6) NOT NULL) ENGINE=InnoDB".into(),
                    format!("CREATE USER IF NOT EXISTS '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{repl}'"),
                    format!("ALTER USER '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{repl}'"),
                    format!("GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.1'"),
                    format!("CREATE USER IF NOT EXISTS '{MONITOR_USER}'@'127.0.0.1' IDENTIFIED BY '{monitor_password}'"),
                    format!("ALTER USER '{MONITOR_USER}'@'127.0.0.1' IDENTIFIED BY '{monitor_password}'"),
                    format!("GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO '{MONITOR_USER}'@'127.0.0.1'"),
                    format!("GRANT SELECT ON oscarbox_pair.* TO '{MONITOR_USER}'@'127.0.0.1'"),
                ])
                .await?;
            oscarbox_mariadb::bootstrap_app(&primary.spec.socket, database, app_user, app_password)
                .await
                .context("create the EMR's database and account")?;
            ledger::write(&self.paths.ledger, &ledger)?;
        }
        Ok(())
    }

    /// One tick: observe, plan, apply. Returns the plan (for tests and `oscarbox db status`).
    pub async fn tick(&mut self) -> Plan {
        let obs = match self.observe().await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(alert = true, "failed to observe the database pair: {e}");
                return Plan {
                    kind: oscarbox_failover::Kind::Blocked,
                    reason: e.to_string(),
                    steps: Vec::new(),
                };
            }
        };
        let primary = obs.ledger.primary;
        if obs.node(primary).is_writable() {
            self.last_served = Some(tokio::time::Instant::now());
            self.beat(primary).await;
        }
        let plan = self.pair.tick(&obs, &self.policy);
        if !plan.steps.is_empty() {
            tracing::info!("database pair: {plan}");
            self.last_plan = Some(plan.to_string());
        }
        let began = tokio::time::Instant::now();
        self.timeline.clear();
        for (i, step) in plan.steps.iter().enumerate() {
            if let Err(e) = self.apply(step).await {
                tracing::warn!(
                    step = i + 1,
                    "failed to {step}: {e}; the next tick plans again"
                );
                break;
            }
            self.timeline.push((began.elapsed(), step.to_string()));
        }
        plan
    }

    /// A planned switchover (`oscarbox db switchover`): refused with the reason when the pair
    /// is not in a state to do it safely; otherwise applied step by step. Writes are blocked
    /// from the old primary's `read_only` until the new one is promoted.
    pub async fn switchover(&mut self) -> Result<(Plan, Duration), SwitchoverError> {
        let obs = self
            .observe()
            .await
            .map_err(|e| SwitchoverError::Refused(e.to_string()))?;
        let plan = oscarbox_failover::plan_switchover(&obs, &self.policy)
            .map_err(|r| SwitchoverError::Refused(r.0))?;
        tracing::info!("database pair: {plan}");
        self.last_plan = Some(plan.to_string());
        let mut blocked_at = None;
        let mut write_block = Duration::ZERO;
        for (i, step) in plan.steps.iter().enumerate() {
            if matches!(step, Step::SetReadOnly { .. }) && blocked_at.is_none() {
                blocked_at = Some(tokio::time::Instant::now());
            }
            if let Err(e) = self.apply(step).await {
                tracing::warn!(step = i + 1, "failed to {step}: {e}; the next tick repairs");
                return Err(SwitchoverError::Failed {
                    step: step.to_string(),
                    cause: e.to_string(),
                });
            }
            if let (Step::Promote { .. }, Some(at)) = (step, blocked_at) {
                write_block = at.elapsed();
            }
        }
        tracing::info!(
            write_block_ms = write_block.as_millis(),
            "database pair: switchover done"
        );
        Ok((plan, write_block))
    }

    /// Answers one control-socket request.
    pub async fn answer(&mut self, request: DbRequest) -> DbAnswer {
        match request {
            DbRequest::Status => match self.status().await {
                Ok(s) => DbAnswer::Status(Box::new(s)),
                Err(e) => DbAnswer::Error {
                    message: e.to_string(),
                },
            },
            DbRequest::Switchover => match self.switchover().await {
                Ok((plan, block)) => DbAnswer::Switched {
                    plan: plan.to_string(),
                    write_block_ms: u64::try_from(block.as_millis()).unwrap_or(u64::MAX),
                },
                Err(SwitchoverError::Refused(message)) => DbAnswer::Refused { message },
                Err(e) => DbAnswer::Error {
                    message: e.to_string(),
                },
            },
        }
    }

    /// The pair as `oscarbox db status` shows it.
    pub async fn status(&mut self) -> Result<DbPairStatus, ledger::LedgerError> {
        let obs = self.observe().await?;
        let letter = |id: NodeId| match id {
            NodeId::A => "A".to_owned(),
            NodeId::B => "B".to_owned(),
        };
        let nodes = [NodeId::A, NodeId::B]
            .into_iter()
            .map(|id| {
                let n = self.node(id);
                let mut view = DbPairNode {
                    id: letter(id),
                    name: n.spec.name.clone(),
                    address: n.address().to_string(),
                    role: if id == obs.ledger.primary {
                        "primary"
                    } else {
                        "replica"
                    }
                    .into(),
                    state: String::new(),
                    writable: None,
                    gtid_binlog_pos: None,
                    gtid_current_pos: None,
                    replicating: None,
                    lag_seconds: None,
                    semi_sync_master: None,
                    semi_sync_active: None,
                    detail: None,
                };
                match obs.node(id) {
                    Node::Up(s) => {
                        view.state = "up".into();
                        view.writable = Some(!s.read_only);
                        view.gtid_binlog_pos = Some(s.gtid_binlog_pos.to_string());
                        view.gtid_current_pos = Some(s.gtid_current_pos.to_string());
                        view.replicating = s
                            .replica
                            .as_ref()
                            .map(|r| r.sql_running && r.io == oscarbox_failover::IoThread::Running);
                        view.lag_seconds = s.heartbeat_lag.map(|l| l.as_secs_f64());
                        view.semi_sync_master = Some(s.semi_sync.enabled);
                        view.semi_sync_active = Some(s.semi_sync.active);
                    }
                    Node::Down { exited, .. } => {
                        view.state = "down".into();
                        view.detail = exited.clone();
                    }
                    Node::Unresponsive { reason, .. } => {
                        view.state = "unresponsive".into();
                        view.detail = Some(reason.clone());
                    }
                }
                view
            })
            .collect();
        Ok(DbPairStatus {
            epoch: obs.ledger.epoch,
            primary: letter(obs.ledger.primary),
            endpoint_target: obs.endpoint.map(letter),
            nodes,
            last_plan: self.last_plan.clone(),
            last_failover: self.last_failover(),
        })
    }

    async fn observe(&mut self) -> Result<Observation, ledger::LedgerError> {
        let ledger = ledger::read(&self.paths.ledger)?.unwrap_or(Ledger {
            epoch: 0,
            primary: NodeId::A,
        });
        let (pa, pb) = (self.a.spec.port, self.b.spec.port);
        let (a, b) = tokio::join!(self.a.observe(pb), self.b.observe(pa));
        let endpoint = self.endpoint.target().and_then(|t| {
            [NodeId::A, NodeId::B]
                .into_iter()
                .find(|id| self.node(*id).address() == t)
        });
        Ok(Observation {
            now: self.started.elapsed(),
            ledger,
            endpoint,
            a,
            b,
        })
    }

    /// The primary's heartbeat row, from which the replica's lag is read. Best effort: a
    /// primary that cannot take it will be seen by the next observation.
    async fn beat(&self, primary: NodeId) {
        let _ = self
            .node(primary)
            .exec(&["REPLACE INTO oscarbox_pair.heartbeat (id, beat) VALUES (1, NOW(6))".into()])
            .await;
    }

    async fn apply(&mut self, step: &Step) -> Result<(), StepError> {
        match step {
            Step::Start { node } => {
                let n = self.node_mut(*node);
                if n.child.is_none() {
                    let child = oscarbox_mariadb::start(&n.spec, START_TIMEOUT)
                        .await
                        .map_err(|e| StepError::Other(format!("start {node}: {e}")))?;
                    n.child = Some(child);
                    n.exited = None;
                }
                Ok(())
            }
            Step::Stop { node } => {
                let n = self.node_mut(*node);
                if let Some(mut child) = n.child.take() {
                    // A fence is a kill, never a clean shutdown: a primary let run again (a
                    // SIGCONT, a SIGTERM's orderly stop) releases the commits that were waiting
                    // for the replica's acknowledgement, and its clients would be told "done"
                    // for writes the new primary never receives. InnoDB and the binlog
                    // (sync_binlog=1) recover from the kill; whatever it had extra is saved
                    // when it rejoins.
                    let _ = child.signal_group(Signal::SIGKILL);
                    let status = child
                        .wait()
                        .await
                        .map_err(|e| StepError::Other(format!("stop {node}: {e}")))?;
                    n.exited = Some(format!("stopped by the watchdog ({status})"));
                }
                Ok(())
            }
            Step::SetReadOnly { node } => {
                self.node(*node)
                    .exec(&["SET GLOBAL read_only = ON".into()])
                    .await
            }
            Step::DrainRelayLog {
                node,
                io_pos,
                timeout,
            } => {
                let n = self.node(*node);
                // The IO thread is stopped and never restarted here: a restarted IO thread
                // starts a new relay log and the events only the old one held are gone.
                n.exec(&[
                    "STOP SLAVE IO_THREAD".into(),
                    "START SLAVE SQL_THREAD".into(),
                ])
                .await?;
                // What it received up to the moment its IO thread stopped, which may be more
                // than the plan saw: an old primary being stopped can still commit (and have
                // acknowledged) what was in flight, and the replica acknowledged receiving it.
                let received = n.received().await?;
                let target = io_pos.advanced_to(&received);
                if n.gtid_wait(&target, *timeout).await? {
                    Ok(())
                } else {
                    Err(StepError::WaitTimedOut {
                        node: *node,
                        waited: *timeout,
                    })
                }
            }
            Step::WaitForCatchUp {
                replica,
                primary,
                timeout,
            } => {
                let mut conn = self.node(*primary).conn().await?;
                let pos: Option<String> = mysql_async::prelude::Queryable::query_first(
                    &mut conn,
                    "SELECT @@global.gtid_binlog_pos",
                )
                .await
                .map_err(|source| StepError::Sql {
                    node: *primary,
                    source,
                })?;
                let _ = conn.disconnect().await;
                let pos = pos
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| StepError::Other(format!("unreadable GTID list: {e}")))?;
                if self.node(*replica).gtid_wait(&pos, *timeout).await? {
                    Ok(())
                } else {
                    Err(StepError::WaitTimedOut {
                        node: *replica,
                        waited: *timeout,
                    })
                }
            }
            Step::AdvanceEpoch { epoch, primary } => ledger::write(
                &self.paths.ledger,
                &Ledger {
                    epoch: *epoch,
                    primary: *primary,
                },
            )
            .map_err(|e| StepError::Other(e.to_string())),
            Step::Promote { node, epoch } => {
                // The ledger is the authority: read back, not remembered.
                let held = ledger::read(&self.paths.ledger)
                    .map_err(|e| StepError::Other(e.to_string()))?;
                if held
                    != Some(Ledger {
                        epoch: *epoch,
                        primary: *node,
                    })
                {
                    return Err(StepError::Other(format!(
                        "the ledger does not name {node} at epoch {epoch}; not promoting"
                    )));
                }
                self.node(*node)
                    .exec(&[
                        "STOP SLAVE".into(),
                        "RESET SLAVE ALL".into(),
                        "SET GLOBAL rpl_semi_sync_master_enabled = ON".into(),
                        "SET GLOBAL read_only = OFF".into(),
                    ])
                    .await
            }
            Step::RepointEndpoint { to } => {
                self.endpoint.point_at(Some(self.node(*to).address()));
                Ok(())
            }
            Step::AttachReplica { node, primary } => {
                // Its position is its own history, so it asks for exactly what it lacks.
                self.attach(*node, *primary, "@@global.gtid_current_pos")
                    .await?;
                self.complete_incident(*node, &crate::incident::none_lost(*node, *primary));
                Ok(())
            }
            Step::StartReplication { node } => self.node(*node).exec(&["START SLAVE".into()]).await,
            Step::SetSemiSyncMaster { node, on } => {
                let v = if *on { "ON" } else { "OFF" };
                self.node(*node)
                    .exec(&[format!("SET GLOBAL rpl_semi_sync_master_enabled = {v}")])
                    .await
            }
            Step::PreserveExtra { node, .. } => {
                let dir = self
                    .paths
                    .preserved
                    .join(format!("{}-{node}", unix_seconds()).replace(' ', "-"));
                let saved =
                    crate::rebuild::preserve_extra(self.node(*node), self.node(node.other()), &dir)
                        .await?;
                let line = crate::incident::saved(*node, node.other(), &saved, &dir);
                self.complete_incident(*node, &line);
                Ok(())
            }
            Step::Rebuild { node, from } => {
                let n = self.node_mut(*node);
                if let Some(mut child) = n.child.take() {
                    let _ = child.signal_group(Signal::SIGCONT);
                    let _ = child.terminate(STOP_GRACE).await;
                }
                let gtid =
                    crate::rebuild::rebuild_data_dir(self.node(*node), self.node(*from)).await?;
                let n = self.node_mut(*node);
                let child = oscarbox_mariadb::start(&n.spec, START_TIMEOUT)
                    .await
                    .map_err(|e| {
                        StepError::Other(format!("start {node} after its rebuild: {e}"))
                    })?;
                n.child = Some(child);
                n.exited = None;
                if gtid.parse::<oscarbox_failover::GtidList>().is_err() {
                    return Err(StepError::Other(format!(
                        "the backup's GTID position {gtid:?} is unreadable"
                    )));
                }
                self.attach(*node, *from, &format!("'{gtid}'")).await
            }
            Step::Incident(i) => self
                .incident(i)
                .map_err(|e| StepError::Other(e.to_string())),
            Step::Alert { message } => {
                tracing::error!(alert = true, "database pair: {message}");
                Ok(())
            }
            Step::Record { message } => {
                tracing::info!("database pair: {message}");
                Ok(())
            }
        }
    }

    /// Makes `node` replicate from `primary` from the GTID position `slave_pos` (an SQL
    /// expression: a quoted GTID list we read, or a server variable).
    async fn attach(
        &self,
        node: NodeId,
        primary: NodeId,
        slave_pos: &str,
    ) -> Result<(), StepError> {
        let source = self.node(primary).address();
        let statements = [
            "SET GLOBAL rpl_semi_sync_master_enabled = OFF".into(),
            "STOP SLAVE".into(),
            format!("SET GLOBAL gtid_slave_pos = {slave_pos}"),
            format!(
                "CHANGE MASTER TO MASTER_HOST = '{}', MASTER_PORT = {}, MASTER_USER = '{REPL_USER}', MASTER_PASSWORD = '{}', MASTER_USE_GTID = slave_pos, MASTER_HEARTBEAT_PERIOD = 1, MASTER_CONNECT_RETRY = 1",
                source.ip(),
                source.port(),
                self.repl_password
            ),
            "START SLAVE".into(),
        ];
        self.node(node).exec(&statements).await
    }

    /// Writes the incident report: plain text, for a person.
    fn incident(&self, i: &Incident) -> std::io::Result<()> {
        let recovery = self.last_served.map(|t| t.elapsed());
        let text =
            crate::incident::report(i, std::time::SystemTime::now(), recovery, &self.timeline);
        std::fs::create_dir_all(&self.paths.incidents)?;
        oscarbox_common::write_private(
            &self
                .paths
                .incidents
                .join(crate::incident::file_name(i.epoch)),
            text.as_bytes(),
        )
    }

    /// Completes the incident report of the failover away from `old_primary` at the current
    /// epoch, once that node is back and what it had is known: the transactions lost, none or
    /// the exact list. Best effort (the report is for a person; the facts are also logged).
    fn complete_incident(&self, old_primary: NodeId, lost: &str) {
        let Ok(Some(held)) = ledger::read(&self.paths.ledger) else {
            return;
        };
        let path = self
            .paths
            .incidents
            .join(crate::incident::file_name(held.epoch));
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        let Some(text) = crate::incident::complete(&text, old_primary, lost) else {
            return;
        };
        match oscarbox_common::write_private(&path, text.as_bytes()) {
            Ok(()) => tracing::info!(
                "database pair: transactions lost in the failover away from {old_primary}: {lost}"
            ),
            Err(e) => tracing::warn!(
                "failed to complete the incident report {}: {e}",
                path.display()
            ),
        }
    }

    /// The newest failover's report, read back.
    fn last_failover(&self) -> Option<oscarbox_watchdog_api::db::DbFailover> {
        let newest = std::fs::read_dir(&self.paths.incidents)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .max()?;
        let text = std::fs::read_to_string(&newest).ok()?;
        Some(crate::incident::parse(&newest.display().to_string(), &text))
    }

    /// Runs ticks until `shutdown`, answering control requests between them, then stops both
    /// nodes.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        mut commands: tokio::sync::mpsc::Receiver<Command>,
    ) {
        let mut next_tick = tokio::time::Instant::now() + TICK;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some((request, reply)) = commands.recv() => {
                    let _ = reply.send(self.answer(request).await);
                    continue;
                }
                () = tokio::time::sleep_until(next_tick) => {}
            }
            let _ = self.tick().await;
            next_tick = tokio::time::Instant::now() + TICK;
        }
        self.stop().await;
    }

    /// Closes the endpoint and stops both nodes cleanly.
    pub async fn stop(mut self) {
        self.endpoint.point_at(None);
        for id in [NodeId::A, NodeId::B] {
            if let Some(mut child) = self.node_mut(id).child.take() {
                let _ = child.signal_group(Signal::SIGCONT);
                let _ = child.terminate(Duration::from_secs(30)).await;
            }
        }
    }

    /// Whether a node answers `read_only = OFF` right now (for invariant sampling).
    pub async fn writable(&self, id: NodeId) -> Option<bool> {
        let mut conn = self.node(id).conn().await.ok()?;
        let ro: Option<i64> = tokio::time::timeout(
            PROBE_TIMEOUT,
            mysql_async::prelude::Queryable::query_first(&mut conn, "SELECT @@global.read_only"),
        )
        .await
        .ok()?
        .ok()?;
        let _ = conn.disconnect().await;
        ro.map(|r| r == 0)
    }
}

/// Whether an observation shows the pair settled: the holder writable, the other replicating
/// from it, the endpoint on the holder.
pub fn settled(obs_primary: &Node, obs_replica: &Node) -> bool {
    obs_primary.is_writable()
        && obs_replica
            .status()
            .and_then(|s| s.replica.as_ref())
            .is_some_and(|r| r.sql_running && r.io == oscarbox_failover::IoThread::Running)
}

/// Seconds since the Unix epoch, for file names.
pub(crate) fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
