//! SOAP `DemographicService` (reference §1.6), behind WS-Security: `getDemographic`,
//! `getDemographic2`, `getDemographics` and `searchDemographicByName`, with OSCAR's transfer
//! shapes. Every patient answered is audited (`read`, `demographic`) before it is sent.

use oscar_soap::{Fault, Request, ResponseWriter, Value};

use super::record::Demographic;
use super::store;
use super::transfer::{write_transfer, TransferKind};
use crate::app::AppState;
use crate::audit;
use crate::db::DbError;
use crate::principal::Principal;
use crate::system_info::MAX_LIST_RETURN_SIZE;

/// The operations this server answers; the WSDL lists OSCAR's others (MyOSCAR/PHR, programs,
/// consents), which are refused with a fault that says so.
const SUPPORTED: &[&str] = &[
    "getDemographic",
    "getDemographic2",
    "getDemographics",
    "searchDemographicByName",
];

fn unmarshalling(param: &str, what: &str) -> Fault {
    Fault::Client(format!("Unmarshalling Error: {param}: expected {what}"))
}

/// An `xs:int` parameter.
fn int_param(req: &Request, name: &str, required: bool) -> Result<Option<i32>, Fault> {
    match req.param(name) {
        None | Some(Value::Nil) if !required => Ok(None),
        None | Some(Value::Nil) => Err(unmarshalling(name, "an integer, and it is required")),
        Some(Value::Text(t)) => t
            .trim()
            .parse::<i32>()
            .map(Some)
            .map_err(|_| unmarshalling(name, "an integer")),
        Some(Value::Complex) => Err(unmarshalling(name, "an integer")),
    }
}

/// Every `arg0` of `getDemographics` (an `xs:int` array).
fn int_params(req: &Request, name: &str) -> Result<Vec<i32>, Fault> {
    req.params
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| match v {
            Value::Text(t) => t
                .trim()
                .parse::<i32>()
                .map_err(|_| unmarshalling(name, "integers")),
            _ => Err(unmarshalling(name, "integers")),
        })
        .collect()
}

fn server_fault(e: &DbError) -> Fault {
    tracing::error!("failed to answer DemographicService: {e}");
    Fault::Server
}

/// Handles one authenticated call.
pub async fn handle(state: &AppState, req: &Request, who: &Principal) -> Result<String, Fault> {
    let op = req.operation.as_str();
    if !SUPPORTED.contains(&op) {
        return Err(Fault::Client(format!(
            "{op} is not supported by this server; it answers {}",
            SUPPORTED.join(", ")
        )));
    }
    let tz = jiff::tz::TimeZone::system();
    let (found, kind) = match op {
        "getDemographic" | "getDemographic2" => {
            let id = int_param(req, "arg0", true)?.unwrap_or_default();
            let mut conn = state.db.conn().await.map_err(|e| server_fault(&e))?;
            let d = store::load(&mut conn, id)
                .await
                .map_err(|e| server_fault(&e))?;
            let kind = if op == "getDemographic2" {
                TransferKind::V2
            } else {
                TransferKind::V1
            };
            (d.into_iter().collect::<Vec<_>>(), kind)
        }
        "getDemographics" => {
            let ids = int_params(req, "arg0")?;
            if ids.len() > MAX_LIST_RETURN_SIZE as usize {
                return Err(Fault::Client(format!(
                    "arg0: at most {MAX_LIST_RETURN_SIZE} ids per call"
                )));
            }
            let mut conn = state.db.conn().await.map_err(|e| server_fault(&e))?;
            let found = store::load_many(&mut conn, &ids)
                .await
                .map_err(|e| server_fault(&e))?;
            (found, TransferKind::V1)
        }
        _ => {
            let text = req
                .string("arg0")
                .map_err(|e| Fault::Client(e.to_string()))?
                .unwrap_or("");
            let start = int_param(req, "arg1", true)?.unwrap_or_default();
            let count = int_param(req, "arg2", true)?.unwrap_or_default();
            if start < 0 || !(0..=MAX_LIST_RETURN_SIZE).contains(&count) {
                return Err(Fault::Client(format!(
                    "arg1 must be 0 or more and arg2 from 0 to {MAX_LIST_RETURN_SIZE}"
                )));
            }
            let mut conn = state.db.conn().await.map_err(|e| server_fault(&e))?;
            let found =
                store::search_by_name(&mut conn, text, start.unsigned_abs(), count.unsigned_abs())
                    .await
                    .map_err(|e| server_fault(&e))?;
            (found, TransferKind::V1)
        }
    };
    audit_reads(state, who, op, &found)
        .await
        .map_err(|e| server_fault(&e))?;
    Ok(ResponseWriter::write(op, |e| {
        for d in &found {
            e.nested("return", Some(()), |e, ()| write_transfer(e, d, kind, &tz));
        }
    }))
}

/// One `read` row per patient answered, in one transaction, before anything is sent: patient
/// data that cannot be recorded as read is not sent.
pub(crate) async fn audit_reads(
    state: &AppState,
    who: &Principal,
    operation: &str,
    patients: &[Demographic],
) -> Result<(), DbError> {
    if patients.is_empty() {
        return Ok(());
    }
    let mut conn = state.db.conn().await?;
    let mut tx = conn
        .start_transaction(mysql_async::TxOpts::default())
        .await?;
    for d in patients {
        let mut entry = who.audit(audit::READ, audit::DEMOGRAPHIC);
        entry.content_id = Some(d.demographic_no.to_string());
        entry.demographic_no = Some(d.demographic_no);
        entry.data = Some(operation.to_owned());
        audit::write_in(&mut tx, entry).await?;
    }
    tx.commit().await?;
    Ok(())
}
