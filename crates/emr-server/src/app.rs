//! The HTTP application: routes, shared state and the middleware stack.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use oscarbox_config::Config;

use crate::auth::LockoutPolicy;
use crate::db::Db;
use crate::demographic::rest;
use crate::faults::{self, Faults};
use crate::inflight::{self, Inflight};
use crate::{documents, oauth, session, soap};

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

/// The REST resources, mounted under `/ws/rs` (browser session) and `/ws/services` (OAuth).
fn rest_routes() -> Router<AppState> {
    Router::new()
        .route("/demographics", post(rest::create).put(rest::update))
        .route("/demographics/quickSearch", get(rest::quick_search))
        .route("/demographics/basic/{id}", get(rest::get_basic))
        .route("/demographics/{id}", get(rest::get))
        .route("/demographics/{id}/basic", get(rest::get_basic))
        // Uploads stream under their own limit (`emr.max-document-mib`), not the body limit.
        .route(
            "/demographics/{id}/documents",
            get(documents::list).post(documents::upload),
        )
        .route("/documents/{no}", get(documents::describe))
        .route("/documents/{no}/download", get(documents::download))
        .route("/status/checkIfAuthed", get(rest::check_if_authed))
}

/// Everything OSCAR serves under its context path.
fn context_routes(state: &AppState) -> Router<AppState> {
    ws_routes()
        .nest(
            "/ws/rs",
            rest_routes().layer(from_fn_with_state(state.clone(), session::require)),
        )
        .nest(
            "/ws/services",
            rest_routes().layer(from_fn_with_state(state.clone(), oauth::require)),
        )
        .route(
            "/ws/oauth/initiate",
            get(oauth::initiate).post(oauth::initiate),
        )
        .route("/ws/oauth/authorize", get(oauth::authorize))
        .route("/ws/oauth/authorize/decision", post(oauth::decision))
        .route("/ws/oauth/token", get(oauth::token).post(oauth::token))
        .route("/login.do", get(session::login_form).post(session::login))
        .route("/logout.do", post(session::logout))
}

pub fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .merge(context_routes(&state))
        .nest("/oscar", context_routes(&state));
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
