//! What clients send to create or update a patient: every `DemographicTo1` key, parsed but not
//! yet validated (the EMR server validates against its columns).

use serde::de::{Deserialize, Deserializer, IgnoredAny};

/// One input key: left out, sent as `null`, or sent with a value.
///
/// An update keeps what is left out and clears what is `null`, so the two must be told apart,
/// which `Option` cannot do. Use with `#[serde(default)]`: a missing key is `Absent`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Set(T),
}

impl<T> Patch<T> {
    /// `true` unless the key was left out.
    pub fn is_present(&self) -> bool {
        !matches!(self, Patch::Absent)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Patch::Null,
            Some(v) => Patch::Set(v),
        })
    }
}

/// A key OSCAR's answer carries but an update does not write (`age`, `provider`, `extras`,
/// …): accepted with any value and dropped, because clients send back what they were given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ignored;

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d)?;
        Ok(Ignored)
    }
}

/// A date as clients send one: epoch milliseconds (what OSCAR's Jackson writes and reads) or
/// a text date (`yyyy-MM-dd`, which Jackson's `StdDateFormat` also accepts). The server checks
/// the text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum DateInput {
    Millis(i64),
    Text(String),
}

/// An `AddressTo1` in a request body. `country` is accepted and dropped, as OSCAR's converter
/// drops it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddressInput {
    pub country: Ignored,
    pub province: Patch<String>,
    pub postal: Patch<String>,
    pub city: Patch<String>,
    pub address: Patch<String>,
}

/// The body of `POST /demographics` and `PUT /demographics`: OSCAR's `DemographicTo1` as
/// Jackson reads it, with `FAIL_ON_UNKNOWN_PROPERTIES` (a misspelt key is refused rather than
/// silently lost). Read-only keys are [`Ignored`].
///
/// Of the birth date, OSCAR's converter reads only `dobYear`/`dobMonth`/`dobDay`; `dateOfBirth`
/// is accepted too, for clients that send only that.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct DemographicInput {
    /// Which patient a `PUT` updates; ignored on create.
    pub demographic_no: Option<i32>,
    pub address: Patch<AddressInput>,
    pub phone: Patch<String>,
    pub alternative_phone: Patch<String>,
    pub patient_status: Patch<String>,
    pub patient_status_date: Patch<DateInput>,
    pub roster_status: Patch<String>,
    pub provider_no: Patch<String>,
    pub my_oscar_user_name: Patch<String>,
    pub hin: Patch<String>,
    pub ver: Patch<String>,
    pub date_of_birth: Patch<DateInput>,
    pub dob_year: Patch<String>,
    pub dob_month: Patch<String>,
    pub dob_day: Patch<String>,
    pub sex: Patch<String>,
    pub sex_desc: Ignored,
    pub date_joined: Patch<DateInput>,
    pub family_doctor: Patch<String>,
    pub first_name: Patch<String>,
    pub last_name: Patch<String>,
    pub hc_renew_date: Patch<DateInput>,
    pub pcn_indicator: Patch<String>,
    pub end_date: Patch<DateInput>,
    pub hc_type: Patch<String>,
    pub chart_no: Patch<String>,
    pub email: Patch<String>,
    pub eff_date: Patch<DateInput>,
    pub roster_date: Patch<DateInput>,
    pub roster_termination_date: Patch<DateInput>,
    pub roster_termination_reason: Patch<String>,
    /// A copy of `rosterTerminationReason` in OSCAR's answers.
    pub links: Ignored,
    pub alias: Patch<String>,
    /// Only its `address` is stored (the `previousAddress` column).
    pub previous_address: Patch<AddressInput>,
    pub children: Patch<String>,
    pub source_of_income: Patch<String>,
    pub citizenship: Patch<String>,
    pub sin: Patch<String>,
    pub anonymous: Patch<String>,
    pub spoken_language: Patch<String>,
    pub active_count: Ignored,
    pub hs_alert_count: Ignored,
    pub display_name: Ignored,
    pub provider: Ignored,
    /// Set by the server from the signed-in provider and the clock.
    pub last_update_user: Ignored,
    pub last_update_date: Ignored,
    pub title: Patch<String>,
    pub official_language: Patch<String>,
    pub country_of_origin: Patch<String>,
    pub newsletter: Patch<String>,
    pub nurse: Ignored,
    pub resident: Ignored,
    pub alert: Ignored,
    pub midwife: Ignored,
    pub notes: Ignored,
    #[serde(rename = "waitingListID")]
    pub waiting_list_id: Ignored,
    pub waiting_list_note: Ignored,
    pub on_waiting_list_since_date: Ignored,
    pub age: Ignored,
    /// The program a new patient is admitted to (OSCAR's `createDemographic`).
    pub admission_program_id: Option<i32>,
    pub middle_names: Patch<String>,
    pub demo_contacts: Ignored,
    pub demo_contact_pros: Ignored,
    pub extras: Ignored,
    pub doctors: Ignored,
    pub nurses: Ignored,
    pub midwives: Ignored,
    pub referral_doctors: Ignored,
    pub waiting_list_names: Ignored,
    pub patient_status_list: Ignored,
    pub roster_status_list: Ignored,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DemographicTo1, ProviderTo1};

    fn parse(json: &str) -> Result<DemographicInput, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn absent_null_and_set_differ() {
        let i = parse(r#"{"phone":null,"email":"a@b.c"}"#).expect("parses");
        assert_eq!(i.phone, Patch::Null);
        assert_eq!(i.email, Patch::Set("a@b.c".to_owned()));
        assert_eq!(i.hin, Patch::Absent);
        assert!(!i.hin.is_present());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse(r#"{"lastNmae":"DOE"}"#).expect_err("a misspelt key");
        assert!(e.to_string().contains("lastNmae"), "{e}");
        let e = parse(r#"{"address":{"street":"1 Main St"}}"#).expect_err("nested too");
        assert!(e.to_string().contains("street"), "{e}");
    }

    #[test]
    fn dates_are_millis_or_text() {
        let i = parse(r#"{"dateJoined":1563249600000,"effDate":"2019-07-16","endDate":null}"#)
            .expect("parses");
        assert_eq!(
            i.date_joined,
            Patch::Set(DateInput::Millis(1_563_249_600_000))
        );
        assert_eq!(i.eff_date, Patch::Set(DateInput::Text("2019-07-16".into())));
        assert_eq!(i.end_date, Patch::Null);
        assert!(parse(r#"{"effDate":true}"#).is_err());
    }

    #[test]
    fn read_only_keys_of_any_shape_are_accepted() {
        let i = parse(
            r#"{"age":{"days":4,"months":0,"years":38},"provider":{"providerNo":"104"},
               "extras":[{"key":"x"}],"activeCount":1,"sexDesc":"Male","links":null,
               "doctors":[],"waitingListID":3,"admissionProgramId":10016}"#,
        )
        .expect("parses");
        assert_eq!(i.admission_program_id, Some(10016));
    }

    /// Whatever the server writes, a client can send back.
    #[test]
    fn every_key_of_the_answer_is_accepted() {
        let to = DemographicTo1 {
            provider: Some(ProviderTo1::new("1", "A", "B")),
            doctors: vec![ProviderTo1::new("2", "C", "D")],
            ..DemographicTo1::default()
        };
        let json = serde_json::to_string(&to).expect("serialises");
        let i = parse(&json).expect("accepts its own output");
        assert_eq!(i.demographic_no, Some(0));
        assert_eq!(i.phone, Patch::Null);
    }
}
