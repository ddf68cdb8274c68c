//! Patient documents through REST: upload into a patient's chart, list, describe, download.
//!
//! Stored as OSCAR stores them (reference §3.2): one flat directory, the file named
//! `yyyyMMddHHmmss` + the original name, a `document` row and a `ctl_document` row linking it to
//! the patient; plus the content's SHA-256 and size in `oscarbox_document_file`. Bodies stream
//! both ways, so a 100 MB scan never sits whole in memory. The file is durable (fsynced, and
//! its directory) before the rows commit; if the rows cannot be written, the file is removed.

pub mod store;

use std::path::{Path as FsPath, PathBuf};

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine as _;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, TxOpts};
use oscar_emr_api::DocumentTo1;

use crate::app::AppState;
use crate::audit;
use crate::db::DbError;
use crate::demographic::rest::{json_response, parse_id, positive_number, refuse, unavailable};
use crate::demographic::store as patients;
use crate::html;
use crate::principal::Principal;

/// `docType` when the upload names none (OSCAR's catch-all type).
const DEFAULT_DOC_TYPE: &str = "others";
/// How many seconds an upload looks ahead for a free name (one file name uploaded again
/// within the same second).
const NAME_ATTEMPTS: i64 = 5;

fn original_name(stored: &str) -> &str {
    // OSCAR's stored name is 14 digits of time, then the original name.
    if stored.len() > 14 && stored.as_bytes()[..14].iter().all(u8::is_ascii_digit) {
        &stored[14..]
    } else {
        stored
    }
}

const SELECT: &str =
    "SELECT d.document_no, c.module_id, d.doctype, d.docdesc, d.docfilename, d.contenttype,
        d.doccreator, d.status, UNIX_TIMESTAMP(d.contentdatetime), f.sha256, f.size
 FROM document d
 JOIN ctl_document c ON c.document_no = d.document_no AND c.module = 'demographic'
 LEFT JOIN oscarbox_document_file f ON f.document_no = d.document_no";

fn to_json(row: Row) -> Option<DocumentTo1> {
    let (
        no,
        demographic_no,
        doc_type,
        description,
        file,
        content_type,
        creator,
        status,
        at,
        sha256,
        size,
    ): (
        i32,
        i32,
        Option<String>,
        String,
        String,
        String,
        String,
        String,
        Option<i64>,
        Option<String>,
        Option<i64>,
    ) = mysql_async::from_row_opt(row).ok()?;
    Some(DocumentTo1 {
        document_no: no,
        demographic_no,
        doc_type,
        description,
        file_name: original_name(&file).to_owned(),
        doc_filename: file,
        content_type,
        doc_creator: creator,
        status,
        content_date_time: at.map(|s| s * 1000),
        sha256,
        size,
    })
}

async fn find(state: &AppState, document_no: i32) -> Result<Option<DocumentTo1>, DbError> {
    let mut conn = state.db.conn().await?;
    let row: Option<Row> = conn
        .exec_first(format!("{SELECT} WHERE d.document_no = ?"), (document_no,))
        .await?;
    Ok(row.and_then(to_json))
}

fn query_fields(query: Option<&str>) -> Vec<(String, String)> {
    html::form_fields(query.unwrap_or("").as_bytes())
}

/// A content type fit to store and send back: `type/subtype` of token characters, else
/// `application/octet-stream`.
fn content_type(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .filter(|t| {
            t.len() <= 100
                && t.split_once('/').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && t.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || b"/.+-_".contains(&c))
                })
        })
        .unwrap_or("application/octet-stream")
        .to_ascii_lowercase()
}

async fn remove_file(dir: PathBuf, name: String) {
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(dir.join(name))).await;
}

