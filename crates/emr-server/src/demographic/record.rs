//! One row of OSCAR's `demographic` table, read leniently and written through placeholders.
//!
//! Imported OSCAR databases hold whatever twenty years of OSCAR versions wrote: zero dates,
//! Latin-1 bytes in `utf8` columns, numbers in text columns. Reading a row never fails on a
//! value; only a row of the wrong shape (a caller's bug) is an error.

use jiff::civil::{Date, DateTime};
use mysql_async::{Row, Value};

/// The columns [`from_row`] reads, in this order. `demographic_no` comes first.
pub const COLUMNS: [&str; 52] = [
    "demographic_no",
    "title",
    "last_name",
    "first_name",
    "address",
    "city",
    "province",
    "postal",
    "phone",
    "phone2",
    "email",
    "myOscarUserName",
    "year_of_birth",
    "month_of_birth",
    "date_of_birth",
    "hin",
    "ver",
    "roster_status",
    "roster_date",
    "roster_termination_date",
    "roster_termination_reason",
    "roster_enrolled_to",
    "patient_status",
    "patient_status_date",
    "date_joined",
    "chart_no",
    "official_lang",
    "spoken_lang",
    "provider_no",
    "sex",
    "end_date",
    "eff_date",
    "pcn_indicator",
    "hc_type",
    "hc_renew_date",
    "family_doctor",
    "alias",
    "previousAddress",
    "children",
    "sourceOfIncome",
    "citizenship",
    "sin",
    "country_of_origin",
    "newsletter",
    "anonymous",
    "lastUpdateUser",
    "lastUpdateDate",
    "middleNames",
    "residentialAddress",
    "residentialCity",
    "residentialProvince",
    "residentialPostal",
];

/// [`COLUMNS`] as a `SELECT` list (a test keeps the two equal). Backquoted throughout, so that
/// no column name can ever be read as a keyword; unqualified, so the caller selects `FROM
/// demographic` without an alias.
pub const SELECT_COLUMNS: &str = "`demographic_no`, `title`, `last_name`, `first_name`, \
`address`, `city`, `province`, `postal`, `phone`, `phone2`, `email`, `myOscarUserName`, \
`year_of_birth`, `month_of_birth`, `date_of_birth`, `hin`, `ver`, `roster_status`, \
`roster_date`, `roster_termination_date`, `roster_termination_reason`, `roster_enrolled_to`, \
`patient_status`, `patient_status_date`, `date_joined`, `chart_no`, `official_lang`, \
`spoken_lang`, `provider_no`, `sex`, `end_date`, `eff_date`, `pcn_indicator`, `hc_type`, \
`hc_renew_date`, `family_doctor`, `alias`, `previousAddress`, `children`, `sourceOfIncome`, \
`citizenship`, `sin`, `country_of_origin`, `newsletter`, `anonymous`, `lastUpdateUser`, \
`lastUpdateDate`, `middleNames`, `residentialAddress`, `residentialCity`, \
`residentialProvince`, `residentialPostal`";

