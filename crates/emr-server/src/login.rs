//! `LoginService`: `login` and `login2` (reference §1.4), with lockout and OSCAR's audit rows.

use std::sync::LazyLock;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, TxOpts, Value};
use oscar_soap::{Elements, Fault, Request, ResponseWriter};

use crate::app::AppState;
use crate::auth::{self, FailureState};
use crate::db::DbError;
use crate::system_info::xs_date_time;

const INVALID: &str = "Invalid Username/Password";

/// Verifying against this when the account does not exist makes a wrong user name cost as
/// much time as a wrong password, so that timing does not reveal which accounts exist.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| auth::hash_password("not a password"));

/// A signed-in account.
#[derive(Debug)]
pub struct Account {
    pub security_no: i32,
    pub provider_no: Option<String>,
    pub stored_hash: String,
}

/// OSCAR's `providerTransfer`, fields in wire (alphabetical) order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProviderTransfer {
    pub address: Option<String>,
    pub billing_no: Option<String>,
    pub comments: Option<String>,
    pub dob: Option<jiff::Zoned>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub hso_no: Option<String>,
    pub last_name: Option<String>,
    pub ohip_no: Option<String>,
    pub phone: Option<String>,
    pub practitioner_no: Option<String>,
    pub practitioner_no_type: Option<String>,
    pub provider_activity: Option<String>,
    pub provider_no: Option<String>,
    pub provider_type: Option<String>,
    pub rma_no: Option<String>,
    pub sex: Option<String>,
    pub signed_confidentiality: Option<jiff::Zoned>,
    pub specialty: Option<String>,
    pub status: Option<String>,
    pub team: Option<String>,
    pub title: Option<String>,
    pub work_phone: Option<String>,
}

impl ProviderTransfer {
    fn write(&self, e: &mut Elements) {
        e.text("address", self.address.as_deref())
            .text("billingNo", self.billing_no.as_deref())
            .text("comments", self.comments.as_deref())
            .display("dob", self.dob.as_ref().map(xs_date_time))
            .text("email", self.email.as_deref())
            .text("firstName", self.first_name.as_deref())
            .text("hsoNo", self.hso_no.as_deref())
            .text("lastName", self.last_name.as_deref())
            .text("ohipNo", self.ohip_no.as_deref())
            .text("phone", self.phone.as_deref())
            .text("practitionerNo", self.practitioner_no.as_deref())
            .text("practitionerNoType", self.practitioner_no_type.as_deref())
            .text("providerActivity", self.provider_activity.as_deref())
            .text("providerNo", self.provider_no.as_deref())
            .text("providerType", self.provider_type.as_deref())
            .text("rmaNo", self.rma_no.as_deref())
            .text("sex", self.sex.as_deref())
            .display(
                "signedConfidentiality",
                self.signed_confidentiality.as_ref().map(xs_date_time),
            )
            .text("specialty", self.specialty.as_deref())
            .text("status", self.status.as_deref())
            .text("team", self.team.as_deref())
            .text("title", self.title.as_deref())
            .text("workPhone", self.work_phone.as_deref());
    }
}

/// `loginResponse`: `securityId`, `securityTokenKey`.
pub fn render_login(security_id: i32, token: &str) -> String {
    ResponseWriter::write("login", |e| {
        e.nested("return", Some(()), |e, ()| {
            e.display("securityId", Some(security_id))
                .text("securityTokenKey", Some(token));
        });
    })
}

/// `login2Response`: `provider`, `securityId`, `securityTokenKey`.
pub fn render_login2(provider: Option<&ProviderTransfer>, security_id: i32, token: &str) -> String {
    ResponseWriter::write("login2", |e| {
        e.nested("return", Some(()), |e, ()| {
            e.nested("provider", provider, |e, p| p.write(e))
                .display("securityId", Some(security_id))
                .text("securityTokenKey", Some(token));
        });
    })
}

