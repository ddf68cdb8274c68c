//! Patient transfer objects as the EMR sends them: `DemographicTo1` and its parts.

use serde::Serialize;

use crate::provider::ProviderTo1;

/// OSCAR's `org.oscarehr.ws.rest.to.model.DemographicTo1`: one patient, as `GET
/// /demographics/{id}` and the create/update calls answer.
///
/// Fields are in the Java declaration order (Jackson 1.9's output order). Dates are epoch
/// milliseconds of the server zone's local midnight (or local time, for `lastUpdateDate`), as
/// Hibernate hands OSCAR its `DATE` and `DATETIME` columns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemographicTo1 {
    pub demographic_no: i32,
    /// Never null: OSCAR initialises it to an empty `AddressTo1`.
    pub address: AddressTo1,
    pub phone: Option<String>,
    /// The `phone2` column.
    pub alternative_phone: Option<String>,
    pub patient_status: Option<String>,
    pub patient_status_date: Option<i64>,
    pub roster_status: Option<String>,
    pub provider_no: Option<String>,
    pub my_oscar_user_name: Option<String>,
    pub hin: Option<String>,
    pub ver: Option<String>,
    /// Built from the year, month and day columns; null when they are not a date.
    pub date_of_birth: Option<i64>,
    pub dob_year: Option<String>,
    pub dob_month: Option<String>,
    pub dob_day: Option<String>,
    pub sex: Option<String>,
    pub sex_desc: Option<String>,
    pub date_joined: Option<i64>,
    pub family_doctor: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub hc_renew_date: Option<i64>,
    pub pcn_indicator: Option<String>,
    pub end_date: Option<i64>,
    pub hc_type: Option<String>,
    pub chart_no: Option<String>,
    pub email: Option<String>,
    pub eff_date: Option<i64>,
    pub roster_date: Option<i64>,
    pub roster_termination_date: Option<i64>,
    pub roster_termination_reason: Option<String>,
    /// OSCAR's converter copies `rosterTerminationReason` here; clients may rely on it.
    pub links: Option<String>,
    pub alias: Option<String>,
    /// Only `address` is ever filled (the `previousAddress` column).
    pub previous_address: AddressTo1,
    pub children: Option<String>,
    pub source_of_income: Option<String>,
    pub citizenship: Option<String>,
    pub sin: Option<String>,
    pub anonymous: Option<String>,
    pub spoken_language: Option<String>,
    pub active_count: i32,
    pub hs_alert_count: i32,
    pub display_name: Option<String>,
    pub provider: Option<ProviderTo1>,
    pub last_update_user: Option<String>,
    pub last_update_date: Option<i64>,
    pub title: Option<String>,
    pub official_language: Option<String>,
    pub country_of_origin: Option<String>,
    pub newsletter: Option<String>,
    /// From OSCAR's `demographiccust` table, which this server does not keep: always null.
    pub nurse: Option<String>,
    pub resident: Option<String>,
    pub alert: Option<String>,
    pub midwife: Option<String>,
    pub notes: Option<String>,
    #[serde(rename = "waitingListID")]
    pub waiting_list_id: Option<i32>,
    pub waiting_list_note: Option<String>,
    pub on_waiting_list_since_date: Option<i64>,
    /// Null when the date of birth is not a date (OSCAR would fail to compute it).
    pub age: Option<AgeTo1>,
    pub admission_program_id: Option<i32>,
    pub middle_names: Option<String>,
    /// The lists OSCAR always writes as arrays. Those whose element type is not mirrored here
    /// (contacts, specialists, waiting lists, status lists) carry raw JSON values.
    pub demo_contacts: Vec<serde_json::Value>,
    pub demo_contact_pros: Vec<serde_json::Value>,
    pub extras: Vec<DemographicExtTo1>,
    pub doctors: Vec<ProviderTo1>,
    pub nurses: Vec<ProviderTo1>,
    pub midwives: Vec<ProviderTo1>,
    pub referral_doctors: Vec<serde_json::Value>,
    pub waiting_list_names: Vec<serde_json::Value>,
    pub patient_status_list: Vec<serde_json::Value>,
    pub roster_status_list: Vec<serde_json::Value>,
}

/// OSCAR's `AddressTo1`. `country` exists in OSCAR's class but no converter fills it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressTo1 {
    pub country: Option<String>,
    pub province: Option<String>,
    pub postal: Option<String>,
    pub city: Option<String>,
    pub address: Option<String>,
}

/// OSCAR's `AgeTo1`: Joda's year-month-day period from the birth date to today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct AgeTo1 {
    pub days: i32,
    pub months: i32,
    pub years: i32,
}

/// OSCAR's `DemographicExtTo1`: one `demographicExt` key/value row.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemographicExtTo1 {
    pub id: Option<i32>,
    pub demographic_no: Option<i32>,
    pub provider_no: Option<String>,
    pub key: Option<String>,
    pub value: Option<String>,
    pub date_created: Option<i64>,
    pub hidden: bool,
}

/// OSCAR's `org.oscarehr.ws.rest.to.model.DemographicSearchResult`: one row of
/// `quickSearch` and `search`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemographicSearchResult {
    pub demographic_no: i32,
    pub last_name: Option<String>,
    pub first_name: Option<String>,
    pub chart_no: Option<String>,
    pub sex: Option<String>,
    pub dob: Option<i64>,
    pub provider_no: Option<String>,
    /// `"LAST,FIRST"` (no space, unlike `ProviderTo1.name`), null without a provider.
    pub provider_name: Option<String>,
    pub roster_status: Option<String>,
    pub patient_status: Option<String>,
    pub phone: Option<String>,
    pub hin: Option<String>,
    pub remote_facility_id: Option<i32>,
    /// `yyyy-MM-dd`; a getter without a field in OSCAR, so Jackson writes it last.
    #[serde(rename = "formattedDOB")]
    pub formatted_dob: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_are_written_and_names_are_oscars() {
        let json = serde_json::to_value(DemographicTo1::default()).expect("serialises");
        let obj = json.as_object().expect("an object");
        for key in [
            "demographicNo",
            "alternativePhone",
            "myOscarUserName",
            "dobYear",
            "sexDesc",
            "waitingListID",
            "onWaitingListSinceDate",
            "admissionProgramId",
            "middleNames",
            "referralDoctors",
        ] {
            assert!(obj.contains_key(key), "{key} missing");
        }
        assert_eq!(obj["phone"], serde_json::Value::Null);
        assert_eq!(obj["extras"], serde_json::json!([]));
        assert_eq!(
            obj["address"],
            serde_json::json!({"country":null,"province":null,"postal":null,"city":null,"address":null})
        );
        // Jackson 1.9 writes fields in declaration order; the live capture starts like this.
        // (`serde_json::Value` sorts its keys, so look at the text.)
        let text = serde_json::to_string(&DemographicTo1::default()).expect("serialises");
        assert!(
            text.starts_with(r#"{"demographicNo":0,"address":{"country":null,"province":null,"postal":null,"city":null,"address":null},"phone":null,"alternativePhone":null,"#),
            "{text}"
        );
    }

    #[test]
    fn search_result_names() {
        let json = serde_json::to_string(&DemographicSearchResult::default()).expect("serialises");
        assert!(
            json.ends_with(r#""remoteFacilityId":null,"formattedDOB":null}"#),
            "{json}"
        );
    }
}
