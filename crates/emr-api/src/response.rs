//! The wrappers around REST answers: search pages, OSCAR's generic answer, and our 400s.

use serde::Serialize;

/// OSCAR's `org.oscarehr.ws.rest.to.AbstractSearchResponse<T>` (`quickSearch`, `search`).
/// `timestamp` is when the answer was made, in epoch milliseconds; `query` echoes the search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AbstractSearchResponse<T> {
    pub offset: i32,
    pub limit: i32,
    pub total: i32,
    pub timestamp: i64,
    /// Always an array: OSCAR's web UI copes with a lone object, other clients do not.
    pub content: Vec<T>,
    pub query: Option<String>,
}

/// OSCAR's `org.oscarehr.ws.rest.to.OscarSearchResponse<T>` (`GET /demographics`): the same
/// page without `query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OscarSearchResponse<T> {
    pub offset: i32,
    pub limit: i32,
    pub total: i32,
    pub timestamp: i64,
    pub content: Vec<T>,
}

/// OSCAR's `org.oscarehr.ws.rest.to.GenericRESTResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct GenericRestResponse {
    pub success: bool,
    pub message: Option<String>,
}

/// The body of our `400 Bad Request` for input that fails validation. OSCAR has no such
/// shape (it answers a bad body with a bare 500); this one keeps OSCAR's `success`/`message`
/// pair, so a client that reads a `GenericRESTResponse` still understands it, and adds every
/// problem found, by JSON field name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorResponse {
    /// Always `false`.
    pub success: bool,
    pub message: String,
    pub errors: Vec<FieldErrorTo>,
}

impl ErrorResponse {
    /// A refusal listing `errors`.
    pub fn new(message: impl Into<String>, errors: Vec<FieldErrorTo>) -> ErrorResponse {
        ErrorResponse {
            success: false,
            message: message.into(),
            errors,
        }
    }
}

/// One problem with one input field: `field` is the JSON key (`lastName`, `address.city`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldErrorTo {
    pub field: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_page_shape() {
        let page = AbstractSearchResponse {
            offset: 0,
            limit: 10,
            total: 0,
            timestamp: 1,
            content: Vec::<u8>::new(),
            query: None,
        };
        assert_eq!(
            serde_json::to_string(&page).expect("serialises"),
            r#"{"offset":0,"limit":10,"total":0,"timestamp":1,"content":[],"query":null}"#
        );
    }

    #[test]
    fn error_shape() {
        let e = ErrorResponse::new(
            "invalid demographic",
            vec![FieldErrorTo {
                field: "sex".into(),
                message: "must be one of M, F, T, O, U".into(),
            }],
        );
        assert_eq!(
            serde_json::to_string(&e).expect("serialises"),
            r#"{"success":false,"message":"invalid demographic","errors":[{"field":"sex","message":"must be one of M, F, T, O, U"}]}"#
        );
        assert_eq!(
            serde_json::to_string(&GenericRestResponse {
                success: true,
                message: Some("999998".into())
            })
            .expect("serialises"),
            r#"{"success":true,"message":"999998"}"#
        );
    }
}