/// `POST /demographics/{id}/documents?fileName=&docType=&description=`: the body is the file.
pub async fn upload(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let fields = query_fields(query.as_deref());
    let Some(original) = html::field(&fields, "fileName") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "fileName is required: the document's original file name, as a query parameter",
        );
    };
    if let Err(e) = store::check_original_name(original) {
        return refuse(StatusCode::BAD_REQUEST, format!("fileName: {e}"));
    }
    let doc_type = html::field(&fields, "docType").unwrap_or(DEFAULT_DOC_TYPE);
    let description = html::field(&fields, "description").unwrap_or(original);
    if doc_type.chars().count() > 60 || description.chars().count() > 255 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "docType may have at most 60 characters and description at most 255",
        );
    }
    let limit = state.config.emr.max_document_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return too_large(limit);
    }
    match patients_exists(&state, id).await {
        Ok(true) => {}
        Ok(false) => {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("no patient with demographicNo {id}"),
            )
        }
        Err(e) => return unavailable(&e),
    }
    let content_type = content_type(&req);
    let dir = state.config.emr.documents_dir.clone();
    let body = req.into_body().into_data_stream();
    // OSCAR's naming repeats when one file name is uploaded twice within a second: take the
    // first free second. Two identical uploads racing for it get `Exists` from the store
    // (which never replaces a file), and the loser is told to try again.
    let now = jiff::Zoned::now();
    let mut name = store::stored_name(&now, original);
    for attempt in 1..NAME_ATTEMPTS {
        if !tokio::fs::try_exists(dir.join(&name))
            .await
            .unwrap_or(false)
        {
            break;
        }
        let at = now
            .checked_add(jiff::SignedDuration::from_secs(attempt))
            .unwrap_or_else(|_| now.clone());
        name = store::stored_name(&at, original);
    }
    // Storing and recording run as their own task: if the client goes away or the instance
    // stops mid-way, the step under way still finishes or cleans up; a dropped handler cannot
    // leave a file without its rows half-way through.
    let upload = Upload {
        patient: id,
        name,
        content_type,
        doc_type: doc_type.to_owned(),
        description: description.to_owned(),
        limit,
    };
    let task = tokio::spawn(store_and_record(state.clone(), who, upload, body));
    let document_no = match task.await {
        Ok(Ok(n)) => n,
        Ok(Err(resp)) => return resp,
        Err(e) => {
            tracing::error!("an upload task failed: {e}");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the document could not be stored",
            );
        }
    };
    match find(&state, document_no).await {
        Ok(Some(doc)) => json_response(StatusCode::OK, &doc),
        Ok(None) => unavailable(&DbError::Row(
            "the new document could not be read back".into(),
        )),
        Err(e) => unavailable(&e),
    }
}

/// One upload's particulars, checked.
#[derive(Debug)]
struct Upload {
    patient: i32,
    name: String,
    content_type: String,
    doc_type: String,
    description: String,
    limit: u64,
}

async fn store_and_record(
    state: AppState,
    who: Principal,
    up: Upload,
    mut body: axum::body::BodyDataStream,
) -> Result<i32, Response> {
    let dir = state.config.emr.documents_dir.clone();
    let stored = match store::store(&dir, &up.name, &mut body, up.limit).await {
        Ok(s) => s,
        Err(store::StoreError::Exists) => {
            return Err(refuse(
                StatusCode::CONFLICT,
                "a document of this name is being stored at this moment; send it again",
            ))
        }
        Err(store::StoreError::TooLarge { limit }) => return Err(too_large(limit)),
        Err(e @ store::StoreError::Body(_)) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("the upload did not complete: {e}"),
            ))
        }
        Err(e) => {
            tracing::error!("failed to store a document: {e}");
            return Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the document could not be stored",
            ));
        }
    };
    match record(&state, &who, &up, &stored).await {
        Ok(n) => Ok(n),
        Err(e) => {
            // A commit whose answer was lost (the connection broke, the database failed over)
            // may have happened: remove the file only when no row names it.
            match recorded(&state, &stored.file_name).await {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => remove_file(dir, stored.file_name).await,
                Err(check) => tracing::error!(
                    "failed to learn whether an upload was recorded ({check}); its file is kept for the document check"
                ),
            }
            Err(unavailable(&e))
        }
    }
}

/// Writes the document's rows and its audit row in one transaction.
async fn record(
    state: &AppState,
    who: &Principal,
    up: &Upload,
    stored: &store::Stored,
) -> Result<i32, DbError> {
    let creator = who.provider_no.clone().unwrap_or_default();
    let mut conn = state.db.conn().await?;
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    tx.exec_drop(
        "INSERT INTO document (doctype, docdesc, docfilename, doccreator, responsible, source, updatedatetime,
                               status, contenttype, contentdatetime, public1, observationdate, restrictToProgram, receivedDate)
         VALUES (?, ?, ?, ?, ?, 'OSCAR Box', NOW(), 'A', ?, NOW(), 0, CURDATE(), 0, CURDATE())",
        (&up.doc_type, &up.description, &stored.file_name, &creator, &creator, &up.content_type),
    )
    .await?;
    let document_no = tx
        .last_insert_id()
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| DbError::Row("no document number was assigned".into()))?;
    tx.exec_drop(
        "INSERT INTO ctl_document (module, module_id, document_no, status) VALUES ('demographic', ?, ?, 'A')",
        (up.patient, document_no),
    )
    .await?;
    tx.exec_drop(
        "INSERT INTO oscarbox_document_file (document_no, sha256, size) VALUES (?, ?, ?)",
        (document_no, &stored.sha256, stored.size),
    )
    .await?;
    let mut entry = who.audit(audit::ADD, audit::DOCUMENT);
    entry.content_id = Some(document_no.to_string());
    entry.demographic_no = Some(up.patient);
    entry.data = Some(format!("upload, {} bytes", stored.size));
    audit::write_in(&mut tx, entry).await?;
    tx.commit().await?;
    Ok(document_no)
}

