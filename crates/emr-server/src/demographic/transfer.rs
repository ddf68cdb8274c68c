//! A patient on the SOAP wire: OSCAR's `demographicTransfer` and `demographicTransfer2`.
//!
//! OSCAR fills these with Spring's `BeanUtils.copyProperties` from its `Demographic` entity,
//! and JAXB writes the properties in alphabetical order with nulls left out (reference
//! `oscar-wire.md` §1.2, §1.6). The order below is the WSDL's `xs:sequence`, which a test
//! checks against the shipped WSDL.

use jiff::tz::TimeZone;
use oscar_soap::Elements;

use crate::demographic::record::Demographic;
use crate::system_info::xs_date_time;

/// Which transfer type to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    /// `demographicTransfer` (`getDemographic`, `searchDemographicByName`, …).
    V1,
    /// `demographicTransfer2` (`getDemographic2`, `getActiveDemographicsAfter2`): V1 plus
    /// `consentToUseEmailForCare`, `countryOfOrigin`, `middleNames`, `newsletter`, the
    /// residential address and `rosterEnrolledTo`.
    V2,
}

/// Writes the children of one `<return>` element for `d`. `DATE` columns are written as local
/// midnight in `tz` and `lastUpdateDate` as local time in `tz`, as OSCAR's JVM reads them in
/// its default zone.
pub fn write_transfer(e: &mut Elements, d: &Demographic, kind: TransferKind, tz: &TimeZone) {
    let v2 = kind == TransferKind::V2;
    let date = |v: Option<jiff::civil::Date>| {
        v.and_then(|d| d.to_zoned(tz.clone()).ok())
            .map(|z| xs_date_time(&z))
    };
    let when = d
        .last_update_date
        .and_then(|dt| dt.to_zoned(tz.clone()).ok())
        .map(|z| xs_date_time(&z));
    // Not in OSCAR's entity after a plain load, so null and left out: `displayName`,
    // `headRecord`, `links`, `sexDesc`, `consentToUseEmailForCare`. `activeCount` and
    // `hsAlertCount` are what a live OSCAR 19 sends for every patient.
    e.display("activeCount", Some(1))
        .text("address", s(&d.address))
        .text("alias", s(&d.alias))
        .text("anonymous", s(&d.anonymous))
        .text("chartNo", s(&d.chart_no))
        .text("children", s(&d.children))
        .text("citizenship", s(&d.citizenship))
        .text("city", s(&d.city));
    if v2 {
        e.text("countryOfOrigin", s(&d.country_of_origin));
    }
    e.display("dateJoined", date(d.date_joined))
        .text("dateOfBirth", s(&d.date_of_birth))
        .display("demographicNo", Some(d.demographic_no))
        .display("effDate", date(d.eff_date))
        .text("email", s(&d.email))
        .display("endDate", date(d.end_date))
        .text("familyDoctor", s(&d.family_doctor))
        .text("firstName", Some(&d.first_name))
        .display("hcRenewDate", date(d.hc_renew_date))
        .text("hcType", s(&d.hc_type))
        .text("hin", s(&d.hin))
        .display("hsAlertCount", Some(0))
        .text("lastName", Some(&d.last_name))
        .display("lastUpdateDate", when)
        .text("lastUpdateUser", s(&d.last_update_user));
    if v2 {
        e.text("middleNames", s(&d.middle_names));
    }
    e.text("monthOfBirth", s(&d.month_of_birth))
        .text("myOscarUserName", s(&d.my_oscar_user_name));
    if v2 {
        e.text("newsletter", s(&d.newsletter));
    }
    e.text("officialLanguage", s(&d.official_lang))
        .text("patientStatus", s(&d.patient_status))
        .display("patientStatusDate", date(d.patient_status_date))
        .text("pcnIndicator", s(&d.pcn_indicator))
        .text("phone", s(&d.phone))
        .text("phone2", s(&d.phone2))
        .text("postal", s(&d.postal))
        .text("previousAddress", s(&d.previous_address))
        .text("providerNo", s(&d.provider_no))
        .text("province", s(&d.province));
    if v2 {
        e.text("residentialAddress", s(&d.residential_address))
            .text("residentialCity", s(&d.residential_city))
            .text("residentialPostal", s(&d.residential_postal))
            .text("residentialProvince", s(&d.residential_province));
    }
    e.display("rosterDate", date(d.roster_date));
    if v2 {
        e.text("rosterEnrolledTo", s(&d.roster_enrolled_to));
    }
    e.text("rosterStatus", s(&d.roster_status))
        .display("rosterTerminationDate", date(d.roster_termination_date))
        .text("rosterTerminationReason", s(&d.roster_termination_reason))
        .text("sex", Some(&d.sex))
        .text("sin", s(&d.sin))
        .text("sourceOfIncome", s(&d.source_of_income))
        .text("spokenLanguage", s(&d.spoken_lang))
        .text("title", s(&d.title))
        .text("ver", s(&d.ver))
        .text("yearOfBirth", s(&d.year_of_birth));
}

