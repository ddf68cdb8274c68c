//! A patient on the REST surface: `DemographicTo1` out, `DemographicInput` in, validated.
//!
//! Out follows OSCAR's `DemographicConverter.getAsTransferObject` (reference `oscar-wire.md`
//! §2.2), its quirks included. In is stricter than OSCAR, which stores whatever it is sent:
//! every problem is collected and reported by JSON field name, so that a client can show them
//! all at once, and nothing reaches the table that its columns would truncate or refuse.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Unit};
use oscar_emr_api::{
    AddressInput, AddressTo1, AgeTo1, DateInput, DemographicInput, DemographicSearchResult,
    DemographicTo1, ErrorResponse, FieldErrorTo, Patch, ProviderTo1,
};

use crate::demographic::record::Demographic;

/// One problem with one input field, named as the client named it (`lastName`,
/// `address.city`). The message says what is wrong, never repeats the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl From<FieldError> for FieldErrorTo {
    fn from(e: FieldError) -> FieldErrorTo {
        FieldErrorTo {
            field: e.field,
            message: e.message,
        }
    }
}

/// The `400` body for `errors`.
pub fn error_response(errors: Vec<FieldError>) -> ErrorResponse {
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    let message = format!("invalid demographic: {}", fields.join(", "));
    ErrorResponse::new(
        message,
        errors.into_iter().map(FieldErrorTo::from).collect(),
    )
}

/// `d` as OSCAR's REST layer shows it. `provider` is the patient's provider (`provider_no`),
/// if the caller found one; `today` is the date in `tz` the age is counted to. Lists that come
/// from other tables (`extras`, `doctors`, …) are empty for the caller to fill.
pub fn to_json(
    d: &Demographic,
    provider: Option<&ProviderTo1>,
    today: Date,
    tz: &TimeZone,
) -> DemographicTo1 {
    let dob = d.date_of_birth();
    DemographicTo1 {
        demographic_no: d.demographic_no,
        address: AddressTo1 {
            country: None,
            province: d.province.clone(),
            postal: d.postal.clone(),
            city: d.city.clone(),
            address: d.address.clone(),
        },
        phone: d.phone.clone(),
        alternative_phone: d.phone2.clone(),
        patient_status: d.patient_status.clone(),
        patient_status_date: millis(d.patient_status_date, tz),
        roster_status: d.roster_status.clone(),
        provider_no: d.provider_no.clone(),
        my_oscar_user_name: d.my_oscar_user_name.clone(),
        hin: d.hin.clone(),
        ver: d.ver.clone(),
        date_of_birth: millis(dob, tz),
        dob_year: d.year_of_birth.clone(),
        dob_month: d.month_of_birth.clone(),
        dob_day: d.date_of_birth.clone(),
        sex: Some(d.sex.clone()),
        sex_desc: sex_desc(&d.sex).map(str::to_owned),
        date_joined: millis(d.date_joined, tz),
        family_doctor: d.family_doctor.clone(),
        first_name: Some(d.first_name.clone()),
        last_name: Some(d.last_name.clone()),
        hc_renew_date: millis(d.hc_renew_date, tz),
        pcn_indicator: d.pcn_indicator.clone(),
        end_date: millis(d.end_date, tz),
        hc_type: d.hc_type.clone(),
        chart_no: d.chart_no.clone(),
        email: d.email.clone(),
        eff_date: millis(d.eff_date, tz),
        roster_date: millis(d.roster_date, tz),
        roster_termination_date: millis(d.roster_termination_date, tz),
        roster_termination_reason: d.roster_termination_reason.clone(),
        // OSCAR's converter sets `links` from the termination reason; kept for clients that
        // read it.
        links: d.roster_termination_reason.clone(),
        alias: d.alias.clone(),
        previous_address: AddressTo1 {
            address: d.previous_address.clone(),
            ..AddressTo1::default()
        },
        children: d.children.clone(),
        source_of_income: d.source_of_income.clone(),
        citizenship: d.citizenship.clone(),
        sin: d.sin.clone(),
        anonymous: d.anonymous.clone(),
        spoken_language: d.spoken_lang.clone(),
        // What a live OSCAR 19 reports for every patient.
        active_count: 1,
        hs_alert_count: 0,
        display_name: None,
        provider: provider.cloned(),
        last_update_user: d.last_update_user.clone(),
        last_update_date: d
            .last_update_date
            .and_then(|dt| dt.to_zoned(tz.clone()).ok())
            .map(|z| z.timestamp().as_millisecond()),
        title: d.title.clone(),
        official_language: d.official_lang.clone(),
        country_of_origin: d.country_of_origin.clone(),
        newsletter: d.newsletter.clone(),
        age: dob.and_then(|dob| age(dob, today)),
        middle_names: d.middle_names.clone(),
        ..DemographicTo1::default()
    }
}

/// One row of a quick search. `provider_name` is `"LAST,FIRST"` as OSCAR's search builds it.
pub fn search_result(
    d: &Demographic,
    provider_name: Option<String>,
    tz: &TimeZone,
) -> DemographicSearchResult {
    let dob = d.date_of_birth();
    DemographicSearchResult {
        demographic_no: d.demographic_no,
        last_name: Some(d.last_name.clone()),
        first_name: Some(d.first_name.clone()),
        chart_no: d.chart_no.clone(),
        sex: Some(d.sex.clone()),
        dob: millis(dob, tz),
        provider_no: d.provider_no.clone(),
        provider_name,
        roster_status: d.roster_status.clone(),
        patient_status: d.patient_status.clone(),
        phone: d.phone.clone(),
        hin: d.hin.clone(),
        remote_facility_id: None,
        formatted_dob: dob.map(|d| d.strftime("%Y-%m-%d").to_string()),
    }
}

