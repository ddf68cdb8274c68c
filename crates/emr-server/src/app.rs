//! The HTTP application: routes, shared state and the middleware stack.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use oscarbox_config::Config;

use crate::auth::LockoutPolicy;
use crate::db::Db;
use crate::faults::{self, Faults};
use crate::inflight::{self, Inflight};
use crate::soap;

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub instance: u32,
    pub db: Db,
    /// The box-wide epoch that SOAP tokens are derived from (see migration 2).
    pub token_epoch_ms: i64,
    pub lockout: LockoutPolicy,
    pub inflight: Arc<Inflight>,
    pub faults: Arc<Faults>,
}

/// OSCAR's SOAP surface, mounted both at the root and under stock OSCAR's `/oscar` context
/// path, because integrators' configurations carry `https://host:8443/oscar/ws/...`.
fn ws_routes() -> Router<AppState> {
    Router::new()
        .route("/ws", get(soap::service_list))
        .route("/ws/", get(soap::service_list))
        .route("/ws/{service}", post(soap::post).get(soap::get))
        .route("/ws/{service}/", post(soap::post).get(soap::get))
}

pub fn router(state: AppState) -> Router {
    let mut app = Router::new().merge(ws_routes()).nest("/oscar", ws_routes());
    if state.config.emr.fault_injection.enabled {
        app = app.route(
            &format!("{}{{mode}}", faults::PATH_PREFIX),
            post(faults::set),
        );
    }
    app.layer(DefaultBodyLimit::max(
        state.config.emr.max_request_body_bytes,
    ))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        faults::apply,
    ))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        inflight::track,
    ))
    .with_state(state)
}
