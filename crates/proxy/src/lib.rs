//! `oscarbox proxy`: the TLS reverse proxy in front of the EMR instances.
//!
//! Clients (clinic browsers, OSCAR integrators) reach the EMR only through it. It balances
//! over the instances that answer SOAP `isAlive` (probed here, with the same probe code as the
//! watchdog, so it never routes to a dead instance even when the watchdog is down), ejects an
//! instance on evidence from real requests before its probes catch up, retries only what cannot
//! be applied twice, and drains an instance on the watchdog's request before it is restarted.
//!
//! Built on hyper, hyper-util and tokio-rustls rather than Pingora, which lacks least-outstanding
//! balancing, stickiness, passive checks and slow start, and replays any method on a reused
//! connection.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use oscarbox_config::Config;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod admin;
pub mod balance;
mod forward;
mod health;
mod listen;
pub mod pages;
pub mod retry;

pub use forward::{loggable_path, STICKY_COOKIE};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body the proxy sends, either way.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// What a reload may change without a restart.
#[derive(Debug, Clone)]
pub struct Settings {
    pub timeouts: retry::Timeouts,
    pub hsts: bool,
    pub sticky_sessions: bool,
    pub max_request_body_bytes: u64,
}

impl Settings {
    fn from_config(config: &Config) -> Settings {
        let p = &config.proxy;
        Settings {
            timeouts: retry::Timeouts {
                first_byte: p.first_byte_timeout,
                request: p.request_timeout,
                document: p.document_timeout,
            },
            hsts: p.hsts,
            sticky_sessions: p.sticky_sessions,
            max_request_body_bytes: p.max_request_body_bytes,
        }
    }
}

/// The state every connection shares.
pub struct Shared {
    pool: Mutex<balance::Pool>,
    budget: Mutex<retry::Budget>,
    settings: RwLock<Arc<Settings>>,
    tls: RwLock<Arc<rustls::ServerConfig>>,
    client: Client<HttpConnector, Body>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().expect("settings lock"))
    }

    fn tls(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.tls.read().expect("tls lock"))
    }

    fn finish(&self, instance: u32, outcome: balance::Outcome) {
        self.pool
            .lock()
            .expect("pool lock")
            .finish(instance, outcome, Instant::now());
    }
}

fn policy(config: &Config) -> balance::Policy {
    let p = &config.proxy;
    balance::Policy {
        rise: p.health_rise.get(),
        fall: p.health_fall.get(),
        passive_fall: p.passive_fall.get(),
        slow_start: p.slow_start,
    }
}

fn wanted_backends(config: &Config) -> Vec<(u32, std::net::SocketAddr)> {
    (1..=config.emr.instances.get())
        .filter_map(|n| config.emr.instance_addr(n).map(|a| (n, a)))
        .collect()
}

/// Runs the proxy until `shutdown`: binds its listeners, probes the instances, serves, and on
/// shutdown stops accepting and lets requests in flight finish (up to `proxy.shutdown-grace`).
/// SIGHUP re-reads `config_path` (when given): backends, timeouts and the certificate change
/// without dropping a connection; listening addresses need a restart.
pub async fn run(
    config: Arc<Config>,
    config_path: Option<PathBuf>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The ring provider is the one compiled in; installing it is idempotent for our purposes.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = oscarbox_tls::for_box(&config).context("set up TLS")?;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.proxy.connect_timeout));
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        // Below the keep-alive timeout of the instances (Tomcat's is 20 s), so that a request is
        // never written to a connection the instance is closing: that would be a 502 on a
        // write that cannot be replayed.
        .pool_idle_timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(256)
        .build(connector);
    let backends = wanted_backends(&config)
        .into_iter()
        .map(|(n, a)| balance::Backend::new(n, a))
        .collect();
    let shared = Arc::new(Shared {
        pool: Mutex::new(balance::Pool::new(policy(&config), backends)),
        budget: Mutex::new(retry::Budget::new(
            config.proxy.retry_budget_percent,
            10.0,
            Instant::now(),
        )),
        settings: RwLock::new(Arc::new(Settings::from_config(&config))),
        tls: RwLock::new(tls),
        client,
    });

    let listeners = listen::bind(&config.proxy)
        .await
        .context("bind the proxy's listeners")?;
    let admin = admin::bind(&config.proxy.admin_socket).with_context(|| {
        format!(
            "bind the admin socket {}",
            config.proxy.admin_socket.display()
        )
    })?;
    let tasks = TaskTracker::new();
    let serving = shutdown.child_token();
    let mut probes = health::start(&shared, &config, &tasks, &serving);
    tasks.spawn(admin::serve(admin, Arc::clone(&shared), serving.clone()));
    for l in listeners {
        tasks.spawn(listen::serve(
            l,
            Arc::clone(&shared),
            config.proxy.clone(),
            serving.clone(),
        ));
    }
    tracing::info!(
        https = ?config.proxy.https_ports,
        http = ?config.proxy.http_port,
        admin = %config.proxy.admin_socket.display(),
        "proxy listening"
    );

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("install the SIGHUP handler")?;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = hup.recv() => {
                let Some(path) = &config_path else {
                    tracing::info!("SIGHUP: running on the embedded default; nothing to reload");
                    continue;
                };
                match oscarbox_config::load_or_default(Some(path)) {
                    Err(errors) => tracing::error!("failed to reload, keeping the running configuration:\n{errors}"),
                    Ok(new) => match oscarbox_tls::for_box(&new) {
                        Err(e) => tracing::error!("failed to reload TLS, keeping the running configuration: {e:#}"),
                        Ok(new_tls) => {
                            *shared.tls.write().expect("tls lock") = new_tls;
                            *shared.settings.write().expect("settings lock") = Arc::new(Settings::from_config(&new));
                            shared.pool.lock().expect("pool lock").replace(policy(&new), wanted_backends(&new));
                            probes.cancel();
                            probes = health::start(&shared, &new, &tasks, &serving);
                            if new.proxy.https_ports != config.proxy.https_ports || new.proxy.http_port != config.proxy.http_port || new.proxy.listen_address != config.proxy.listen_address {
                                tracing::warn!("listening addresses changed; they take effect at the next restart");
                            }
                            tracing::info!(backends = new.emr.instances.get(), "reloaded the configuration");
                        }
                    },
                }
            }
        }
    }
    tracing::info!("stopping: no new connections; finishing requests in flight");
    serving.cancel();
    tasks.close();
    tasks.wait().await;
    let _ = std::fs::remove_file(&config.proxy.admin_socket);
    tracing::info!("proxy stopped");
    Ok(())
}