/// OSCAR's `Demographic.getSexDesc` labels.
fn sex_desc(sex: &str) -> Option<&'static str> {
    Some(match sex {
        "M" => "Male",
        "F" => "Female",
        "T" => "Transgender",
        "O" => "Other",
        "U" => "Undefined",
        _ => return None,
    })
}

/// Epoch milliseconds of local midnight in `tz`, as a `java.util.Date` from a `DATE` column.
fn millis(d: Option<Date>, tz: &TimeZone) -> Option<i64> {
    let z = d?.to_zoned(tz.clone()).ok()?;
    Some(z.timestamp().as_millisecond())
}

/// OSCAR's `AgeCalculator`: Joda's year-month-day period from birth to today.
fn age(dob: Date, today: Date) -> Option<AgeTo1> {
    let span = dob.until((Unit::Year, today)).ok()?;
    Some(AgeTo1 {
        days: span.get_days(),
        months: span.get_months(),
        years: i32::from(span.get_years()),
    })
}

/// The accepted sexes (OSCAR's `Gender` enum).
const SEXES: [&str; 5] = ["M", "F", "T", "O", "U"];

/// Applies a request body to `base` (an update) or to nothing (a create), validating every
/// field it sets against today's date in `tz`. See [`apply_input_at`].
pub fn apply_input(
    base: Option<&Demographic>,
    input: DemographicInput,
    tz: &TimeZone,
) -> Result<Demographic, Vec<FieldError>> {
    let today = Timestamp::now().to_zoned(tz.clone()).date();
    apply_input_at(base, input, tz, today)
}

/// [`apply_input`] with the date a birth date may not be after.
///
/// On create, `lastName`, `firstName`, `sex` and the birth date are required and
/// `patientStatus` defaults to `AC`. On update, a key left out keeps the stored value, `null`
/// clears it (refused for the required ones), and a value equal to the stored one is kept
/// without checks: rows imported from OSCAR may break today's rules, and a client that sends
/// back what it was given must not be refused for data it did not touch.
///
/// The birth date is taken from `dobYear`/`dobMonth`/`dobDay` when any of them is sent (as
/// OSCAR's converter does), otherwise from `dateOfBirth`. Names are stored trimmed and
/// upper-cased, as OSCAR stores them. `demographic_no`, `lastUpdateUser` and `lastUpdateDate`
/// are the caller's to set.
pub fn apply_input_at(
    base: Option<&Demographic>,
    input: DemographicInput,
    tz: &TimeZone,
    today: Date,
) -> Result<Demographic, Vec<FieldError>> {
    let mut d = base.cloned().unwrap_or_default();
    let mut v = Check {
        errors: Vec::new(),
        creating: base.is_none(),
        tz,
        today,
    };
    // Destructured, so that a key added to the input cannot be forgotten here.
    let DemographicInput {
        demographic_no: _,
        address,
        phone,
        alternative_phone,
        patient_status,
        patient_status_date,
        roster_status,
        provider_no,
        my_oscar_user_name,
        hin,
        ver,
        date_of_birth,
        dob_year,
        dob_month,
        dob_day,
        sex,
        sex_desc: _,
        date_joined,
        family_doctor,
        first_name,
        last_name,
        hc_renew_date,
        pcn_indicator,
        end_date,
        hc_type,
        chart_no,
        email,
        eff_date,
        roster_date,
        roster_termination_date,
        roster_termination_reason,
        links: _,
        alias,
        previous_address,
        children,
        source_of_income,
        citizenship,
        sin,
        anonymous,
        spoken_language,
        active_count: _,
        hs_alert_count: _,
        display_name: _,
        provider: _,
        last_update_user: _,
        last_update_date: _,
        title,
        official_language,
        country_of_origin,
        newsletter,
        nurse: _,
        resident: _,
        alert: _,
        midwife: _,
        notes: _,
        waiting_list_id: _,
        waiting_list_note: _,
        on_waiting_list_since_date: _,
        age: _,
        admission_program_id: _,
        middle_names,
        demo_contacts: _,
        demo_contact_pros: _,
        extras: _,
        doctors: _,
        nurses: _,
        midwives: _,
        referral_doctors: _,
        waiting_list_names: _,
        patient_status_list: _,
        roster_status_list: _,
    } = input;

    v.name("lastName", last_name, &mut d.last_name);
    v.name("firstName", first_name, &mut d.first_name);
    v.sex(sex, &mut d.sex);
    v.birth_date(date_of_birth, [dob_year, dob_month, dob_day], &mut d);

    match address {
        Patch::Absent => {}
        Patch::Null => {
            d.address = None;
            d.city = None;
            d.province = None;
            d.postal = None;
        }
        Patch::Set(AddressInput {
            country: _,
            province,
            postal,
            city,
            address,
        }) => {
            v.text("address.address", address, 60, &mut d.address);
            v.text("address.city", city, 50, &mut d.city);
            v.text("address.province", province, 20, &mut d.province);
            v.text("address.postal", postal, 9, &mut d.postal);
        }
    }
    match previous_address {
        Patch::Absent => {}
        Patch::Null => d.previous_address = None,
        // OSCAR keeps only the street line of a previous address.
        Patch::Set(a) => v.text(
            "previousAddress.address",
            a.address,
            255,
            &mut d.previous_address,
        ),
    }

    v.text("phone", phone, 20, &mut d.phone);
    v.text("alternativePhone", alternative_phone, 20, &mut d.phone2);
    v.text("patientStatus", patient_status, 20, &mut d.patient_status);
    if v.creating && d.patient_status.is_none() {
        d.patient_status = Some("AC".to_owned());
    }
    v.date(
        "patientStatusDate",
        patient_status_date,
        &mut d.patient_status_date,
    );
    v.text("rosterStatus", roster_status, 20, &mut d.roster_status);
    v.text("providerNo", provider_no, 250, &mut d.provider_no);
    v.text(
        "myOscarUserName",
        my_oscar_user_name,
        255,
        &mut d.my_oscar_user_name,
    );
    // The column is UNIQUE: an empty name stored for two patients would make the second
    // insert fail, so "none" is NULL, as OSCAR leaves it.
    if d.my_oscar_user_name.as_deref() == Some("") {
        d.my_oscar_user_name = None;
    }
    v.hin(hin, &mut d.hin);
    v.text("ver", ver, 3, &mut d.ver);
    v.date("dateJoined", date_joined, &mut d.date_joined);
    v.text("familyDoctor", family_doctor, 80, &mut d.family_doctor);
    v.date("hcRenewDate", hc_renew_date, &mut d.hc_renew_date);
    v.text("pcnIndicator", pcn_indicator, 20, &mut d.pcn_indicator);
    v.date("endDate", end_date, &mut d.end_date);
    v.text("hcType", hc_type, 20, &mut d.hc_type);
    v.text("chartNo", chart_no, 10, &mut d.chart_no);
    v.email(email, &mut d.email);
    v.date("effDate", eff_date, &mut d.eff_date);
    v.date("rosterDate", roster_date, &mut d.roster_date);
    v.date(
        "rosterTerminationDate",
        roster_termination_date,
        &mut d.roster_termination_date,
    );
    v.text(
        "rosterTerminationReason",
        roster_termination_reason,
        2,
        &mut d.roster_termination_reason,
    );
    v.text("alias", alias, 70, &mut d.alias);
    v.text("children", children, 255, &mut d.children);
    v.text(
        "sourceOfIncome",
        source_of_income,
        255,
        &mut d.source_of_income,
    );
    v.text("citizenship", citizenship, 40, &mut d.citizenship);
    v.text("sin", sin, 15, &mut d.sin);
    v.text("anonymous", anonymous, 32, &mut d.anonymous);
    v.text("spokenLanguage", spoken_language, 60, &mut d.spoken_lang);
    v.text("title", title, 10, &mut d.title);
    v.text(
        "officialLanguage",
        official_language,
        60,
        &mut d.official_lang,
    );
    v.text(
        "countryOfOrigin",
        country_of_origin,
        4,
        &mut d.country_of_origin,
    );
    v.text("newsletter", newsletter, 32, &mut d.newsletter);
    v.text("middleNames", middle_names, 100, &mut d.middle_names);

    if v.errors.is_empty() {
        Ok(d)
    } else {
        Err(v.errors)
    }
}