/// A patient: one field per column of `demographic`. `DATE` columns are civil dates (their
/// instant depends on the box's zone, applied when they are written out); MariaDB's zero date
/// reads as `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Demographic {
    /// 0 for a patient not yet inserted.
    pub demographic_no: i32,
    pub title: Option<String>,
    pub last_name: String,
    pub first_name: String,
    pub address: Option<String>,
    pub city: Option<String>,
    pub province: Option<String>,
    pub postal: Option<String>,
    pub phone: Option<String>,
    pub phone2: Option<String>,
    pub email: Option<String>,
    pub my_oscar_user_name: Option<String>,
    /// Birth year, month and day are three text columns in OSCAR (`"1980"`, `"01"`, `"02"`).
    pub year_of_birth: Option<String>,
    pub month_of_birth: Option<String>,
    /// The day of the month, not a date (OSCAR's naming).
    pub date_of_birth: Option<String>,
    pub hin: Option<String>,
    pub ver: Option<String>,
    pub roster_status: Option<String>,
    pub roster_date: Option<Date>,
    pub roster_termination_date: Option<Date>,
    pub roster_termination_reason: Option<String>,
    pub roster_enrolled_to: Option<String>,
    pub patient_status: Option<String>,
    pub patient_status_date: Option<Date>,
    pub date_joined: Option<Date>,
    pub chart_no: Option<String>,
    pub official_lang: Option<String>,
    pub spoken_lang: Option<String>,
    pub provider_no: Option<String>,
    pub sex: String,
    pub end_date: Option<Date>,
    pub eff_date: Option<Date>,
    pub pcn_indicator: Option<String>,
    pub hc_type: Option<String>,
    pub hc_renew_date: Option<Date>,
    pub family_doctor: Option<String>,
    pub alias: Option<String>,
    pub previous_address: Option<String>,
    pub children: Option<String>,
    pub source_of_income: Option<String>,
    pub citizenship: Option<String>,
    pub sin: Option<String>,
    pub country_of_origin: Option<String>,
    pub newsletter: Option<String>,
    pub anonymous: Option<String>,
    pub last_update_user: Option<String>,
    /// `NOT NULL` in the table: a caller inserting or updating sets it (and `last_update_user`)
    /// first.
    pub last_update_date: Option<DateTime>,
    pub middle_names: Option<String>,
    pub residential_address: Option<String>,
    pub residential_city: Option<String>,
    pub residential_province: Option<String>,
    pub residential_postal: Option<String>,
}

/// A row that is not a `SELECT {SELECT_COLUMNS}` row. The messages name columns, never values,
/// so that they are safe to log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RowError {
    #[error("expected {expected} demographic columns, got {got}")]
    ColumnCount { expected: usize, got: usize },
    #[error("column {0} is not an integer patient number")]
    NotAnId(&'static str),
}

/// Reads a row selected with [`SELECT_COLUMNS`].
pub fn from_row(row: Row) -> Result<Demographic, RowError> {
    // A value already taken out of the row reads as NULL.
    from_values(
        row.unwrap_raw()
            .into_iter()
            .map(|v| v.unwrap_or(Value::NULL))
            .collect(),
    )
}

/// [`from_row`] on the row's values (tests cannot build a `Row`: its constructor is not
/// re-exported by mysql_async).
fn from_values(values: Vec<Value>) -> Result<Demographic, RowError> {
    if values.len() != COLUMNS.len() {
        return Err(RowError::ColumnCount {
            expected: COLUMNS.len(),
            got: values.len(),
        });
    }
    let mut v = values.into_iter();
    // The length was checked, so this never runs out; NULL would be a harmless answer anyway.
    let mut next = || v.next().unwrap_or(Value::NULL);
    let demographic_no = id(next()).ok_or(RowError::NotAnId(COLUMNS[0]))?;
    Ok(Demographic {
        demographic_no,
        title: text(next()),
        last_name: text(next()).unwrap_or_default(),
        first_name: text(next()).unwrap_or_default(),
        address: text(next()),
        city: text(next()),
        province: text(next()),
        postal: text(next()),
        phone: text(next()),
        phone2: text(next()),
        email: text(next()),
        my_oscar_user_name: text(next()),
        year_of_birth: text(next()),
        month_of_birth: text(next()),
        date_of_birth: text(next()),
        hin: text(next()),
        ver: text(next()),
        roster_status: text(next()),
        roster_date: date(next()),
        roster_termination_date: date(next()),
        roster_termination_reason: text(next()),
        roster_enrolled_to: text(next()),
        patient_status: text(next()),
        patient_status_date: date(next()),
        date_joined: date(next()),
        chart_no: text(next()),
        official_lang: text(next()),
        spoken_lang: text(next()),
        provider_no: text(next()),
        sex: text(next()).unwrap_or_default(),
        end_date: date(next()),
        eff_date: date(next()),
        pcn_indicator: text(next()),
        hc_type: text(next()),
        hc_renew_date: date(next()),
        family_doctor: text(next()),
        alias: text(next()),
        previous_address: text(next()),
        children: text(next()),
        source_of_income: text(next()),
        citizenship: text(next()),
        sin: text(next()),
        country_of_origin: text(next()),
        newsletter: text(next()),
        anonymous: text(next()),
        last_update_user: text(next()),
        last_update_date: date_time(next()),
        middle_names: text(next()),
        residential_address: text(next()),
        residential_city: text(next()),
        residential_province: text(next()),
        residential_postal: text(next()),
    })
}

