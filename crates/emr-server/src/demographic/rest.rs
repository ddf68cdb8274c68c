//! REST `/demographics` (reference §2.2) under `/ws/services/` (OAuth) and `/ws/rs/` (a
//! browser session): read, basic read, `quickSearch`, create and update, with OSCAR's JSON
//! names. Input is validated field by field; a refusal names every field that was wrong and
//! changes nothing.

#![expect(
    clippy::result_large_err,
    reason = "a refused request's error is its finished answer, built once on the way out"
)]

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use mysql_async::TxOpts;
use oscar_emr_api::{AbstractSearchResponse, DemographicInput, ErrorResponse, FieldErrorTo};
use serde::Serialize;

use super::json;
use super::record::Demographic;
use super::soap::audit_reads;
use super::store;
use crate::app::AppState;
use crate::audit;
use crate::db::DbError;
use crate::principal::Principal;

/// A JSON answer.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!("failed to write a JSON answer: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A refusal with OSCAR's `success`/`message` pair.
pub fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &ErrorResponse::new(message, Vec::new()))
}

/// A database failure: logged (without data), answered 503 so that clients retry.
pub fn unavailable(e: &DbError) -> Response {
    tracing::error!("failed to answer a REST request: {e}");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "the records database is not reachable just now; try again shortly",
    )
}

/// A patient number from the path: digits, optionally with OSCAR's `.json` extension mapping.
pub fn parse_id(raw: &str) -> Result<i32, Response> {
    positive_number(raw.strip_suffix(".json").unwrap_or(raw), "patient")
}

/// A record number from the path (`what`: "patient", "document"), or a 400 naming it.
pub fn positive_number(raw: &str, what: &str) -> Result<i32, Response> {
    raw.parse::<i32>().ok().filter(|n| *n > 0).ok_or_else(|| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("the {what} number in the path must be a positive integer"),
        )
    })
}

fn not_found(id: i32) -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        format!("no patient with demographicNo {id}"),
    )
}

fn today(tz: &jiff::tz::TimeZone) -> jiff::civil::Date {
    jiff::Timestamp::now().to_zoned(tz.clone()).date()
}

async fn read(state: &AppState, who: &Principal, raw_id: &str, full: bool) -> Response {
    let id = match parse_id(raw_id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let tz = jiff::tz::TimeZone::system();
    let result = async {
        let mut conn = state.db.conn().await?;
        let Some(d) = store::load(&mut conn, id).await? else {
            return Ok(None);
        };
        let provider = match (full, d.provider_no.as_deref().filter(|p| !p.is_empty())) {
            (true, Some(p)) => store::provider(&mut conn, p).await?,
            _ => None,
        };
        drop(conn);
        audit_reads(
            state,
            who,
            if full {
                "GET demographics"
            } else {
                "GET demographics basic"
            },
            std::slice::from_ref(&d),
        )
        .await?;
        Ok::<_, DbError>(Some(json::to_json(&d, provider.as_ref(), today(&tz), &tz)))
    }
    .await;
    match result {
        Ok(Some(to)) => json_response(StatusCode::OK, &to),
        Ok(None) => not_found(id),
        Err(e) => unavailable(&e),
    }
}

/// `GET /demographics/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    read(&state, &who, &id, true).await
}

/// `GET /demographics/{id}/basic` (and Open-O's `/demographics/basic/{id}`): the patient
/// without the assigned provider's record.
pub async fn get_basic(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    read(&state, &who, &id, false).await
}

/// `GET /demographics/quickSearch?query=`: active patients by name (`LAST[,FIRST]`), address
/// (`addr:`) or chart number (`chartNo:`); the first 10 and the full count.
pub async fn quick_search(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Response {
    let fields = crate::html::form_fields(query.as_deref().unwrap_or("").as_bytes());
    let timestamp = jiff::Timestamp::now().as_millisecond();
    let Some(text) = crate::html::field(&fields, "query").map(str::to_owned) else {
        // OSCAR: a null query is an empty answer.
        return json_response(
            StatusCode::OK,
            &AbstractSearchResponse::<oscar_emr_api::DemographicSearchResult> {
                offset: 0,
                limit: 0,
                total: 0,
                timestamp,
                content: Vec::new(),
                query: None,
            },
        );
    };
    if text.chars().count() > 100 {
        return refuse(StatusCode::BAD_REQUEST, "query: at most 100 characters");
    }
    let tz = jiff::tz::TimeZone::system();
    let result = async {
        let mut conn = state.db.conn().await?;
        let (found, total) =
            store::quick_search(&mut conn, &store::QuickQuery::parse(&text)).await?;
        let mut content = Vec::with_capacity(found.len());
        for d in &found {
            let name = match d.provider_no.as_deref().filter(|p| !p.is_empty()) {
                Some(p) => store::provider(&mut conn, p).await?.and_then(|p| p.name),
                None => None,
            };
            content.push(json::search_result(d, name, &tz));
        }
        drop(conn);
        audit_reads(&state, &who, "quickSearch", &found).await?;
        Ok::<_, DbError>((content, total))
    }
    .await;
    match result {
        Ok((content, total)) => json_response(
            StatusCode::OK,
            &AbstractSearchResponse {
                offset: 0,
                limit: i32::try_from(store::QUICK_SEARCH_ROWS).unwrap_or(i32::MAX),
                total: i32::try_from(total).unwrap_or(i32::MAX),
                timestamp,
                content,
                query: Some(text),
            },
        ),
        Err(e) => unavailable(&e),
    }
}

/// The body as `DemographicInput`, or the 4xx that says what is wrong with it.
fn parse_input(headers: &HeaderMap, body: &[u8]) -> Result<DemographicInput, Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            let t = t.trim();
            t.eq_ignore_ascii_case("application/json") || t.to_ascii_lowercase().ends_with("+json")
        });
    if !json {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the patient as JSON, with Content-Type: application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("the body is not a patient in OSCAR's JSON form: {e}"),
        )
    })
}

