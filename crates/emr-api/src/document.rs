//! `DocumentTo1`: a patient document as the REST surface describes one.

use serde::Serialize;

/// A document in a patient's chart, named after OSCAR's `document` columns (as OSCAR's
/// `DocumentTo1` names them), plus what OSCAR Box records beside them: the original file name,
/// the content's SHA-256 and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentTo1 {
    pub document_no: i32,
    pub demographic_no: i32,
    pub doc_type: Option<String>,
    pub description: String,
    /// The name the file was uploaded with.
    pub file_name: String,
    /// The stored name: `yyyyMMddHHmmss` + the original name, as OSCAR names files.
    pub doc_filename: String,
    pub content_type: String,
    pub doc_creator: String,
    pub status: String,
    /// When it was stored, epoch milliseconds.
    pub content_date_time: Option<i64>,
    /// SHA-256 of the contents, lowercase hex; absent for documents imported from OSCAR.
    pub sha256: Option<String>,
    pub size: Option<i64>,
}