impl Demographic {
    /// Every column but `demographic_no`, with its value, for the caller's `INSERT` or
    /// `UPDATE` with placeholders. Names are plain identifiers from [`COLUMNS`].
    pub fn write_columns(&self) -> Vec<(&'static str, Value)> {
        let s = |v: &Option<String>| v.as_deref().map_or(Value::NULL, Value::from);
        let d = |v: &Option<Date>| v.map_or(Value::NULL, date_value);
        vec![
            ("title", s(&self.title)),
            ("last_name", Value::from(self.last_name.as_str())),
            ("first_name", Value::from(self.first_name.as_str())),
            ("address", s(&self.address)),
            ("city", s(&self.city)),
            ("province", s(&self.province)),
            ("postal", s(&self.postal)),
            ("phone", s(&self.phone)),
            ("phone2", s(&self.phone2)),
            ("email", s(&self.email)),
            ("myOscarUserName", s(&self.my_oscar_user_name)),
            ("year_of_birth", s(&self.year_of_birth)),
            ("month_of_birth", s(&self.month_of_birth)),
            ("date_of_birth", s(&self.date_of_birth)),
            ("hin", s(&self.hin)),
            ("ver", s(&self.ver)),
            ("roster_status", s(&self.roster_status)),
            ("roster_date", d(&self.roster_date)),
            ("roster_termination_date", d(&self.roster_termination_date)),
            (
                "roster_termination_reason",
                s(&self.roster_termination_reason),
            ),
            ("roster_enrolled_to", s(&self.roster_enrolled_to)),
            ("patient_status", s(&self.patient_status)),
            ("patient_status_date", d(&self.patient_status_date)),
            ("date_joined", d(&self.date_joined)),
            ("chart_no", s(&self.chart_no)),
            ("official_lang", s(&self.official_lang)),
            ("spoken_lang", s(&self.spoken_lang)),
            ("provider_no", s(&self.provider_no)),
            ("sex", Value::from(self.sex.as_str())),
            ("end_date", d(&self.end_date)),
            ("eff_date", d(&self.eff_date)),
            ("pcn_indicator", s(&self.pcn_indicator)),
            ("hc_type", s(&self.hc_type)),
            ("hc_renew_date", d(&self.hc_renew_date)),
            ("family_doctor", s(&self.family_doctor)),
            ("alias", s(&self.alias)),
            ("previousAddress", s(&self.previous_address)),
            ("children", s(&self.children)),
            ("sourceOfIncome", s(&self.source_of_income)),
            ("citizenship", s(&self.citizenship)),
            ("sin", s(&self.sin)),
            ("country_of_origin", s(&self.country_of_origin)),
            ("newsletter", s(&self.newsletter)),
            ("anonymous", s(&self.anonymous)),
            ("lastUpdateUser", s(&self.last_update_user)),
            (
                "lastUpdateDate",
                self.last_update_date.map_or(Value::NULL, date_time_value),
            ),
            ("middleNames", s(&self.middle_names)),
            ("residentialAddress", s(&self.residential_address)),
            ("residentialCity", s(&self.residential_city)),
            ("residentialProvince", s(&self.residential_province)),
            ("residentialPostal", s(&self.residential_postal)),
        ]
    }

