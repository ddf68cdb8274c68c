//! The registry of requests in flight, and the SIGQUIT dump built from it: our analogue of a
//! JVM thread dump, so that a supervisor can record what a hung instance was doing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;

use crate::app::AppState;

#[derive(Debug)]
struct Entry {
    method: axum::http::Method,
    /// The path only: query strings can carry search terms, which can be patient data.
    path: String,
    started: Instant,
}

#[derive(Debug, Default)]
pub struct Inflight {
    next_id: AtomicU64,
    requests: Mutex<HashMap<u64, Entry>>,
}

/// Removes its request from the registry when the request ends, however it ends.
struct Guard<'a> {
    registry: &'a Inflight,
    id: u64,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.registry
            .requests
            .lock()
            .expect("the registry lock is never held across a panic")
            .remove(&self.id);
    }
}

impl Inflight {
    /// How many requests are in flight now.
    pub fn count(&self) -> usize {
        self.requests.lock().expect("registry lock").len()
    }

    /// One line per request in flight, oldest first.
    pub fn snapshot(&self) -> Vec<String> {
        let now = Instant::now();
        let map = self.requests.lock().expect("registry lock");
        let mut entries: Vec<(&u64, &Entry)> = map.iter().collect();
        entries.sort_by_key(|(_, e)| e.started);
        entries
            .into_iter()
            .map(|(id, e)| {
                format!(
                    "request {id}: {} {} running for {:.3}s",
                    e.method,
                    e.path,
                    now.duration_since(e.started).as_secs_f64()
                )
            })
            .collect()
    }
}

/// Middleware: registers every request for the duration of its handling.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let registry = &state.inflight;
    let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
    registry.requests.lock().expect("registry lock").insert(
        id,
        Entry {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            started: Instant::now(),
        },
    );
    let _guard = Guard { registry, id };
    next.run(req).await
}

/// Writes the dump to the log at WARN: requests in flight, then the runtime's view.
pub fn dump(inflight: &Inflight, faults: &crate::faults::Faults) {
    let requests = inflight.snapshot();
    let metrics = tokio::runtime::Handle::current().metrics();
    tracing::warn!(
        requests_in_flight = requests.len(),
        runtime_workers = metrics.num_workers(),
        runtime_alive_tasks = metrics.num_alive_tasks(),
        fault = faults.describe(),
        "task dump (SIGQUIT)"
    );
    for line in requests {
        tracing::warn!("task dump: {line}");
    }
    tracing::warn!("task dump: end");
}
