//! `oscar-emr`: OSCAR's web services on an OSCAR-shaped MariaDB schema.
//!
//! One process is one instance; the box runs several behind the proxy. An instance connects to
//! the database (waiting for it as long as it takes), applies migrations under a lock, then
//! listens; `isAlive` answers from then on. SIGTERM drains in-flight requests within the grace
//! period; SIGQUIT logs a task dump and carries on.

#![expect(
    clippy::type_complexity,
    reason = "database rows are read as tuples shaped like the SELECT beside them"
)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod db;
pub mod demographic;
pub mod documents;
pub mod faults;
pub mod html;
pub mod inflight;
pub mod login;
pub mod migrations;
pub mod oauth;
pub mod principal;
pub mod session;
pub mod soap;
pub mod system_info;
pub mod ws_security;
pub mod wsdl;

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mysql_async::prelude::Queryable;
use oscarbox_config::Config;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::app::AppState;
use crate::auth::LockoutPolicy;
use crate::db::Db;
use crate::migrations::MigrationError;

/// Runs instance `instance` until `shutdown` is cancelled, then drains within the grace period.
pub async fn run(
    config: Arc<Config>,
    instance: u32,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let span = tracing::info_span!("instance", id = instance);
    serve(config, instance, shutdown).instrument(span).await
}

async fn serve(
    config: Arc<Config>,
    instance: u32,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = config.emr.instance_addr(instance).with_context(|| {
        format!(
            "--instance {instance}: this configuration has instances 1 to {}",
            config.emr.instances
        )
    })?;
    let password_file = &config.database.app_password_file;
    let password = std::fs::read_to_string(password_file)
        .with_context(|| {
            format!(
                "read the database password from {}",
                password_file.display()
            )
        })?
        .trim()
        .to_owned();
    let db = Db::new(&config, &password);

    // The dump handler first: a supervisor may ask for a dump while the database is still
    // being waited for, and SIGQUIT's default action would end the process mid-migration.
    let inflight: Arc<inflight::Inflight> = Arc::default();
    let faults: Arc<faults::Faults> = Arc::default();
    spawn_dump_on_sigquit(Arc::clone(&inflight), Arc::clone(&faults))?;

    let Some(token_epoch_ms) =
        prepare_database(&db, &config.box_.initial_admin_credentials(), &shutdown).await?
    else {
        db.close().await;
        return Ok(());
    };

    let state = AppState {
        lockout: LockoutPolicy {
            max_failures: config.emr.login_max_failures.get(),
            window: config.emr.login_lockout,
        },
        config: Arc::clone(&config),
        instance,
        db: db.clone(),
        token_epoch_ms,
        inflight,
        faults,
    };

    prepare_documents_dir(&config.emr.documents_dir)?;
    spawn_housekeeping(state.clone(), shutdown.clone());

    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("listen on {addr} (is another instance or program using that port?)")
    })?;
    let app = app::router(state.clone());
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let mut server = tokio::spawn(server.into_future().in_current_span());
    tracing::info!(%addr, "serving");

    tokio::select! {
        biased;
        () = shutdown.cancelled() => {}
        result = &mut server => {
            result.context("join the HTTP server task")?.context("serve HTTP")?;
            // The server ends on its own only after a shutdown request began draining it.
            anyhow::ensure!(shutdown.is_cancelled(), "the HTTP server stopped without being asked to");
            tracing::info!("stopped after finishing in-flight requests");
            db.close().await;
            return Ok(());
        }
    }
    let grace = config.emr.shutdown_grace;
    match tokio::time::timeout(grace, &mut server).await {
        Ok(_) => tracing::info!("stopped after finishing in-flight requests"),
        Err(_) => {
            tracing::warn!(
                still_running = state.inflight.count(),
                ?grace,
                "requests still running after the grace period; stopping anyway"
            );
            server.abort();
        }
    }
    db.close().await;
    Ok(())
}

/// The database for an administrative command: reachable now, migrated (the command may run
/// before any instance has started).
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let password_file = &config.database.app_password_file;
    let password = std::fs::read_to_string(password_file).with_context(|| {
        format!(
            "read the database password from {} (run this as the box's user, or with sudo)",
            password_file.display()
        )
    })?;
    let db = Db::new(config, password.trim());
    try_prepare(&db, &config.box_.initial_admin_credentials())
        .await
        .context("reach and prepare the database (is the box running?)")?;
    Ok(db)
}

/// Migrates and reads the token epoch, retrying while the database is unreachable (it may be
/// starting, or failing over). Returns `None` if asked to stop meanwhile.
async fn prepare_database(
    db: &Db,
    credentials: &std::path::Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<i64>> {
    let mut delay = Duration::from_millis(100);
    loop {
        match try_prepare(db, credentials).await {
            Ok(epoch) => return Ok(Some(epoch)),
            Err(MigrationError::Db(e)) => {
                tracing::warn!(retry_in = ?delay, "failed to reach the database: {e}");
            }
            Err(e) => return Err(e).context("prepare the database"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn try_prepare(db: &Db, credentials: &std::path::Path) -> Result<i64, MigrationError> {
    let mut conn = db.conn().await?;
    migrations::lock(&mut conn).await?;
    // First-start work shares the lock, so that exactly one instance creates the administrator.
    let outcome = async {
        let outcome = migrations::apply(&mut conn).await?;
        admin::ensure(&mut conn, credentials).await?;
        Ok::<_, MigrationError>(outcome)
    }
    .await;
    migrations::unlock(&mut conn).await;
    let outcome = outcome?;
    if !outcome.applied.is_empty() {
        tracing::info!(applied = ?outcome.applied, "database schema is up to date");
    }
    let epoch: Option<String> = conn
        .query_first("SELECT value FROM oscarbox_settings WHERE name = 'ws_token_epoch_ms'")
        .await?;
    Ok(epoch.and_then(|e| e.parse().ok()).unwrap_or(0))
}

/// An upload still being written after this long was cut off by a crash.
const STALE_UPLOAD: Duration = Duration::from_secs(6 * 3600);
/// How often ended sessions, used nonces and old request tokens are removed.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(300);

/// Creates the document directory if needed (group-readable for backups, nobody else) and
/// removes uploads a crash left half-written.
fn prepare_documents_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .with_context(|| {
            format!(
                "create the document directory {} (emr.documents-dir)",
                dir.display()
            )
        })?;
    match documents::store::clean_stale_uploads(dir, STALE_UPLOAD) {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed uploads that a crash left unfinished"),
        Err(e) => tracing::warn!("failed to look for unfinished uploads: {e}"),
    }
    Ok(())
}

/// Removes ended sessions, used nonces and stale request tokens now and then. Every instance
/// runs it; the deletes are idempotent and bounded.
fn spawn_housekeeping(state: AppState, shutdown: CancellationToken) {
    tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(HOUSEKEEPING_INTERVAL) => {}
                }
                if let Err(e) = session::purge(&state).await {
                    tracing::warn!("failed to remove ended sessions: {e}");
                }
                if let Err(e) = oauth::purge(&state).await {
                    tracing::warn!("failed to remove used OAuth nonces: {e}");
                }
            }
        }
        .in_current_span(),
    );
}

fn spawn_dump_on_sigquit(
    inflight: Arc<inflight::Inflight>,
    faults: Arc<faults::Faults>,
) -> anyhow::Result<()> {
    let mut quit = signal(SignalKind::quit()).context("install the SIGQUIT handler")?;
    tokio::spawn(
        async move {
            while quit.recv().await.is_some() {
                inflight::dump(&inflight, &faults);
            }
        }
        .in_current_span(),
    );
    Ok(())
}