/// Collects every problem while the input is applied.
struct Check<'a> {
    errors: Vec<FieldError>,
    creating: bool,
    tz: &'a TimeZone,
    today: Date,
}

impl Check<'_> {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// `true` if `s` fits a column of `max` characters (utf8mb4 columns count characters).
    fn fits(&mut self, field: &str, s: &str, max: usize) -> bool {
        let ok = s.chars().count() <= max;
        if !ok {
            self.fail(field, format!("must be at most {max} characters"));
        }
        ok
    }

    /// `true` when an update sends back the stored value, which is then kept as it is.
    fn unchanged(&self, stored: Option<&str>, sent: &str) -> bool {
        !self.creating && stored == Some(sent)
    }

    /// An optional text column of `max` characters.
    fn text(&mut self, field: &str, patch: Patch<String>, max: usize, target: &mut Option<String>) {
        match patch {
            Patch::Absent => {}
            Patch::Null => *target = None,
            Patch::Set(s) => {
                if !self.unchanged(target.as_deref(), &s) && self.fits(field, &s, max) {
                    *target = Some(s);
                }
            }
        }
    }

    /// A required value: `Some` when it is sent, an error when it must be and is not.
    fn required(&mut self, field: &str, patch: Patch<String>) -> Option<String> {
        match patch {
            Patch::Set(s) => Some(s),
            Patch::Absent if !self.creating => None,
            Patch::Absent | Patch::Null => {
                self.fail(field, "is required");
                None
            }
        }
    }

    /// `lastName`/`firstName`: `varchar(30) NOT NULL`, stored trimmed and upper-cased.
    fn name(&mut self, field: &str, patch: Patch<String>, target: &mut String) {
        let Some(s) = self.required(field, patch) else {
            return;
        };
        if self.unchanged(Some(target), &s) {
            return;
        }
        let s = s.trim().to_uppercase();
        if s.is_empty() {
            self.fail(field, "must not be empty");
        } else if self.fits(field, &s, 30) {
            *target = s;
        }
    }

    fn sex(&mut self, patch: Patch<String>, target: &mut String) {
        let Some(s) = self.required("sex", patch) else {
            return;
        };
        if self.unchanged(Some(target), &s) {
            return;
        }
        let s = s.trim().to_uppercase();
        if SEXES.contains(&s.as_str()) {
            *target = s;
        } else {
            self.fail("sex", "must be one of M, F, T, O, U");
        }
    }

    /// Health insurance number: digits only (OSCAR's billing and eligibility checks assume
    /// it), at most 20; empty means none, as OSCAR's forms send it.
    fn hin(&mut self, patch: Patch<String>, target: &mut Option<String>) {
        if let Patch::Set(s) = &patch {
            if !self.unchanged(target.as_deref(), s) && !s.bytes().all(|b| b.is_ascii_digit()) {
                self.fail("hin", "must be digits only");
                return;
            }
        }
        self.text("hin", patch, 20, target);
    }

    /// An address with exactly one `@`, something either side of it; empty means none.
    fn email(&mut self, patch: Patch<String>, target: &mut Option<String>) {
        if let Patch::Set(s) = &patch {
            let well_formed = match s.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty() && !domain.is_empty() && !domain.contains('@')
                }
                None => false,
            };
            if !s.is_empty() && !self.unchanged(target.as_deref(), s) && !well_formed {
                self.fail("email", "must be an email address with one @");
                return;
            }
        }
        self.text("email", patch, 100, target);
    }

    /// An optional `DATE` column.
    fn date(&mut self, field: &str, patch: Patch<DateInput>, target: &mut Option<Date>) {
        match patch {
            Patch::Absent => {}
            Patch::Null => *target = None,
            Patch::Set(input) => {
                if let Some(d) = self.parse_date(field, &input) {
                    *target = Some(d);
                }
            }
        }
    }

    /// The civil date a client meant: epoch milliseconds are read in the box's zone (as
    /// OSCAR's JVM reads a `java.util.Date`), text is `yyyy-MM-dd` or an RFC 3339 instant.
    fn parse_date(&mut self, field: &str, input: &DateInput) -> Option<Date> {
        let date = match input {
            DateInput::Millis(ms) => Timestamp::from_millisecond(*ms)
                .ok()
                .map(|t| t.to_zoned(self.tz.clone()).date()),
            DateInput::Text(s) => {
                let s = s.trim();
                if is_plain_date(s) {
                    s.parse::<Date>().ok()
                } else {
                    s.parse::<Timestamp>()
                        .ok()
                        .map(|t| t.to_zoned(self.tz.clone()).date())
                }
            }
        };
        match date {
            None => {
                self.fail(field, "must be a date: yyyy-MM-dd or epoch milliseconds");
                None
            }
            // MariaDB's DATE range.
            Some(d) if !(1000..=9999).contains(&d.year()) => {
                self.fail(field, "must be between 1000-01-01 and 9999-12-31");
                None
            }
            Some(d) => Some(d),
        }
    }

    /// The birth date, kept as OSCAR keeps it: three text columns, the year four digits, the
    /// month and day two, zero-padded.
    fn birth_date(
        &mut self,
        date_of_birth: Patch<DateInput>,
        parts: [Patch<String>; 3],
        d: &mut Demographic,
    ) {
        if parts.iter().any(Patch::is_present) {
            let [year, month, day] = parts;
            let pick = |p: Patch<String>, stored: &Option<String>| match p {
                Patch::Absent => stored.clone(),
                Patch::Null => None,
                Patch::Set(s) => Some(s),
            };
            let year = pick(year, &d.year_of_birth);
            let month = pick(month, &d.month_of_birth);
            let day = pick(day, &d.date_of_birth);
            if !self.creating
                && year == d.year_of_birth
                && month == d.month_of_birth
                && day == d.date_of_birth
            {
                return;
            }
            let year = self.digits("dobYear", year, 4, 4);
            let month = self.digits("dobMonth", month, 1, 2);
            let day = self.digits("dobDay", day, 1, 2);
            let (Some(year), Some(month), Some(day)) = (year, month, day) else {
                return;
            };
            let (Ok(y), Ok(m), Ok(dd)) = (year.parse(), month.parse(), day.parse()) else {
                return;
            };
            let Some(date) = self.real_birth_date(Date::new(y, m, dd).ok()) else {
                return;
            };
            set_birth_date(d, date);
            return;
        }
        match date_of_birth {
            Patch::Set(input) => {
                let date = self.parse_date("dateOfBirth", &input);
                if let Some(date) = self.real_birth_date(date) {
                    set_birth_date(d, date);
                }
            }
            Patch::Null => self.fail("dateOfBirth", "is required"),
            Patch::Absent if self.creating => self.fail("dateOfBirth", "is required"),
            Patch::Absent => {}
        }
    }

    /// A birth date part: `min` to `max` ASCII digits.
    fn digits(&mut self, field: &str, s: Option<String>, min: usize, max: usize) -> Option<String> {
        let Some(s) = s else {
            self.fail(field, "is required");
            return None;
        };
        let s = s.trim();
        let ok = (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            let message = if min == max {
                format!("must be {max} digits")
            } else {
                format!("must be {min} to {max} digits")
            };
            self.fail(field, message);
            return None;
        }
        Some(s.to_owned())
    }

    /// `date` if it is one (year 0 and 30 February are not) and not after today.
    fn real_birth_date(&mut self, date: Option<Date>) -> Option<Date> {
        match date {
            None => {
                self.fail("dateOfBirth", "is not a calendar date");
                None
            }
            Some(d) if d.year() < 1 => {
                self.fail("dateOfBirth", "is not a calendar date");
                None
            }
            Some(d) if d > self.today => {
                self.fail("dateOfBirth", "must not be in the future");
                None
            }
            Some(d) => Some(d),
        }
    }
}

