//! The health document in the IETF health check response format
//! (draft-inadarei-api-health-check-06, `application/health+json`): what load balancers,
//! uptime monitors and `oscarbox fleet status` ask the box's admin listener for.
//!
//! Each check's status comes from the reasons [`crate::assess`] found, so the document, the
//! status page and the alerts never disagree. The extension member `oscarbox` carries the whole
//! [`BoxStatus`], which lets another box read the model back without a second endpoint.

use oscarbox_watchdog_api::{BoxStatus, Severity, Verdict};
use serde_json::{json, Map, Value};

use crate::assess::{id, worst};

pub const CONTENT_TYPE: &str = "application/health+json";

/// The document for `s` and the HTTP status to answer it with: 200 while clinics can work
/// (`pass`, `warn`), 503 when they cannot (`fail`), so a plain HTTP monitor sees the difference.
pub fn document(s: &BoxStatus) -> (u16, Value) {
    let (status, code) = match s.verdict {
        Verdict::Ok => ("pass", 200),
        Verdict::Degraded => ("warn", 200),
        Verdict::Critical => ("fail", 503),
    };
    let mut doc = json!({
        "status": status,
        "version": "1",
        "releaseId": s.software_version,
        "serviceId": format!("oscarbox:{}", s.box_name),
        "description": format!("OSCAR Box {}: the OSCAR EMR server appliance", s.box_name),
        "notes": s.reasons.iter().map(|r| r.what.as_str()).collect::<Vec<_>>(),
        "checks": checks(s),
        "oscarbox": serde_json::to_value(leaving_the_box(s)).expect("a BoxStatus always serializes"),
    });
    // The draft asks for `output` only when the status is not `pass`.
    if let (false, Some(first)) = (s.verdict == Verdict::Ok, s.reasons.first()) {
        doc["output"] = format!("{} {}", first.what, first.todo).into();
    }
    (code, doc)
}

/// The checks, keyed `component:measurement` as the draft names them.
fn checks(s: &BoxStatus) -> Value {
    let mut c = Checks {
        s,
        time: rfc3339(s.checked_at),
        map: Map::new(),
    };
    let running = observed("system", s.watchdog_running, None);
    c.add("watchdog:running", &[id::WATCHDOG_DOWN], running);
    for w in &s.instances {
        let mut entry = json!({
            "componentId": format!("instance-{}", w.instance),
            "componentType": "component",
            "output": w.state,
        });
        c.add_for(w.instance, "emr:instances", entry.clone());
        if let Some(ms) = w.last_probe_ms {
            entry["observedValue"] = ms.into();
            entry["observedUnit"] = "ms".into();
            c.add_for(w.instance, "emr:responseTime", entry);
        }
    }
    let p = &s.proxy;
    c.add(
        "proxy:reachable",
        &[id::PROXY_DOWN],
        observed("component", p.reachable, None),
    );
    let mut backends = observed("component", p.backends_up, None);
    backends["output"] = format!("{} of {} up", p.backends_up, p.backends).into();
    c.add("proxy:backends", &[id::PROXY_NO_BACKEND], backends);
    let db = &s.database;
    let reachable = observed("datastore", db.endpoint_reachable, None);
    c.add("database:reachable", &[id::DATABASE_DOWN], reachable);
    if let Some(writable) = db.writable {
        let writable = observed("datastore", writable, None);
        c.add("database:writable", &[id::DATABASE_READ_ONLY], writable);
    }
    for node in &db.nodes {
        let Some(lag) = node.lag_seconds else {
            continue;
        };
        // The lag reason covers every lagging node at once; each node's own status says which.
        let late = lag > crate::assess::REPLICA_LAG_WARN_SECS;
        let mut entry = observed("datastore", lag, Some("s"));
        entry["componentId"] = node.name.clone().into();
        c.push(
            "database:replicationLag",
            if late { "warn" } else { "pass" },
            entry,
        );
    }
    let b = &s.backups;
    let present = observed("component", b.disk_present, None);
    c.add("backup-disk:present", &[id::BACKUP_DISK_MISSING], present);
    if let (true, Some(space)) = (b.disk_present, &b.disk) {
        c.add(
            "backup-disk:utilization",
            &[id::BACKUP_DISK_FULL],
            used(space.used_percent()),
        );
    }
    if let Some(space) = &s.system.disk {
        c.add(
            "system-disk:utilization",
            &[id::SYSTEM_DISK_FULL],
            used(space.used_percent()),
        );
    }
    let sys = &s.system;
    if let Some(memory) = crate::assess::memory(sys) {
        c.add(
            "memory:utilization",
            &[id::MEMORY_LOW],
            used(memory.used_percent()),
        );
    }
    c.add("cpu:utilization", &[], used(sys.cpu_usage_percent));
    let mut load = observed("system", sys.load_average[1], None);
    load["output"] = format!("5-minute load average on {} processors", sys.cpus).into();
    c.add("cpu:load", &[id::LOAD_HIGH], load);
    if let Some(tls) = &s.tls {
        let days = tls.days_left(s.checked_at);
        let mut expiry = observed("component", days, Some("days"));
        expiry["output"] = format!("valid until {}", rfc3339(tls.not_after)).into();
        c.add("tls:expiry", &[id::TLS_EXPIRING], expiry);
    }
    let ages = [
        (
            "database",
            b.newest_database_age_seconds,
            id::BACKUP_DATABASE_OLD,
        ),
        (
            "documents",
            b.newest_documents_age_seconds,
            id::BACKUP_DOCUMENTS_OLD,
        ),
    ];
    for (what, age, reason) in ages {
        if let Some(age) = age {
            let mut entry = observed("component", age, Some("s"));
            entry["componentId"] = what.into();
            c.add("backup:age", &[reason], entry);
        }
    }
    if let Some(drill) = &b.last_drill {
        let mut entry = observed("component", drill.passed, None);
        entry["output"] = format!("last test restore at {}", rfc3339(drill.at)).into();
        c.add(
            "backup:drill",
            &[id::BACKUP_DRILL_FAILED, id::BACKUP_DRILL_OVERDUE],
            entry,
        );
    }
    Value::Object(c.map)
}