pub async fn handle(state: &AppState, req: &Request, ip: &str) -> Result<String, Fault> {
    let op = req.operation.as_str();
    if op != "login" && op != "login2" {
        return Err(crate::soap::unknown_operation(op));
    }
    let user = req
        .string("arg0")
        .map_err(|e| Fault::Client(e.to_string()))?;
    let password = req
        .string("arg1")
        .map_err(|e| Fault::Client(e.to_string()))?;
    let (Some(user), Some(password)) = (user, password) else {
        audit(state, None, "WS_LOGIN_FAILURE", ip).await;
        return Err(Fault::NotAuthorised(INVALID.into()));
    };
    let account = match authenticate(state, user, password, None).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            audit(state, None, "WS_LOGIN_FAILURE", ip).await;
            return Err(Fault::NotAuthorised(INVALID.into()));
        }
        Err(CheckError::Busy(e)) => {
            tracing::warn!("refused a SOAP login: {e}");
            return Err(Fault::Server);
        }
        Err(e) => {
            tracing::error!("failed to check a SOAP login: {e}");
            return Err(Fault::Server);
        }
    };
    audit(
        state,
        account.provider_no.as_deref(),
        "WS_LOGIN_SUCCESS",
        ip,
    )
    .await;
    let token = auth::security_token(state.token_epoch_ms, &account.stored_hash);
    if op == "login" {
        return Ok(render_login(account.security_no, &token));
    }
    let provider = match &account.provider_no {
        Some(no) => load_provider(state, no).await.map_err(|e| {
            tracing::error!("failed to load the provider of a signed-in account: {e}");
            Fault::Server
        })?,
        None => None,
    };
    Ok(render_login2(
        provider.as_ref(),
        account.security_no,
        &token,
    ))
}

/// Why a sign-in could not be checked at all (as opposed to being refused).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Db(#[from] DbError),
    #[error("{0}")]
    Busy(#[from] auth::Busy),
}

impl From<mysql_async::Error> for CheckError {
    fn from(e: mysql_async::Error) -> Self {
        CheckError::Db(DbError::Sql(e))
    }
}

/// Costs what a real verification costs, for refusals that need no verification, so that
/// timing does not tell an unknown, locked or expired account from a wrong password.
async fn equal_cost(password: &str) -> Result<(), auth::Busy> {
    let pw = password.to_owned();
    auth::hashing(move || auth::verify_password(&DUMMY_HASH, &pw)).await?;
    Ok(())
}

/// Checks the credentials, keeping the lockout state; `None` means "not authorised" for any
/// reason (unknown user, wrong password or PIN, expired, locked), which the client must not
/// tell apart. `pin` is checked when given (the browser sign-in asks for it, as OSCAR's does)
/// and the account has one; password and PIN are one attempt, counted once.
pub(crate) async fn authenticate(
    state: &AppState,
    user: &str,
    password: &str,
    pin: Option<&str>,
) -> Result<Option<Account>, CheckError> {
    let mut conn = state.db.conn().await?;
    let row: Option<(i32, String, Option<String>, i64, Option<String>)> = conn
        .exec_first(
            "SELECT security_no, password, provider_no,
                    (date_ExpireDate IS NOT NULL AND date_ExpireDate < CURDATE()), pin
             FROM security WHERE user_name = ? LIMIT 1",
            (user,),
        )
        .await?;
    let Some((security_no, stored, provider_no, expired, stored_pin)) = row else {
        equal_cost(password).await?;
        return Ok(None);
    };
    if expired != 0 {
        tracing::info!(security_no, "refused a sign-in to an expired account");
        equal_cost(password).await?;
        return Ok(None);
    }
    let pin = pin.map(|p| (p.to_owned(), stored_pin.unwrap_or_default()));
    let Some(check) = check_counted(state, &mut conn, user, &stored, password, pin).await? else {
        return Ok(None);
    };
    let mut stored_hash = stored;
    if check.needs_upgrade {
        let pw = password.to_owned();
        let new_hash = auth::hashing(move || auth::hash_password(&pw)).await?;
        // Only if nobody changed the password meanwhile.
        conn.exec_drop(
            "UPDATE security SET password = ?, passwordUpdateDate = NOW() WHERE security_no = ? AND password = ?",
            (&new_hash, security_no, &stored_hash),
        )
        .await?;
        if conn.affected_rows() == 1 {
            tracing::info!(security_no, "upgraded a legacy password hash to Argon2id");
            stored_hash = new_hash;
        }
    }
    Ok(Some(Account {
        security_no,
        provider_no,
        stored_hash,
    }))
}