fn invalid(errors: Vec<json::FieldError>) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &ErrorResponse::new(
            "the patient was not saved: fix the fields listed in errors",
            errors
                .into_iter()
                .map(|e| FieldErrorTo {
                    field: e.field,
                    message: e.message,
                })
                .collect(),
        ),
    )
}

/// Which fields a change touched, by column, for the audit row (names only, never values).
fn changed_columns(before: &Demographic, after: &Demographic) -> String {
    store::changes(before, after)
        .into_iter()
        .map(|(name, _)| name)
        .collect::<Vec<_>>()
        .join(",")
}

/// `POST /demographics`: a new patient.
pub async fn create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = match parse_input(&headers, &body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let tz = jiff::tz::TimeZone::system();
    let mut d = match json::apply_input(None, input, &tz) {
        Ok(d) => d,
        Err(errors) => return invalid(errors),
    };
    d.last_update_user = who.provider_no.clone();
    let result = async {
        let mut conn = state.db.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let id = store::insert(&mut tx, &d).await?;
        let mut entry = who.audit(audit::ADD, audit::DEMOGRAPHIC);
        entry.content_id = Some(id.to_string());
        entry.demographic_no = Some(id);
        entry.data = Some("POST demographics".into());
        audit::write_in(&mut tx, entry).await?;
        tx.commit().await?;
        let saved = store::load(&mut conn, id).await?;
        Ok::<_, DbError>(saved)
    }
    .await;
    match result {
        Ok(Some(saved)) => json_response(
            StatusCode::OK,
            &json::to_json(&saved, None, today(&tz), &tz),
        ),
        Ok(None) => unavailable(&DbError::Row(
            "the new patient could not be read back".into(),
        )),
        Err(e) => unavailable(&e),
    }
}

/// `PUT /demographics`: an update of the patient named by `demographicNo` in the body.
/// Fields left out keep their value; `null` clears an optional one.
pub async fn update(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = match parse_input(&headers, &body) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let Some(id) = input.demographic_no.filter(|id| *id > 0) else {
        return invalid(vec![json::FieldError {
            field: "demographicNo".into(),
            message: "required: the number of the patient to update".into(),
        }]);
    };
    let tz = jiff::tz::TimeZone::system();
    let result = async {
        let mut conn = state.db.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let Some(before) = store::load_for_update(&mut tx, id).await? else {
            tx.rollback().await?;
            return Ok(Err(not_found(id)));
        };
        let mut after = match json::apply_input(Some(&before), input, &tz) {
            Ok(d) => d,
            Err(errors) => {
                tx.rollback().await?;
                return Ok(Err(invalid(errors)));
            }
        };
        after.last_update_user = who.provider_no.clone();
        store::update(&mut tx, &before, &after).await?;
        let mut entry = who.audit(audit::UPDATE, audit::DEMOGRAPHIC);
        entry.content_id = Some(id.to_string());
        entry.demographic_no = Some(id);
        entry.data = Some(format!(
            "PUT demographics: {}",
            changed_columns(&before, &after)
        ));
        audit::write_in(&mut tx, entry).await?;
        tx.commit().await?;
        let saved = store::load(&mut conn, id).await?;
        Ok::<_, DbError>(Ok(saved))
    }
    .await;
    match result {
        Ok(Ok(Some(saved))) => json_response(
            StatusCode::OK,
            &json::to_json(&saved, None, today(&tz), &tz),
        ),
        Ok(Ok(None)) => not_found(id),
        Ok(Err(r)) => r,
        Err(e) => unavailable(&e),
    }
}

/// `GET /status/checkIfAuthed`: OSCAR's cheap authenticated probe.
pub async fn check_if_authed(Extension(who): Extension<Principal>) -> Response {
    json_response(
        StatusCode::OK,
        &oscar_emr_api::GenericRestResponse {
            success: true,
            message: who.provider_no.clone(),
        },
    )
}
