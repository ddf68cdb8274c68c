//! Fault injection for tests: make this instance hang (process alive, TCP accepted, nothing
//! answered), answer slowly, exit, or die after handling a request but before answering it
//! (`crash-after`: the next request other than a `SystemInfoService` probe is applied, then
//! the process exits, which is how a proxy's "never replay a write" is tested). Present only
//! when `emr.fault-injection.enabled`, which configuration validation refuses outside the dev
//! profile.
//!
//! `POST /oscarbox/fault/{hang|slow|exit|crash-after|clear}` (`slow` takes `?ms=`), from
//! loopback only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

pub const PATH_PREFIX: &str = "/oscarbox/fault/";

const NORMAL: u8 = 0;
const HANG: u8 = 1;
const SLOW: u8 = 2;
const CRASH_AFTER: u8 = 3;

#[derive(Debug, Default)]
pub struct Faults {
    mode: AtomicU8,
    slow_ms: AtomicU64,
}

impl Faults {
    pub fn describe(&self) -> &'static str {
        match self.mode.load(Ordering::Relaxed) {
            HANG => "hang",
            SLOW => "slow",
            CRASH_AFTER => "crash-after",
            _ => "none",
        }
    }
}

/// Middleware: applies the current fault to every request but the fault switch itself.
pub async fn apply(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let crash_after = state.faults.mode.load(Ordering::Relaxed) == CRASH_AFTER
        && !path.starts_with(PATH_PREFIX)
        && !path.ends_with("/SystemInfoService");
    if !path.starts_with(PATH_PREFIX) {
        match state.faults.mode.load(Ordering::Relaxed) {
            HANG => std::future::pending::<()>().await,
            SLOW => {
                let ms = state.faults.slow_ms.load(Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            _ => {}
        }
    }
    let resp = next.run(req).await;
    if crash_after {
        tracing::warn!("fault injection: request handled; exiting with status 70 before answering");
        std::process::exit(70);
    }
    resp
}

/// The switch.
pub async fn set(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(mode): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if !peer.ip().is_loopback() {
        return StatusCode::FORBIDDEN.into_response();
    }
    let faults = &state.faults;
    match mode.as_str() {
        "hang" => faults.mode.store(HANG, Ordering::Relaxed),
        "slow" => {
            let ms = query
                .as_deref()
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("ms=")))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(2000);
            faults.slow_ms.store(ms, Ordering::Relaxed);
            faults.mode.store(SLOW, Ordering::Relaxed);
        }
        "crash-after" => faults.mode.store(CRASH_AFTER, Ordering::Relaxed),
        "clear" => faults.mode.store(NORMAL, Ordering::Relaxed),
        "exit" => {
            tracing::warn!("fault injection: exiting at once with status 70");
            std::process::exit(70);
        }
        other => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown fault {other:?}: expected hang, slow, exit, crash-after or clear\n"
                ),
            )
                .into_response()
        }
    }
    tracing::warn!(fault = mode, "fault injection: mode changed");
    (StatusCode::OK, format!("fault: {mode}\n")).into_response()
}