/// One password check under the lockout, for every way in (SOAP `login2`, `/login.do`, the
/// consent page, WS-Security): refused while the account is locked; a failure counted after
/// the check, under the row lock; a success clears the count. `pin` is (given, stored) when
/// the sign-in asks for one: password and PIN are one attempt, counted once. Returns the
/// password check when both were right.
///
/// Only failures count. Counting each attempt before its check would let a client that sends
/// the right password with many calls at once lock its own account; guesses sent in parallel
/// gain at most the few hashing slots (`auth::hashing`) before the lock holds.
pub(crate) async fn check_counted(
    state: &AppState,
    conn: &mut Conn,
    user: &str,
    stored: &str,
    password: &str,
    pin: Option<(String, String)>,
) -> Result<Option<auth::Verified>, CheckError> {
    if is_locked(state, conn, user).await? {
        tracing::info!("refused a sign-in to a locked account");
        equal_cost(password).await?;
        return Ok(None);
    }
    let (check, pin_ok) = {
        let (stored, pw) = (stored.to_owned(), password.to_owned());
        auth::hashing(move || {
            let pin_ok = pin.is_none_or(|(given, stored)| auth::verify_pin(&stored, &given));
            (auth::verify_password(&stored, &pw), pin_ok)
        })
        .await?
    };
    if !check.ok || !pin_ok {
        record_failure(state, conn, user).await?;
        return Ok(None);
    }
    conn.exec_drop(
        "DELETE FROM oscarbox_login_failure WHERE user_name = ?",
        (user,),
    )
    .await?;
    Ok(Some(check))
}

/// Whether `user` is locked out now, without counting an attempt.
async fn is_locked(state: &AppState, conn: &mut Conn, user: &str) -> Result<bool, CheckError> {
    let row: Option<(u32, i64, Option<i64>, i64)> = conn
        .exec_first(
            "SELECT failures, UNIX_TIMESTAMP(first_failure), UNIX_TIMESTAMP(locked_until), UNIX_TIMESTAMP()
             FROM oscarbox_login_failure WHERE user_name = ?",
            (user,),
        )
        .await?;
    Ok(
        row.is_some_and(|(failures, first_failure, locked_until, now)| {
            state.lockout.is_locked(
                Some(&FailureState {
                    failures,
                    first_failure,
                    locked_until,
                }),
                now,
            )
        }),
    )
}

/// Counts one failed attempt against `user`, under the row lock (the row is created first so
/// that the lock taken is a row lock, not a gap lock); an account already locked stays as it is.
async fn record_failure(state: &AppState, conn: &mut Conn, user: &str) -> Result<(), CheckError> {
    conn.exec_drop(
        "INSERT IGNORE INTO oscarbox_login_failure (user_name, failures, first_failure) VALUES (?, 0, NOW())",
        (user,),
    )
    .await?;
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let row: Option<(u32, i64, Option<i64>, i64)> = tx
        .exec_first(
            "SELECT failures, UNIX_TIMESTAMP(first_failure), UNIX_TIMESTAMP(locked_until), UNIX_TIMESTAMP()
             FROM oscarbox_login_failure WHERE user_name = ? FOR UPDATE",
            (user,),
        )
        .await?;
    let Some((failures, first_failure, locked_until, now)) = row else {
        tx.rollback().await?;
        return Ok(());
    };
    let prev = FailureState {
        failures,
        first_failure,
        locked_until,
    };
    if state.lockout.is_locked(Some(&prev), now) {
        tx.rollback().await?;
        return Ok(());
    }
    let next = state.lockout.after_failure(Some(&prev), now);
    tx.exec_drop(
        "UPDATE oscarbox_login_failure SET failures = ?, first_failure = FROM_UNIXTIME(?), locked_until = FROM_UNIXTIME(?) WHERE user_name = ?",
        (next.failures, next.first_failure, next.locked_until, user),
    )
    .await?;
    tx.commit().await?;
    if next.locked_until.is_some() && prev.locked_until.is_none() {
        tracing::warn!(
            failures = next.failures,
            "locked an account after repeated sign-in attempts"
        );
    }
    Ok(())
}

