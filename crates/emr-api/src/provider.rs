//! `ProviderTo1`: a provider as the REST surface shows one.

use serde::Serialize;

use crate::demographic::AddressTo1;

/// OSCAR's `org.oscarehr.ws.rest.to.model.ProviderTo1` (OSCAR 19 field order, then
/// `practitionerNoType`, which later OSCARs added).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderTo1 {
    pub provider_no: Option<String>,
    pub last_name: Option<String>,
    pub first_name: Option<String>,
    /// `"Last, First"`, OSCAR's `Provider.getFormattedName()`.
    pub name: Option<String>,
    pub comments: Option<String>,
    pub phone: Option<String>,
    pub billing_no: Option<String>,
    pub work_phone: Option<String>,
    /// Never null: OSCAR initialises it to an empty `AddressTo1`.
    pub address: AddressTo1,
    pub team: Option<String>,
    /// OSCAR: `provider.status == "1"`.
    pub enabled: bool,
    pub provider_type: Option<String>,
    /// OSCAR's `Sex1` enum, which Jackson writes by name (`"M"`, `"F"`, …).
    pub sex: Option<String>,
    pub ohip_no: Option<String>,
    pub specialty: Option<String>,
    pub dob: Option<i64>,
    pub hso_no: Option<String>,
    pub provider_activity: Option<String>,
    pub rma_no: Option<String>,
    pub signed_confidentiality: Option<i64>,
    pub practitioner_no: Option<String>,
    pub email: Option<String>,
    pub title: Option<String>,
    pub last_update_user: Option<String>,
    pub last_update_date: Option<i64>,
    pub practitioner_no_type: Option<String>,
}

impl ProviderTo1 {
    /// A provider with its number and names, `name` formatted as OSCAR formats it; the caller
    /// fills in the rest.
    pub fn new(provider_no: &str, last_name: &str, first_name: &str) -> ProviderTo1 {
        ProviderTo1 {
            provider_no: Some(provider_no.to_owned()),
            last_name: Some(last_name.to_owned()),
            first_name: Some(first_name.to_owned()),
            name: Some(format!("{last_name}, {first_name}")),
            ..ProviderTo1::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_last_comma_first() {
        let p = ProviderTo1 {
            enabled: true,
            ..ProviderTo1::new("104", "Smith", "Ann")
        };
        let json = serde_json::to_value(&p).expect("serialises");
        assert_eq!(json["name"], "Smith, Ann");
        assert_eq!(json["providerNo"], "104");
        assert_eq!(json["enabled"], true);
        assert_eq!(json["dob"], serde_json::Value::Null);
        assert!(json["address"].is_object());
        assert!(json.get("practitionerNoType").is_some());
    }
}
