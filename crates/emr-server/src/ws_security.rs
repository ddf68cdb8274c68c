//! WS-Security `UsernameToken` authentication for protected SOAP services, as OSCAR's
//! `OscarUsernameTokenValidator` does it (reference §1.5): the Username is the account's
//! `security_no`, the Password is either the token `login`/`login2` returned or the password
//! itself, in `PasswordText` form only.

use mysql_async::prelude::Queryable;
use oscar_soap::{Fault, Request};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::auth;
use crate::login::{self, CheckError};
use crate::principal::{Principal, Via};

/// Authenticates `req`, writing OSCAR's `WS_LOGIN_SUCCESS` or `WS_LOGIN_FAILURE` row.
pub async fn authenticate(state: &AppState, req: &Request, ip: &str) -> Result<Principal, Fault> {
    if !req.has_security_header {
        return Err(Fault::InvalidSecurity);
    }
    let Some(token) = &req.username_token else {
        return Err(Fault::InvalidSecurity);
    };
    let outcome = if token.is_password_text() {
        check(state, &token.username, &token.password).await
    } else {
        Ok(None)
    };
    match outcome {
        Ok(Some((security_no, provider_no))) => {
            login::audit(state, provider_no.as_deref(), "WS_LOGIN_SUCCESS", ip).await;
            Ok(Principal {
                security_no: Some(security_no),
                provider_no,
                via: Via::WsSecurity,
                ip: ip.to_owned(),
            })
        }
        Ok(None) => {
            login::audit(state, None, "WS_LOGIN_FAILURE", ip).await;
            Err(Fault::FailedAuthentication)
        }
        Err(e) => {
            tracing::error!("failed to check a WS-Security token: {e}");
            Err(Fault::Server)
        }
    }
}

/// The account for `username` (a `security_no`) if `password` is its current token or its
/// password. Wrong passwords count toward the same lockout as sign-ins; the token, derived
/// from the stored hash, is checked first and costs nothing.
async fn check(
    state: &AppState,
    username: &str,
    password: &str,
) -> Result<Option<(i32, Option<String>)>, CheckError> {
    let Ok(security_no) = username.trim().parse::<i32>() else {
        return Ok(None);
    };
    let mut conn = state.db.conn().await?;
    let row: Option<(String, String, Option<String>, i64)> = conn
        .exec_first(
            "SELECT user_name, password, provider_no,
                    (date_ExpireDate IS NOT NULL AND date_ExpireDate < CURDATE())
             FROM security WHERE security_no = ?",
            (security_no,),
        )
        .await?;
    let Some((user_name, stored, provider_no, expired)) = row else {
        return Ok(None);
    };
    if expired != 0 || password.is_empty() {
        return Ok(None);
    }
    let token = auth::security_token(state.token_epoch_ms, &stored);
    if bool::from(token.as_bytes().ct_eq(password.as_bytes())) {
        return Ok(Some((security_no, provider_no)));
    }
    // The password itself, under the lockout every sign-in shares.
    if login::check_counted(state, &mut conn, &user_name, &stored, password, None)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    Ok(Some((security_no, provider_no)))
}