/// Writes OSCAR's audit row: `WS_LOGIN_SUCCESS` with the provider, `WS_LOGIN_FAILURE` with
/// only the address. A failure to audit is logged, never hidden.
pub(crate) async fn audit(state: &AppState, provider_no: Option<&str>, action: &str, ip: &str) {
    let entry = crate::audit::Entry {
        provider_no,
        action,
        ip,
        ..crate::audit::Entry::default()
    };
    if let Err(e) = crate::audit::write(&state.db, entry).await {
        tracing::error!(action, "failed to write an audit row: {e}");
    }
}

async fn load_provider(
    state: &AppState,
    provider_no: &str,
) -> Result<Option<ProviderTransfer>, DbError> {
    let mut conn = state.db.conn().await?;
    let row: Option<Row> = conn
        .exec_first(
            "SELECT address, billing_no, comments, dob, email, first_name, hso_no, last_name,
                    ohip_no, phone, practitionerNo, practitionerNoType, provider_activity,
                    provider_no, provider_type, rma_no, sex, signed_confidentiality, specialty,
                    status, team, title, work_phone
             FROM provider WHERE provider_no = ?",
            (provider_no,),
        )
        .await?;
    Ok(row.map(|mut r| {
        let mut s = |i: usize| text(r.take::<Value, _>(i));
        let address = s(0);
        let billing_no = s(1);
        let comments = s(2);
        let email = s(4);
        let first_name = s(5);
        let hso_no = s(6);
        let last_name = s(7);
        let ohip_no = s(8);
        let phone = s(9);
        let practitioner_no = s(10);
        let practitioner_no_type = s(11);
        let provider_activity = s(12);
        let provider_no = s(13);
        let provider_type = s(14);
        let rma_no = s(15);
        let sex = s(16);
        let specialty = s(18);
        let status = s(19);
        let team = s(20);
        let title = s(21);
        let work_phone = s(22);
        ProviderTransfer {
            address,
            billing_no,
            comments,
            dob: crate::db::local_time(r.take::<Value, _>(3)),
            email,
            first_name,
            hso_no,
            last_name,
            ohip_no,
            phone,
            practitioner_no,
            practitioner_no_type,
            provider_activity,
            provider_no,
            provider_type,
            rma_no,
            sex,
            signed_confidentiality: crate::db::local_time(r.take::<Value, _>(17)),
            specialty,
            status,
            team,
            title,
            work_phone,
        }
    }))
}

fn text(v: Option<Value>) -> Option<String> {
    match v? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login2_matches_the_reference_body() {
        // reference §1.4, "login2 response body (order verified)".
        let p = ProviderTransfer {
            dob: Some(
                "1970-01-01T00:00:00-05:00[America/Toronto]"
                    .parse()
                    .expect("zoned"),
            ),
            first_name: Some("doctor".into()),
            last_name: Some("oscardoc".into()),
            provider_no: Some("999998".into()),
            provider_type: Some("doctor".into()),
            sex: Some("M".into()),
            specialty: Some(String::new()),
            status: Some("1".into()),
            ..ProviderTransfer::default()
        };
        assert_eq!(
            render_login2(Some(&p), 128, "5429696329944"),
            concat!(
                r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>"#,
                r#"<ns2:login2Response xmlns:ns2="http://ws.oscarehr.org/"><return>"#,
                r#"<provider><dob>1970-01-01T00:00:00-05:00</dob><firstName>doctor</firstName><lastName>oscardoc</lastName>"#,
                r#"<providerNo>999998</providerNo><providerType>doctor</providerType><sex>M</sex><specialty></specialty><status>1</status></provider>"#,
                r#"<securityId>128</securityId><securityTokenKey>5429696329944</securityTokenKey></return></ns2:login2Response>"#,
                r#"</soap:Body></soap:Envelope>"#
            )
        );
    }

    #[test]
    fn login_matches_the_live_capture() {
        assert_eq!(
            render_login(134, "5429696329944"),
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:loginResponse xmlns:ns2="http://ws.oscarehr.org/"><return><securityId>134</securityId><securityTokenKey>5429696329944</securityTokenKey></return></ns2:loginResponse></soap:Body></soap:Envelope>"#
        );
    }
}