    /// The birth date from the year, month and day columns, when they make a real date.
    /// (OSCAR's `Calendar` is lenient and would roll 30 February into March; a date that is
    /// not one is better shown as missing.)
    pub fn date_of_birth(&self) -> Option<Date> {
        fn part<T: std::str::FromStr>(s: &Option<String>) -> Option<T> {
            s.as_deref()?.trim().parse().ok()
        }
        let year: i16 = part(&self.year_of_birth)?;
        let month: i8 = part(&self.month_of_birth)?;
        let day: i8 = part(&self.date_of_birth)?;
        Date::new(year, month, day).ok()
    }
}

/// Text of any column: bytes that are not UTF-8 (Latin-1 from old installs) are replaced, not
/// refused, and numbers read as their decimal text.
fn text(v: Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(match String::from_utf8(b) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(f) => Some(f.to_string()),
        Value::Date(..) | Value::Time(..) => None,
    }
}

/// The patient number, from the binary protocol (an integer) or the text protocol (digits).
fn id(v: Value) -> Option<i32> {
    match v {
        Value::Int(i) => i32::try_from(i).ok(),
        Value::UInt(u) => i32::try_from(u).ok(),
        Value::Bytes(b) => std::str::from_utf8(&b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// A `DATE`; zero dates (`0000-00-00`, and MariaDB's partial zeros) and anything unreadable
/// are `None`.
fn date(v: Value) -> Option<Date> {
    date_time(v).map(|dt| dt.date())
}

/// A `DATETIME` (or a `DATE`, at midnight).
fn date_time(v: Value) -> Option<DateTime> {
    crate::db::civil_date_time(v)
}

fn date_value(d: Date) -> Value {
    // A civil date's fields are in range by construction; the casts cannot truncate for the
    // years MariaDB stores (1000–9999), and a negative year is clamped to the zero date.
    Value::Date(
        u16::try_from(d.year()).unwrap_or(0),
        u8::try_from(d.month()).unwrap_or(0),
        u8::try_from(d.day()).unwrap_or(0),
        0,
        0,
        0,
        0,
    )
}

fn date_time_value(dt: DateTime) -> Value {
    Value::Date(
        u16::try_from(dt.year()).unwrap_or(0),
        u8::try_from(dt.month()).unwrap_or(0),
        u8::try_from(dt.day()).unwrap_or(0),
        u8::try_from(dt.hour()).unwrap_or(0),
        u8::try_from(dt.minute()).unwrap_or(0),
        u8::try_from(dt.second()).unwrap_or(0),
        u32::try_from(dt.subsec_nanosecond() / 1000).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn index(column: &str) -> usize {
        COLUMNS
            .iter()
            .position(|c| *c == column)
            .expect("a known column")
    }

    fn nulls() -> Vec<Value> {
        let mut v = vec![Value::NULL; COLUMNS.len()];
        v[0] = Value::Int(7);
        v
    }

    #[test]
    fn select_list_matches_the_columns() {
        let joined: Vec<String> = COLUMNS.iter().map(|c| format!("`{c}`")).collect();
        assert_eq!(SELECT_COLUMNS, joined.join(", "));
    }

    #[test]
    fn write_columns_are_every_column_but_the_key() {
        let names: Vec<&str> = Demographic::default()
            .write_columns()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, COLUMNS[1..]);
        for n in names {
            assert!(
                n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{n}"
            );
        }
    }

    /// The table's columns, as the migration creates them, are exactly [`COLUMNS`].
    #[test]
    fn columns_match_the_migration() {
        let sql = include_str!("../../migrations/0001_oscar_core.sql");
        let start = sql
            .find("CREATE TABLE IF NOT EXISTS demographic (")
            .expect("the demographic table");
        let body = &sql[start..];
        let body = &body[body.find('(').expect("(") + 1..body.find("PRIMARY KEY").expect("key")];
        let names: Vec<&str> = body
            .split(',')
            .filter_map(|c| c.split_whitespace().next())
            .collect();
        assert_eq!(names, COLUMNS);
    }

    #[test]
    fn reads_nulls_zero_dates_and_bad_bytes() {
        let mut v = nulls();
        v[index("last_name")] = Value::Bytes(b"M\xfcller".to_vec());
        v[index("roster_date")] = Value::Date(0, 0, 0, 0, 0, 0, 0);
        v[index("date_joined")] = Value::Bytes(b"0000-00-00".to_vec());
        v[index("eff_date")] = Value::Date(2019, 7, 0, 0, 0, 0, 0);
        v[index("end_date")] = Value::Bytes(b"2020-02-30".to_vec());
        v[index("hc_renew_date")] = Value::Date(2019, 7, 16, 0, 0, 0, 0);
        v[index("patient_status_date")] = Value::Bytes(b"2019-07-16".to_vec());
        v[index("lastUpdateDate")] = Value::Bytes(b"2019-07-16 13:48:05".to_vec());
        v[index("chart_no")] = Value::Int(42);
        let d = from_values(v).expect("reads");
        assert_eq!(d.demographic_no, 7);
        assert_eq!(d.last_name, "M\u{fffd}ller");
        assert_eq!(d.first_name, "");
        assert_eq!(d.sex, "");
        assert_eq!(d.title, None);
        assert_eq!(d.roster_date, None);
        assert_eq!(d.date_joined, None);
        assert_eq!(d.eff_date, None);
        assert_eq!(d.end_date, None);
        assert_eq!(d.hc_renew_date, Some(date(2019, 7, 16)));
        assert_eq!(d.patient_status_date, Some(date(2019, 7, 16)));
        assert_eq!(d.last_update_date, Some(date(2019, 7, 16).at(13, 48, 5, 0)));
        assert_eq!(d.chart_no.as_deref(), Some("42"));
    }

    #[test]
    fn binary_datetime_keeps_microseconds() {
        let mut v = nulls();
        v[index("lastUpdateDate")] = Value::Date(2026, 9, 25, 13, 15, 3, 221_000);
        let d = from_values(v).expect("reads");
        assert_eq!(
            d.last_update_date,
            Some(date(2026, 9, 25).at(13, 15, 3, 221_000_000))
        );
    }

    #[test]
    fn wrong_rows_are_errors() {
        assert_eq!(
            from_values(vec![Value::Int(1)]),
            Err(RowError::ColumnCount {
                expected: 52,
                got: 1
            })
        );
        let mut v = nulls();
        v[0] = Value::Bytes(b"x".to_vec());
        assert_eq!(from_values(v), Err(RowError::NotAnId("demographic_no")));
        let mut v = nulls();
        v[0] = Value::Bytes(b"15".to_vec());
        assert_eq!(from_values(v).map(|d| d.demographic_no), Ok(15));
    }

    #[test]
    fn written_values_read_back() {
        let d = Demographic {
            demographic_no: 3,
            last_name: "O'BRIEN".into(),
            first_name: "ANN".into(),
            sex: "F".into(),
            email: Some("a@b.c".into()),
            date_joined: Some(date(2019, 7, 16)),
            last_update_date: Some(date(2026, 9, 25).at(13, 15, 3, 221_000_000)),
            ..Demographic::default()
        };
        let mut values = vec![Value::Int(3)];
        values.extend(d.write_columns().into_iter().map(|(_, v)| v));
        assert_eq!(from_values(values).expect("reads"), d);
    }

    #[test]
    fn date_of_birth_from_parts() {
        let mut d = Demographic {
            year_of_birth: Some("1980".into()),
            month_of_birth: Some("01".into()),
            date_of_birth: Some("02".into()),
            ..Demographic::default()
        };
        assert_eq!(d.date_of_birth(), Some(date(1980, 1, 2)));
        d.date_of_birth = Some(" 2".into());
        assert_eq!(d.date_of_birth(), Some(date(1980, 1, 2)));
        d.month_of_birth = Some("02".into());
        d.date_of_birth = Some("30".into());
        assert_eq!(d.date_of_birth(), None);
        d.date_of_birth = Some("".into());
        assert_eq!(d.date_of_birth(), None);
        d.date_of_birth = None;
        assert_eq!(d.date_of_birth(), None);
    }
}
