//! What crosses the proxy's admin socket (a unix socket of mode 0600): one JSON request line
//! in, one JSON answer line out, as on the watchdog's control socket. The watchdog drains an
//! instance through it before restarting one; `oscarbox proxy backends|drain|enable` are the
//! person's side. Add optional fields only, and bump [`VERSION`] for anything else.

use serde::{Deserialize, Serialize};

/// The protocol version a proxy speaks.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// Every backend's state.
    Backends,
    /// Send `instance` no new requests, then wait up to `wait_ms` for those in flight. With
    /// `lease_ms` the drain ends by itself after that long (the watchdog's drains, so that an
    /// instance is never left drained by a watchdog that died mid-restart); without it, it
    /// lasts until `enable`. A lease never shortens a drain without one.
    Drain {
        instance: u32,
        wait_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease_ms: Option<u64>,
    },
    /// End a drain: the instance takes requests again once its probes pass. With
    /// `lease_only`, only a drain with a lease ends (the watchdog's), never a person's.
    Enable {
        instance: u32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        lease_only: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum Answer {
    Backends {
        version: u32,
        backends: Vec<BackendStatus>,
    },
    /// The drain is in place; `in_flight` requests were still running when the wait ended
    /// (zero: no request the proxy sent it is still being answered).
    Drained {
        instance: u32,
        in_flight: u32,
    },
    Enabled {
        instance: u32,
    },
    Error {
        message: String,
    },
}

/// One instance as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub instance: u32,
    pub address: String,
    /// `up`, `down` or `draining`.
    pub state: String,
    /// Why it is in that state, in plain words.
    pub why: String,
    pub in_flight: u32,
    /// Requests sent to it since the proxy started.
    pub requests: u64,
    /// Its share of new requests while it warms up after an ejection, from 0 to 1.
    pub weight: f64,
}

pub use oscarbox_socket_rpc::{from_line, to_line};

/// The client side of the socket, for `oscarbox`, the watchdog and tests.
pub mod client {
    use std::path::Path;

    pub use oscarbox_socket_rpc::AskError;

    use crate::{Answer, Request};

    /// Asks the proxy listening on `socket` one question.
    pub async fn ask(socket: &Path, request: &Request) -> Result<Answer, AskError> {
        oscarbox_socket_rpc::ask("proxy", socket, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_one_line() {
        let drain = Request::Drain {
            instance: 2,
            wait_ms: 30_000,
            lease_ms: None,
        };
        let line = to_line(&drain);
        assert_eq!(
            line,
            "{\"request\":\"drain\",\"instance\":2,\"wait_ms\":30000}\n"
        );
        assert_eq!(from_line::<Request>(&line).expect("decodes"), drain);
        assert!(from_line::<Request>("{\"request\":\"explode\"}").is_err());
    }
}