struct Checks<'a> {
    s: &'a BoxStatus,
    time: String,
    map: Map<String, Value>,
}

impl Checks<'_> {
    /// Adds an entry whose status is the worst of the reasons with one of `ids`; `pass` when
    /// there are none.
    fn add(&mut self, key: &str, ids: &[&str], entry: Value) {
        self.push(key, status(worst(self.s, ids, None)), entry);
    }

    /// Adds an entry for one EMR instance, judged by the reasons about that instance.
    fn add_for(&mut self, instance: u32, key: &str, entry: Value) {
        let worst = worst(self.s, &[id::EMR_INSTANCE_DOWN], Some(instance));
        self.push(key, status(worst), entry);
    }

    fn push(&mut self, key: &str, status: &str, mut entry: Value) {
        entry["status"] = status.into();
        entry["time"] = self.time.clone().into();
        let entries = (self.map.entry(key)).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(entries) = entries {
            entries.push(entry);
        }
    }
}

fn status(worst: Option<Severity>) -> &'static str {
    match worst {
        None => "pass",
        Some(Severity::Warning) => "warn",
        Some(Severity::Critical) => "fail",
    }
}

/// An entry observing `value` (in `unit`, when it has one).
fn observed(component_type: &str, value: impl Into<Value>, unit: Option<&str>) -> Value {
    let mut entry = json!({"componentType": component_type, "observedValue": value.into()});
    if let Some(unit) = unit {
        entry["observedUnit"] = unit.into();
    }
    entry
}