fn set_birth_date(d: &mut Demographic, date: Date) {
    d.year_of_birth = Some(format!("{:04}", date.year()));
    d.month_of_birth = Some(format!("{:02}", date.month()));
    d.date_of_birth = Some(format!("{:02}", date.day()));
}

/// `yyyy-MM-dd` exactly (jiff would also take a date-time and drop the time).
fn is_plain_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use serde_json::{json, Value};

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).expect("the tz database has the zone")
    }

    /// Reference §2.2's live answer (`GET /ws/services/demographics/15`), with the
    /// placeholders filled in. The box that answered ran in UTC.
    const SAMPLE: &str = r#"{"demographicNo":15,
 "address":{"province":"CA-BC","postal":"V5K 0A1","city":"Vancouver","address":"1 Main St"},
 "phone":"604-555-1212","patientStatus":"AC","providerNo":"104","hin":"9876543210",
 "dateOfBirth":590803200000,"dobYear":"1988","dobMonth":"09","dobDay":"21",
 "sex":"M","sexDesc":"Male","firstName":"JOHN","lastName":"DOE","hcType":"BC",
 "lastUpdateUser":"101","lastUpdateDate":1790342103221,
 "age":{"days":4,"months":0,"years":38},
 "provider":{"providerNo":"104","firstName":"ANN","lastName":"SMITH","name":"SMITH, ANN","enabled":true},
 "doctors":[],"extras":[],"referralDoctors":[]}"#;

    fn sample_record() -> Demographic {
        let some = |s: &str| Some(s.to_owned());
        Demographic {
            demographic_no: 15,
            last_name: "DOE".into(),
            first_name: "JOHN".into(),
            sex: "M".into(),
            address: some("1 Main St"),
            city: some("Vancouver"),
            province: some("CA-BC"),
            postal: some("V5K 0A1"),
            phone: some("604-555-1212"),
            patient_status: some("AC"),
            provider_no: some("104"),
            hin: some("9876543210"),
            year_of_birth: some("1988"),
            month_of_birth: some("09"),
            date_of_birth: some("21"),
            hc_type: some("BC"),
            last_update_user: some("101"),
            last_update_date: Some(date(2026, 9, 25).at(13, 15, 3, 221_000_000)),
            ..Demographic::default()
        }
    }

    fn provider() -> ProviderTo1 {
        ProviderTo1 {
            enabled: true,
            ..ProviderTo1::new("104", "SMITH", "ANN")
        }
    }

    fn sample_json(tz_name: &str) -> Value {
        let to = to_json(
            &sample_record(),
            Some(&provider()),
            date(2026, 9, 25),
            &tz(tz_name),
        );
        serde_json::to_value(to).expect("serialises")
    }

    /// The keys reference §2.2 lists for OSCAR 19's `DemographicTo1`.
    const KEYS: &str = "demographicNo address phone alternativePhone patientStatus \
        patientStatusDate rosterStatus providerNo myOscarUserName hin ver dateOfBirth dobYear \
        dobMonth dobDay sex sexDesc dateJoined familyDoctor firstName lastName hcRenewDate \
        pcnIndicator endDate hcType chartNo email effDate rosterDate rosterTerminationDate \
        rosterTerminationReason links alias previousAddress children sourceOfIncome \
        citizenship sin anonymous spokenLanguage activeCount hsAlertCount displayName provider \
        lastUpdateUser lastUpdateDate title officialLanguage countryOfOrigin newsletter nurse \
        resident alert midwife notes waitingListID waitingListNote onWaitingListSinceDate age \
        admissionProgramId middleNames extras demoContacts demoContactPros doctors nurses \
        midwives referralDoctors waitingListNames patientStatusList rosterStatusList";

    #[test]
    fn matches_the_live_answer() {
        let ours = sample_json("UTC");
        let live: Value = serde_json::from_str(SAMPLE).expect("the sample is JSON");
        for (key, value) in live.as_object().expect("an object") {
            // The capture is trimmed: its objects may lack keys ours have (`country`, …).
            if let Some(object) = value.as_object() {
                for (k, v) in object {
                    assert_eq!(&ours[key][k], v, "{key}.{k}");
                }
            } else {
                assert_eq!(&ours[key], value, "{key}");
            }
        }
    }

    #[test]
    fn every_key_is_present_with_nulls_and_oscars_types() {
        let ours = sample_json("UTC");
        let obj = ours.as_object().expect("an object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut want: Vec<&str> = KEYS.split_whitespace().collect();
        keys.sort_unstable();
        want.sort_unstable();
        assert_eq!(keys, want);
        // Nulls are written, not left out.
        for key in [
            "email",
            "title",
            "dateJoined",
            "displayName",
            "nurse",
            "waitingListID",
        ] {
            assert_eq!(obj[key], Value::Null, "{key}");
        }
        assert!(obj["demographicNo"].is_i64());
        assert!(obj["activeCount"].is_i64());
        assert_eq!(obj["activeCount"], 1);
        assert_eq!(obj["hsAlertCount"], 0);
        assert!(obj["dateOfBirth"].is_i64());
        assert!(obj["dobYear"].is_string());
        assert_eq!(
            obj["previousAddress"],
            json!({"country":null,"province":null,"postal":null,"city":null,"address":null})
        );
        for list in ["extras", "doctors", "referralDoctors", "demoContacts"] {
            assert_eq!(obj[list], json!([]), "{list}");
        }
    }

    #[test]
    fn dates_are_local_midnight_in_the_box_zone() {
        // The sample's 590803200000 is UTC midnight; in Vancouver (PDT, -07:00) local midnight
        // is seven hours later, in Toronto (EDT, -04:00) four.
        assert_eq!(sample_json("UTC")["dateOfBirth"], 590_803_200_000_i64);
        assert_eq!(
            sample_json("America/Vancouver")["dateOfBirth"],
            590_828_400_000_i64
        );
        assert_eq!(
            sample_json("America/Toronto")["dateOfBirth"],
            590_817_600_000_i64
        );
        // lastUpdateDate is a local date-time: 13:15:03.221 in Vancouver is 20:15:03.221 UTC.
        assert_eq!(
            sample_json("America/Vancouver")["lastUpdateDate"],
            1_790_342_103_221_i64 + 7 * 3_600_000
        );
    }

    #[test]
    fn quirks_and_labels() {
        let mut d = sample_record();
        d.roster_termination_reason = Some("12".into());
        d.previous_address = Some("2 Old Rd".into());
        let to = to_json(&d, None, date(2026, 9, 25), &TimeZone::UTC);
        assert_eq!(to.links.as_deref(), Some("12"));
        assert_eq!(to.previous_address.address.as_deref(), Some("2 Old Rd"));
        assert_eq!(to.provider, None);
        for (sex, desc) in [
            ("M", Some("Male")),
            ("F", Some("Female")),
            ("T", Some("Transgender")),
            ("O", Some("Other")),
            ("U", Some("Undefined")),
            ("", None),
            ("X", None),
        ] {
            assert_eq!(sex_desc(sex), desc, "{sex}");
        }
        // A birth date that is not one: no dateOfBirth, no age, the parts as stored.
        d.date_of_birth = Some("31".into());
        d.month_of_birth = Some("02".into());
        let to = to_json(&d, None, date(2026, 9, 25), &TimeZone::UTC);
        assert_eq!((to.date_of_birth, to.age), (None, None));
        assert_eq!(to.dob_day.as_deref(), Some("31"));
    }

    #[test]
    fn age_is_joda_year_month_day() {
        let a = |dob, today| age(dob, today).expect("an age");
        assert_eq!(
            a(date(1988, 9, 21), date(2026, 9, 25)),
            AgeTo1 {
                days: 4,
                months: 0,
                years: 38
            }
        );
        assert_eq!(
            a(date(2000, 1, 31), date(2000, 3, 1)),
            AgeTo1 {
                days: 1,
                months: 1,
                years: 0
            }
        );
        assert_eq!(
            a(date(2000, 2, 29), date(2001, 2, 28)),
            AgeTo1 {
                days: 30,
                months: 11,
                years: 0
            }
        );
        assert_eq!(a(date(2026, 9, 25), date(2026, 9, 25)), AgeTo1::default());
    }

    #[test]
    fn search_rows() {
        let r = search_result(&sample_record(), Some("SMITH,ANN".into()), &TimeZone::UTC);
        assert_eq!(r.formatted_dob.as_deref(), Some("1988-09-21"));
        assert_eq!(r.dob, Some(590_803_200_000));
        assert_eq!(r.provider_name.as_deref(), Some("SMITH,ANN"));
        let mut d = sample_record();
        d.year_of_birth = None;
        let r = search_result(&d, None, &TimeZone::UTC);
        assert_eq!((r.dob, r.formatted_dob.as_deref()), (None, None));
        let json = serde_json::to_value(r).expect("serialises");
        assert_eq!(json["formattedDOB"], Value::Null);
        assert_eq!(json["remoteFacilityId"], Value::Null);
    }

    // --- input ---

    const TODAY: Date = date(2026, 9, 25);

    fn input(json: Value) -> DemographicInput {
        serde_json::from_value(json).expect("a valid body")
    }

    fn create(json: Value) -> Result<Demographic, Vec<FieldError>> {
        apply_input_at(None, input(json), &tz("America/Toronto"), TODAY)
    }

    fn update(base: &Demographic, json: Value) -> Result<Demographic, Vec<FieldError>> {
        apply_input_at(Some(base), input(json), &tz("America/Toronto"), TODAY)
    }

    fn minimal() -> Value {
        json!({"lastName":"Doe","firstName":"John","sex":"M",
               "dobYear":"1980","dobMonth":"1","dobDay":"2"})
    }

    /// The fields that failed, in the order they were found.
    fn fields(r: Result<Demographic, Vec<FieldError>>) -> Vec<String> {
        r.expect_err("refused")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    fn message(r: Result<Demographic, Vec<FieldError>>, field: &str) -> String {
        r.expect_err("refused")
            .into_iter()
            .find(|e| e.field == field)
            .map(|e| e.message)
            .unwrap_or_else(|| panic!("no error for {field}"))
    }

    fn with(mut base: Value, extra: Value) -> Value {
        let b = base.as_object_mut().expect("an object");
        for (k, v) in extra.as_object().expect("an object") {
            b.insert(k.clone(), v.clone());
        }
        base
    }

    #[test]
    fn create_normalises() {
        let d = create(minimal()).expect("valid");
        assert_eq!(d.demographic_no, 0);
        assert_eq!(
            (d.last_name.as_str(), d.first_name.as_str()),
            ("DOE", "JOHN")
        );
        assert_eq!(d.month_of_birth.as_deref(), Some("01"));
        assert_eq!(d.date_of_birth.as_deref(), Some("02"));
        assert_eq!(d.year_of_birth.as_deref(), Some("1980"));
        assert_eq!(d.patient_status.as_deref(), Some("AC"));
        assert_eq!(d.last_update_date, None, "the caller stamps it");
        let d = create(with(
            minimal(),
            json!({"sex":"f","lastName":"  o'brien ","patientStatus":"IN"}),
        ))
        .expect("valid");
        assert_eq!((d.sex.as_str(), d.last_name.as_str()), ("F", "O'BRIEN"));
        assert_eq!(d.patient_status.as_deref(), Some("IN"));
    }

    #[test]
    fn create_requires_names_sex_and_birth_date() {
        assert_eq!(
            fields(create(json!({}))),
            ["lastName", "firstName", "sex", "dateOfBirth"]
        );
        assert_eq!(
            fields(create(
                json!({"lastName":null,"firstName":" ","sex":null,"dateOfBirth":null})
            )),
            ["lastName", "firstName", "sex", "dateOfBirth"]
        );
        assert_eq!(message(create(json!({})), "lastName"), "is required");
        assert_eq!(
            message(
                create(with(minimal(), json!({"firstName":"  "}))),
                "firstName"
            ),
            "must not be empty"
        );
    }

    #[test]
    fn sql_metacharacters_are_just_characters() {
        let d = create(with(
            minimal(),
            json!({"lastName":"x'; DROP TABLE demographic;--%"}),
        ))
        .expect("valid: the caller uses placeholders");
        assert_eq!(d.last_name, "X'; DROP TABLE DEMOGRAPHIC;--%");
    }

    #[test]
    fn lengths_follow_the_columns() {
        let long = |n: usize| "é".repeat(n);
        // Exactly the limit is fine, in characters not bytes.
        create(with(
            minimal(),
            json!({"lastName": long(30), "ver": "ABC", "address": {"postal": null}}),
        ))
        .expect("at the limits");
        let r = create(with(
            minimal(),
            json!({"lastName": long(31), "ver":"ABCD", "chartNo": long(11),
                   "address": {"city": long(51), "postal": "1234567890"},
                   "previousAddress": {"address": long(256)},
                   "rosterTerminationReason":"123", "countryOfOrigin":"CANAD"}),
        ));
        let errors = r.expect_err("too long");
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("lastName", "must be at most 30 characters"),
                ("address.city", "must be at most 50 characters"),
                ("address.postal", "must be at most 9 characters"),
                ("previousAddress.address", "must be at most 255 characters"),
                ("ver", "must be at most 3 characters"),
                ("chartNo", "must be at most 10 characters"),
                ("rosterTerminationReason", "must be at most 2 characters"),
                ("countryOfOrigin", "must be at most 4 characters"),
            ]
        );
    }

    #[test]
    fn sex_hin_and_email() {
        assert_eq!(
            message(create(with(minimal(), json!({"sex":"X"}))), "sex"),
            "must be one of M, F, T, O, U"
        );
        assert_eq!(
            message(create(with(minimal(), json!({"hin":"1234 567"}))), "hin"),
            "must be digits only"
        );
        assert_eq!(
            message(
                create(with(minimal(), json!({"hin":"1".repeat(21)}))),
                "hin"
            ),
            "must be at most 20 characters"
        );
        create(with(minimal(), json!({"hin":"", "email":""}))).expect("empty means none");
        for bad in ["a", "a@b@c", "@b", "a@"] {
            assert_eq!(
                message(create(with(minimal(), json!({"email":bad}))), "email"),
                "must be an email address with one @",
                "{bad}"
            );
        }
        let d = create(with(
            minimal(),
            json!({"email":"j.doe@example.com","hin":"9876543210"}),
        ))
        .expect("valid");
        assert_eq!(d.email.as_deref(), Some("j.doe@example.com"));
    }

    #[test]
    fn birth_date_rules() {
        let dob = |y: &str, m: &str, d: &str| {
            create(with(
                minimal(),
                json!({"dobYear":y,"dobMonth":m,"dobDay":d}),
            ))
        };
        assert_eq!(
            message(dob("80", "01", "02"), "dobYear"),
            "must be 4 digits"
        );
        assert_eq!(
            message(dob("1980", "123", "02"), "dobMonth"),
            "must be 1 to 2 digits"
        );
        assert_eq!(
            message(dob("1980", "01", "x"), "dobDay"),
            "must be 1 to 2 digits"
        );
        assert_eq!(
            message(dob("1980", "13", "02"), "dateOfBirth"),
            "is not a calendar date"
        );
        assert_eq!(
            message(dob("1981", "02", "29"), "dateOfBirth"),
            "is not a calendar date"
        );
        assert_eq!(
            message(dob("0000", "01", "01"), "dateOfBirth"),
            "is not a calendar date"
        );
        assert_eq!(
            message(dob("2026", "09", "26"), "dateOfBirth"),
            "must not be in the future"
        );
        let d = dob("2026", "9", "25").expect("today is fine");
        assert_eq!(d.date_of_birth(), Some(TODAY));
        assert_eq!(
            message(
                create(
                    json!({"lastName":"A","firstName":"B","sex":"M","dobYear":"1980","dobMonth":"01"})
                ),
                "dobDay"
            ),
            "is required"
        );
    }

    #[test]
    fn birth_date_from_date_of_birth() {
        let base = json!({"lastName":"A","firstName":"B","sex":"M"});
        let d = create(with(base.clone(), json!({"dateOfBirth":"1988-09-21"}))).expect("text");
        assert_eq!(d.date_of_birth(), Some(date(1988, 9, 21)));
        // Local midnight in Toronto, as this server writes it.
        let d = create(with(
            base.clone(),
            json!({"dateOfBirth":590_817_600_000_i64}),
        ))
        .expect("ms");
        assert_eq!(d.date_of_birth(), Some(date(1988, 9, 21)));
        let d = create(with(
            base.clone(),
            json!({"dateOfBirth":"1988-09-21T12:00:00Z"}),
        ))
        .expect("an instant");
        assert_eq!(d.date_of_birth(), Some(date(1988, 9, 21)));
        assert_eq!(
            message(
                create(with(base.clone(), json!({"dateOfBirth":"21/09/1988"}))),
                "dateOfBirth"
            ),
            "must be a date: yyyy-MM-dd or epoch milliseconds"
        );
        assert_eq!(
            message(
                create(with(base.clone(), json!({"dateOfBirth":"2999-01-01"}))),
                "dateOfBirth"
            ),
            "must not be in the future"
        );
        // The parts win when both are sent, as in OSCAR's converter.
        let d = create(with(
            base,
            json!({"dateOfBirth":"1988-09-21","dobYear":"1970","dobMonth":"05","dobDay":"06"}),
        ))
        .expect("valid");
        assert_eq!(d.date_of_birth(), Some(date(1970, 5, 6)));
    }

    #[test]
    fn other_dates() {
        let d = create(with(
            minimal(),
            json!({"dateJoined":"2019-07-16","effDate":1_563_249_600_000_i64,"endDate":null}),
        ))
        .expect("valid");
        assert_eq!(d.date_joined, Some(date(2019, 7, 16)));
        assert_eq!(d.eff_date, Some(date(2019, 7, 16)));
        assert_eq!(
            fields(create(with(
                minimal(),
                json!({"rosterDate":"2019-7-16","hcRenewDate":"0999-12-31","patientStatusDate":i64::MAX})
            ))),
            ["patientStatusDate", "hcRenewDate", "rosterDate"]
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let r = create(
            json!({"firstName":"J","sex":"Q","dobYear":"19","dobMonth":"1","dobDay":"1",
                              "hin":"abc","email":"nope","ver":"ABCD","effDate":"soon"}),
        );
        assert_eq!(
            fields(r),
            ["lastName", "sex", "dobYear", "hin", "ver", "email", "effDate"]
        );
    }

    #[test]
    fn update_keeps_absent_clears_null() {
        let base = sample_record();
        let d = update(
            &base,
            json!({"phone":null,"address":{"city":"Burnaby"},"email":"a@b.c"}),
        )
        .expect("valid");
        assert_eq!(d.phone, None);
        assert_eq!(d.city.as_deref(), Some("Burnaby"));
        assert_eq!(
            d.address.as_deref(),
            Some("1 Main St"),
            "absent in the address object"
        );
        assert_eq!(d.email.as_deref(), Some("a@b.c"));
        assert_eq!(d.hin, base.hin);
        assert_eq!(d.last_name, "DOE");
        assert_eq!(d.demographic_no, 15);
        assert_eq!(d.last_update_date, base.last_update_date);
        let d = update(&base, json!({"address":null})).expect("valid");
        assert_eq!(
            (d.address, d.city, d.province, d.postal),
            (None, None, None, None)
        );
        // A nothing update changes nothing.
        assert_eq!(update(&base, json!({})).expect("valid"), base);
        // Only the day changes: the stored year and month are kept.
        let d = update(&base, json!({"dobDay":"1"})).expect("valid");
        assert_eq!(d.date_of_birth(), Some(date(1988, 9, 1)));
    }

    #[test]
    fn update_refuses_clearing_required_fields() {
        let base = sample_record();
        assert_eq!(
            fields(update(
                &base,
                json!({"lastName":null,"sex":null,"dateOfBirth":null})
            )),
            ["lastName", "sex", "dateOfBirth"]
        );
        assert_eq!(fields(update(&base, json!({"dobYear":null}))), ["dobYear"]);
    }

    #[test]
    fn update_accepts_stored_legacy_values_sent_back() {
        let mut base = sample_record();
        base.hin = Some("AB 123".into());
        base.sex = "m".into();
        base.email = Some("none".into());
        base.month_of_birth = Some("9".into());
        let d = update(
            &base,
            json!({"hin":"AB 123","sex":"m","email":"none","dobMonth":"9","phone":"1"}),
        )
        .expect("unchanged values are not re-checked");
        assert_eq!((d.hin.as_deref(), d.sex.as_str()), (Some("AB 123"), "m"));
        assert_eq!(d.phone.as_deref(), Some("1"));
        // A change is checked.
        assert_eq!(fields(update(&base, json!({"hin":"AB 124"}))), ["hin"]);
    }

    #[test]
    fn empty_my_oscar_user_name_is_null() {
        let d = create(with(minimal(), json!({"myOscarUserName":""}))).expect("valid");
        assert_eq!(d.my_oscar_user_name, None);
    }

    /// A body → a record → OSCAR's JSON → the same body sent back → the same record.
    #[test]
    fn round_trip() {
        let toronto = tz("America/Toronto");
        let body = json!({
            "lastName":"Doe","firstName":"Jane","sex":"F","dobYear":"1988","dobMonth":"9",
            "dobDay":"21","hin":"9876543210","ver":"AB","email":"jane@example.com",
            "address":{"address":"1 Main St","city":"Hamilton","province":"ON","postal":"L8P 1A1"},
            "alternativePhone":"905-555-0000","dateJoined":"2019-07-16","rosterStatus":"RO",
            "rosterTerminationReason":"12","previousAddress":{"address":"2 Old Rd"},
            "spokenLanguage":"French","officialLanguage":"English","countryOfOrigin":"CA",
            "middleNames":"Q","title":"MS","chartNo":"C1","admissionProgramId":10016
        });
        let mut d = create(body).expect("valid");
        d.demographic_no = 16;
        d.last_update_user = Some("999998".into());
        d.last_update_date = Some(date(2026, 9, 25).at(9, 0, 0, 0));
        let to = to_json(&d, Some(&provider()), TODAY, &toronto);
        assert_eq!(to.first_name.as_deref(), Some("JANE"));
        assert_eq!(to.dob_month.as_deref(), Some("09"));
        assert_eq!(to.sex_desc.as_deref(), Some("Female"));
        assert_eq!(to.alternative_phone.as_deref(), Some("905-555-0000"));
        assert_eq!(to.address.city.as_deref(), Some("Hamilton"));
        assert_eq!(to.links.as_deref(), Some("12"));
        assert_eq!(to.official_language.as_deref(), Some("English"));
        assert_eq!(
            to.age,
            Some(AgeTo1 {
                days: 4,
                months: 0,
                years: 38
            })
        );
        assert_eq!(to.date_of_birth, Some(590_817_600_000));
        assert_eq!(
            to.date_joined,
            Some(
                date(2019, 7, 16)
                    .to_zoned(toronto.clone())
                    .expect("a time")
                    .timestamp()
                    .as_millisecond()
            )
        );
        // Everything it was given, sent back as an update, changes nothing.
        let echoed = serde_json::to_value(&to).expect("serialises");
        let again = update(&d, echoed).expect("its own output is valid");
        assert_eq!(again, d);
        // And as a create, yields the same patient.
        let echoed = serde_json::to_value(&to).expect("serialises");
        let mut fresh = create(echoed).expect("valid as a create too");
        fresh.demographic_no = d.demographic_no;
        fresh.last_update_user = d.last_update_user.clone();
        fresh.last_update_date = d.last_update_date;
        assert_eq!(fresh, d);
    }

    #[test]
    fn errors_map_to_the_api_shape() {
        let errors = create(
            json!({"firstName":"J","sex":"M","dobYear":"1980","dobMonth":"01","dobDay":"01"}),
        )
        .expect_err("no last name");
        let body = serde_json::to_value(error_response(errors)).expect("serialises");
        assert_eq!(
            body,
            json!({"success":false,"message":"invalid demographic: lastName",
                   "errors":[{"field":"lastName","message":"is required"}]})
        );
    }
}
