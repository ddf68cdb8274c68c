//! Who is asking: the signed-in account behind a request, however it proved itself.

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A browser session cookie (`/ws/rs/`, the OAuth consent page).
    Session,
    /// An OAuth 1.0a access token (`/ws/services/`).
    OAuth,
    /// A WS-Security `UsernameToken` (SOAP).
    WsSecurity,
}

/// The account a request acts for. OAuth tokens carry a provider, not an account, as OSCAR's
/// `ServiceAccessToken` does, so `security_no` is absent for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub security_no: Option<i32>,
    pub provider_no: Option<String>,
    pub via: Via,
    /// The client's address, for the audit trail.
    pub ip: String,
}

impl Principal {
    /// An audit row for this caller.
    pub fn audit<'a>(&'a self, action: &'a str, content: &'a str) -> crate::audit::Entry<'a> {
        crate::audit::Entry {
            provider_no: self.provider_no.as_deref(),
            security_no: self.security_no,
            action,
            content: Some(content),
            ip: &self.ip,
            ..crate::audit::Entry::default()
        }
    }
}