/// A share in use, in percent with one decimal.
fn used(percent: f64) -> Value {
    observed("system", round1(percent), Some("percent"))
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The status as it may leave the box: without the watchdog's per-instance `why`, the one
/// field made from text the box did not write itself (a probe's error, a worker's answer).
/// Everything else is our own words, names and numbers.
fn leaving_the_box(s: &BoxStatus) -> BoxStatus {
    let mut s = s.clone();
    for w in &mut s.instances {
        w.why.clear();
    }
    s
}

/// `unix` seconds since the epoch as an RFC 3339 UTC time, `1970-01-01T00:00:00Z`.
pub fn rfc3339(unix: u64) -> String {
    let (y, m, d) = civil_from_days(unix / 86_400);
    let secs = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01, after Howard
/// Hinnant's `civil_from_days` (restricted to days on or after the epoch, so all unsigned).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of each counted year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assess::fixture::{assessed, fine, space, worker, NOW};

    fn check<'a>(doc: &'a Value, key: &str) -> &'a Value {
        &doc["checks"][key][0]
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(951_868_800), "2000-03-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_164_800), "2024-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(4_107_542_400),
            "2100-03-01T00:00:00Z",
            "2100 has no 29 February"
        );
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn consecutive_days_are_consecutive_dates() {
        // Walk 1970 to 2400 one day at a time against a plain calendar.
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for day in 0..157_000 {
            assert_eq!(civil_from_days(day), (y, m, d), "day {day}");
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            d += 1;
            if d > len[usize::try_from(m - 1).expect("a month")] {
                (m, d) = (m + 1, 1);
                if m > 12 {
                    (y, m) = (y + 1, 1);
                }
            }
        }
    }

    #[test]
    fn a_healthy_box_passes() {
        let (code, doc) = document(&assessed(fine()));
        assert_eq!(code, 200);
        assert_eq!(doc["status"], "pass");
        assert_eq!(doc["version"], "1");
        assert_eq!(doc["releaseId"], "0.4.0");
        assert_eq!(doc["serviceId"], "oscarbox:clinic-a");
        assert_eq!(doc["notes"], json!([]));
        assert!(doc.get("output").is_none());
        let checks = doc["checks"].as_object().expect("checks");
        for (key, entries) in checks {
            assert!(key.contains(':'), "{key}");
            for e in entries.as_array().expect("an array") {
                assert_eq!(e["status"], "pass", "{key}");
                assert_eq!(e["time"], "2023-11-14T22:13:20Z");
            }
        }
        assert_eq!(checks["emr:instances"].as_array().map(Vec::len), Some(2));
        assert_eq!(check(&doc, "emr:instances")["componentId"], "instance-1");
        assert_eq!(check(&doc, "emr:instances")["output"], "healthy");
        assert_eq!(check(&doc, "emr:responseTime")["observedUnit"], "ms");
        assert_eq!(
            check(&doc, "backup-disk:utilization")["observedValue"],
            20.0
        );
        assert_eq!(
            check(&doc, "backup-disk:utilization")["observedUnit"],
            "percent"
        );
        assert_eq!(check(&doc, "memory:utilization")["observedValue"], 50.0);
        assert_eq!(check(&doc, "tls:expiry")["observedValue"], 60);
        assert_eq!(check(&doc, "database:writable")["observedValue"], true);
        assert_eq!(checks["backup:age"][1]["componentId"], "documents");
        assert_eq!(checks["backup:age"][1]["observedValue"], 1800);
    }

    #[test]
    fn the_whole_status_rides_along_without_the_workers_own_words() {
        let s = assessed(fine());
        let (_, doc) = document(&s);
        let back: BoxStatus = serde_json::from_value(doc["oscarbox"].clone()).expect("reads back");
        assert!(s.instances.iter().all(|w| w.why.starts_with("WHY-")));
        assert!(!doc.to_string().contains("WHY-"), "{doc}");
        let mut expected = s;
        expected.instances.iter_mut().for_each(|w| w.why.clear());
        assert_eq!(back, expected);
    }

    #[test]
    fn one_instance_down_warns_with_200() {
        let mut s = fine();
        s.instances[1] = worker(2, "hung");
        let (code, doc) = document(&assessed(s));
        assert_eq!((code, doc["status"].as_str()), (200, Some("warn")));
        let instances = &doc["checks"]["emr:instances"];
        assert_eq!(instances[0]["status"], "pass");
        assert_eq!(instances[1]["status"], "warn");
        assert_eq!(instances[1]["output"], "hung");
        assert_eq!(doc["notes"].as_array().map(Vec::len), Some(1));
        let output = doc["output"].as_str().expect("output when not pass");
        assert!(
            output.starts_with("OSCAR server 2 of 2 stopped answering."),
            "{output}"
        );
        assert!(output.ends_with("call your support provider."), "{output}");
    }

    #[test]
    fn critical_fails_with_503() {
        let mut s = fine();
        s.database.endpoint_reachable = false;
        s.backups.disk_present = false;
        s.system.disk = Some(space("/", 100, 10));
        s.tls = Some(oscarbox_watchdog_api::TlsStatus {
            not_after: NOW - 86_400 - 1,
        });
        let (code, doc) = document(&assessed(s));
        assert_eq!((code, doc["status"].as_str()), (503, Some("fail")));
        assert_eq!(check(&doc, "database:reachable")["status"], "fail");
        assert_eq!(check(&doc, "database:reachable")["observedValue"], false);
        assert_eq!(check(&doc, "backup-disk:present")["status"], "fail");
        assert!(doc["checks"].get("backup-disk:utilization").is_none());
        assert_eq!(check(&doc, "system-disk:utilization")["status"], "warn");
        assert_eq!(check(&doc, "tls:expiry")["status"], "fail");
        assert_eq!(check(&doc, "tls:expiry")["observedValue"], -2);
        assert_eq!(check(&doc, "proxy:reachable")["status"], "pass");
    }

    #[test]
    fn replication_lag_is_judged_per_node() {
        let mut s = fine();
        s.database.nodes[0].lag_seconds = Some(1.0);
        s.database.nodes[1].lag_seconds = Some(45.0);
        let (_, doc) = document(&assessed(s));
        let lag = &doc["checks"]["database:replicationLag"];
        assert_eq!(lag[0]["status"], "pass");
        assert_eq!(lag[1]["status"], "warn");
        assert_eq!(lag[1]["componentId"], "db2");
    }
}