/// The document row that names `file_name`, if one committed. Asked only after a commit
/// whose answer was lost, so the scan (OSCAR's `document` has no index on the name, and an
/// imported OSCAR's schema is left as it is) is rare.
async fn recorded(state: &AppState, file_name: &str) -> Result<Option<i32>, DbError> {
    let mut conn = state.db.conn().await?;
    Ok(conn
        .exec_first(
            "SELECT document_no FROM document WHERE docfilename = ? LIMIT 1",
            (file_name,),
        )
        .await?)
}

async fn patients_exists(state: &AppState, id: i32) -> Result<bool, DbError> {
    let mut conn = state.db.conn().await?;
    Ok(patients::load(&mut conn, id).await?.is_some())
}

fn too_large(limit: u64) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the document is larger than this box accepts ({} MiB, emr.max-document-mib)",
            limit / (1024 * 1024)
        ),
    )
}

/// `GET /demographics/{id}/documents`: the patient's documents, newest first.
pub async fn list(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let result = async {
        let mut conn = state.db.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                format!("{SELECT} WHERE c.module_id = ? ORDER BY d.document_no DESC LIMIT 5000"),
                (id,),
            )
            .await?;
        let mut entry = who.audit(audit::READ, audit::DOCUMENT);
        entry.demographic_no = Some(id);
        entry.data = Some("list documents".into());
        audit::write(&state.db, entry).await?;
        Ok::<_, DbError>(rows.into_iter().filter_map(to_json).collect::<Vec<_>>())
    }
    .await;
    match result {
        Ok(docs) => json_response(StatusCode::OK, &docs),
        Err(e) => unavailable(&e),
    }
}

/// `GET /documents/{no}`: what is known about one document.
pub async fn describe(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(no): Path<String>,
) -> Response {
    let no = match positive_number(&no, "document") {
        Ok(n) => n,
        Err(r) => return r,
    };
    match find(&state, no).await {
        Ok(Some(doc)) => {
            let mut entry = who.audit(audit::READ, audit::DOCUMENT);
            entry.content_id = Some(no.to_string());
            entry.demographic_no = Some(doc.demographic_no);
            if let Err(e) = audit::write(&state.db, entry).await {
                return unavailable(&e);
            }
            json_response(StatusCode::OK, &doc)
        }
        Ok(None) => refuse(StatusCode::NOT_FOUND, format!("no patient document {no}")),
        Err(e) => unavailable(&e),
    }
}

/// `Content-Disposition` for a download, the name encoded per RFC 6266 / 5987.
fn disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// `GET /documents/{no}/download`: the file, streamed, with its recorded digest.
pub async fn download(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(no): Path<String>,
) -> Response {
    let no = match positive_number(&no, "document") {
        Ok(n) => n,
        Err(r) => return r,
    };
    let doc = match find(&state, no).await {
        Ok(Some(d)) => d,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, format!("no patient document {no}")),
        Err(e) => return unavailable(&e),
    };
    let dir: &FsPath = &state.config.emr.documents_dir;
    let (file, len) = match store::open(dir, &doc.doc_filename).await {
        Ok(f) => f,
        Err(store::StoreError::NotFound) => {
            tracing::error!(
                document_no = no,
                "a recorded document's file is missing from the document directory"
            );
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the document's file is missing; restore it from the backup disk",
            );
        }
        Err(e) => {
            tracing::error!(document_no = no, "failed to open a document: {e}");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the document could not be read",
            );
        }
    };
    if doc
        .size
        .is_some_and(|size| u64::try_from(size).ok() != Some(len))
    {
        tracing::error!(
            document_no = no,
            "a document's file differs in size from what was stored: damaged or replaced"
        );
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the document's file is damaged; restore it from the backup disk",
        );
    }
    let mut entry = who.audit(audit::DOWNLOAD, audit::DOCUMENT);
    entry.content_id = Some(no.to_string());
    entry.demographic_no = Some(doc.demographic_no);
    if let Err(e) = audit::write(&state.db, entry).await {
        return unavailable(&e);
    }
    let mut resp = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024))
        .into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&doc.content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CONTENT_DISPOSITION, disposition(&doc.file_name));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if let Some(digest) = doc.sha256.as_deref().and_then(hex_to_base64) {
        if let Ok(v) = HeaderValue::from_str(&format!("sha-256=:{digest}:")) {
            h.insert("repr-digest", v);
        }
    }
    resp
}

fn hex_to_base64(hex: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    Some(base64::engine::general_purpose::STANDARD.encode(bytes?))
}