fn s(v: &Option<String>) -> Option<&str> {
    v.as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use oscar_soap::ResponseWriter;

    const WSDL: &str = include_str!("../../wsdl/DemographicService.wsdl");

    /// Reference §1.6, the live `getDemographic` answer.
    const SAMPLE: &str = r#"<ns2:getDemographicResponse xmlns:ns2="http://ws.oscarehr.org/"><return>
 <activeCount>1</activeCount><address>1 Main St</address><chartNo></chartNo><city>Hamilton</city>
 <dateJoined>2019-07-16T00:00:00-04:00</dateJoined><dateOfBirth>02</dateOfBirth><demographicNo>1</demographicNo>
 <firstName>JOHN</firstName><hcType>ON</hcType><hin>1234567890</hin><hsAlertCount>0</hsAlertCount><lastName>DOE</lastName>
 <lastUpdateDate>2019-07-16T13:48:05-04:00</lastUpdateDate><monthOfBirth>01</monthOfBirth><patientStatus>AC</patientStatus>
 <phone>905-555-1212</phone><postal>L8P 1A1</postal><providerNo>999998</providerNo><province>ON</province>
 <rosterStatus>RO</rosterStatus><sex>M</sex><ver>AB</ver><yearOfBirth>1980</yearOfBirth>
</return></ns2:getDemographicResponse>"#;

    fn toronto() -> TimeZone {
        TimeZone::get("America/Toronto").expect("the tz database has Toronto")
    }

    fn john_doe() -> Demographic {
        let some = |s: &str| Some(s.to_owned());
        Demographic {
            demographic_no: 1,
            last_name: "DOE".into(),
            first_name: "JOHN".into(),
            sex: "M".into(),
            address: some("1 Main St"),
            chart_no: some(""),
            city: some("Hamilton"),
            date_joined: Some(date(2019, 7, 16)),
            year_of_birth: some("1980"),
            month_of_birth: some("01"),
            date_of_birth: some("02"),
            hc_type: some("ON"),
            hin: some("1234567890"),
            last_update_date: Some(date(2019, 7, 16).at(13, 48, 5, 0)),
            patient_status: some("AC"),
            phone: some("905-555-1212"),
            postal: some("L8P 1A1"),
            provider_no: some("999998"),
            province: some("ON"),
            roster_status: some("RO"),
            ver: some("AB"),
            ..Demographic::default()
        }
    }

    fn render(d: &Demographic, kind: TransferKind, tz: &TimeZone) -> String {
        ResponseWriter::write("getDemographic", |e| {
            e.nested("return", Some(()), |e, ()| write_transfer(e, d, kind, tz));
        })
    }

    #[test]
    fn reproduces_the_live_answer() {
        // The sample is wrapped for reading: the line breaks and indents are not in the answer.
        let body: String = SAMPLE.lines().map(str::trim).collect();
        let expected = format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{body}</soap:Body></soap:Envelope>"#
        );
        assert_eq!(render(&john_doe(), TransferKind::V1, &toronto()), expected);
    }

    /// The element names of `type`'s sequence in the shipped WSDL.
    fn sequence(type_name: &str) -> Vec<String> {
        let start = WSDL
            .find(&format!("name=\"{type_name}\">"))
            .expect("the type is in the WSDL");
        let body = &WSDL[start..];
        let body = &body[..body.find("</xs:sequence>").expect("a sequence")];
        body.split("<xs:element ")
            .skip(1)
            .map(|el| {
                let at = el.find("name=\"").expect("a name") + 6;
                el[at..at + el[at..].find('"').expect("closed")].to_owned()
            })
            .collect()
    }

    /// The top-level element names inside `<return>`.
    fn written(xml: &str) -> Vec<String> {
        let inner = &xml
            [xml.find("<return>").expect("a return") + 8..xml.find("</return>").expect("closed")];
        let mut names = Vec::new();
        let mut rest = inner;
        while let Some(open) = rest.find('<') {
            let name_end = open + rest[open..].find('>').expect("a tag end");
            let name = &rest[open + 1..name_end];
            let close = format!("</{name}>");
            names.push(name.to_owned());
            rest = &rest[name_end + rest[name_end..].find(&close).expect("closed") + close.len()..];
        }
        names
    }

    /// Every column set, so every element that is ever written is.
    fn full() -> Demographic {
        let mut d = john_doe();
        let v = |s: &str| Some(s.to_owned());
        d.title = v("MR");
        d.phone2 = v("905-555-0000");
        d.email = v("j@example.com");
        d.my_oscar_user_name = v("jdoe");
        d.roster_date = Some(date(2019, 1, 1));
        d.roster_termination_date = Some(date(2019, 2, 1));
        d.roster_termination_reason = v("12");
        d.roster_enrolled_to = v("999998");
        d.patient_status_date = Some(date(2019, 3, 1));
        d.official_lang = v("English");
        d.spoken_lang = v("French");
        d.end_date = Some(date(2030, 1, 1));
        d.eff_date = Some(date(2019, 4, 1));
        d.pcn_indicator = v("x");
        d.hc_renew_date = Some(date(2025, 1, 1));
        d.family_doctor = v("<rdohip></rdohip>");
        d.alias = v("Jack");
        d.previous_address = v("2 Side St");
        d.children = v("2");
        d.source_of_income = v("work");
        d.citizenship = v("CA");
        d.sin = v("123456789");
        d.country_of_origin = v("CA");
        d.newsletter = v("No");
        d.anonymous = v("no");
        d.last_update_user = v("999998");
        d.middle_names = v("Q");
        d.residential_address = v("3 Home St");
        d.residential_city = v("Dundas");
        d.residential_province = v("ON");
        d.residential_postal = v("L9H 1A1");
        d
    }

    #[test]
    fn order_is_the_wsdls() {
        // Null in OSCAR's entity for a plain load, so never written.
        let never = [
            "consentToUseEmailForCare",
            "displayName",
            "headRecord",
            "links",
            "sexDesc",
        ];
        for (kind, type_name) in [
            (TransferKind::V1, "demographicTransfer"),
            (TransferKind::V2, "demographicTransfer2"),
        ] {
            let expected: Vec<String> = sequence(type_name)
                .into_iter()
                .filter(|n| !never.contains(&n.as_str()))
                .collect();
            assert!(expected.len() > 40, "parsed the WSDL: {expected:?}");
            let got = written(&render(&full(), kind, &toronto()));
            assert_eq!(got, expected, "{type_name}");
        }
    }

    #[test]
    fn text_is_escaped_and_dates_follow_the_zone() {
        let xml = render(&full(), TransferKind::V1, &TimeZone::UTC);
        assert!(
            xml.contains("<familyDoctor>&lt;rdohip&gt;&lt;/rdohip&gt;</familyDoctor>"),
            "{xml}"
        );
        assert!(
            xml.contains("<dateJoined>2019-07-16T00:00:00Z</dateJoined>"),
            "{xml}"
        );
        let xml = render(&full(), TransferKind::V1, &toronto());
        // Winter: Toronto is five hours behind UTC.
        assert!(
            xml.contains("<rosterDate>2019-01-01T00:00:00-05:00</rosterDate>"),
            "{xml}"
        );
    }

    #[test]
    fn milliseconds_only_when_not_zero() {
        let mut d = john_doe();
        d.last_update_date = Some(date(2026, 11, 23).at(2, 24, 55, 469_000_000));
        let xml = render(&d, TransferKind::V1, &toronto());
        assert!(
            xml.contains("<lastUpdateDate>2026-11-23T02:24:55.469-05:00</lastUpdateDate>"),
            "{xml}"
        );
    }
}
