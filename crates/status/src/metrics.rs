//! The status as Prometheus metrics, in the OpenMetrics text format `prometheus-client` writes.
//!
//! Every scrape encodes one snapshot: a fresh registry holding one collector that writes the
//! families in a fixed order, so the output is stable from scrape to scrape (a `Family` of
//! live metrics would come out in hash order) and nothing is left over from the last status.
//! Label values are only our own ids, names and numbers; they are escaped all the same, since
//! `prometheus-client` writes them as given. The EMR instance's label is `emr_instance`:
//! Prometheus gives every scraped series its target's `instance`, and would rename ours.

use oscarbox_watchdog_api::{BoxStatus, Space, Verdict};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics for `s`, ending with OpenMetrics' `# EOF`.
pub fn encode(s: &BoxStatus) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot(s)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy)]
enum Sample {
    Int(i64),
    Float(f64),
    Count(u64),
}

impl From<bool> for Sample {
    fn from(v: bool) -> Self {
        Sample::Int(i64::from(v))
    }
}

impl From<u32> for Sample {
    fn from(v: u32) -> Self {
        Sample::Int(i64::from(v))
    }
}

impl From<u64> for Sample {
    fn from(v: u64) -> Self {
        Sample::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Sample {
    fn from(v: f64) -> Self {
        Sample::Float(v)
    }
}

#[derive(Debug)]
struct Family {
    /// The name before the suffix the type adds (`_total` for counters).
    name: &'static str,
    help: &'static str,
    series: Vec<(Labels, Sample)>,
}

#[derive(Debug, Default)]
struct Snapshot(Vec<Family>);

impl Snapshot {
    /// A family with these series; one with none is left out (a fact not known).
    fn by(&mut self, name: &'static str, help: &'static str, series: Vec<(Labels, Sample)>) {
        if !series.is_empty() {
            self.0.push(Family { name, help, series });
        }
    }

    fn one(&mut self, name: &'static str, help: &'static str, v: impl Into<Sample>) {
        self.known(name, help, Some(v));
    }

    fn known(&mut self, name: &'static str, help: &'static str, v: Option<impl Into<Sample>>) {
        let series = v.map(|v| (Vec::new(), v.into())).into_iter().collect();
        self.by(name, help, series);
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let kind = match f.series.first() {
                Some((_, Sample::Count(_))) => MetricType::Counter,
                _ => MetricType::Gauge,
            };
            let mut m = encoder.encode_descriptor(f.name, f.help, None, kind)?;
            for (labels, v) in &f.series {
                // An empty label set through `encode_family` would print `name{}`.
                if labels.is_empty() {
                    sample(&mut m, *v)?;
                } else {
                    sample(&mut m.encode_family(labels)?, *v)?;
                }
            }
        }
        Ok(())
    }
}

fn sample(m: &mut MetricEncoder, v: Sample) -> Result<(), std::fmt::Error> {
    match v {
        Sample::Int(v) => m.encode_gauge(&v),
        Sample::Float(v) => m.encode_gauge(&v),
        Sample::Count(v) => m.encode_counter::<NoLabelSet, _, u64>(&v, None),
    }
}

/// One label, its value escaped as the exposition format requires.
fn label(key: &'static str, value: &str) -> (&'static str, String) {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    (key, escaped)
}

fn snapshot(s: &BoxStatus) -> Snapshot {
    let mut m = Snapshot::default();
    let info = vec![
        label("box", &s.box_name),
        label("version", &s.software_version),
    ];
    // A gauge of 1 named `_info`, the classic form (node_uname_info): OpenMetrics' info type
    // is not understood by the Prometheus text format's parsers (promtool among them).
    m.by(
        "oscarbox_box_info",
        "The box's name and the oscarbox release it runs.",
        vec![(info, Sample::Int(1))],
    );
    let verdicts = [Verdict::Ok, Verdict::Degraded, Verdict::Critical];
    let verdicts = verdicts.map(|v| (vec![label("status", v.as_str())], (v == s.verdict).into()));
    m.by(
        "oscarbox_status",
        "1 for the box's verdict (ok, degraded or critical), 0 for the others.",
        verdicts.into(),
    );
    // Always present, even empty, so that a query for problems finds the family.
    m.0.push(Family {
        name: "oscarbox_problem",
        help: "1 for each reason the verdict is not ok, by the reason's stable id.",
        series: (s.reasons.iter())
            .map(|r| {
                let instance = r.instance.map_or(String::new(), |n| n.to_string());
                let labels = vec![
                    label("id", &r.id),
                    label("severity", r.severity.as_str()),
                    label("emr_instance", &instance),
                ];
                (labels, Sample::Int(1))
            })
            .collect(),
    });
    m.one(
        "oscarbox_status_checked_timestamp_seconds",
        "When the status was gathered, seconds since the Unix epoch.",
        s.checked_at,
    );
    m.one(
        "oscarbox_watchdog_up",
        "1 if the watchdog answered.",
        s.watchdog_running,
    );
    let count = u32::try_from(s.instances.len()).unwrap_or(u32::MAX);
    m.one(
        "oscarbox_emr_instances",
        "EMR instances the watchdog reports.",
        count,
    );
    let per_instance = |v: &dyn Fn(&oscarbox_watchdog_api::WorkerStatus) -> Option<Sample>| {
        (s.instances.iter())
            .filter_map(|w| Some((vec![label("emr_instance", &w.instance.to_string())], v(w)?)))
            .collect()
    };
    m.by(
        "oscarbox_emr_instance_healthy",
        "1 if the EMR instance answers its probes.",
        per_instance(&|w| Some((w.state == "healthy").into())),
    );
    m.by(
        "oscarbox_emr_instance_restarts",
        "Restarts of the EMR instance since the watchdog started.",
        per_instance(&|w| Some(Sample::Count(w.restarts.into()))),
    );
    m.by(
        "oscarbox_emr_instance_probe_seconds",
        "The EMR instance's last successful probe's round trip.",
        per_instance(&|w| w.last_probe_ms.map(|ms| (ms / 1000.0).into())),
    );
    m.by(
        "oscarbox_emr_instance_resident_memory_bytes",
        "The EMR instance's resident memory.",
        per_instance(&|w| w.rss_bytes.map(Into::into)),
    );

    m.one(
        "oscarbox_proxy_up",
        "1 if the proxy's admin socket answered.",
        s.proxy.reachable,
    );
    m.one(
        "oscarbox_proxy_backends_up",
        "EMR instances the proxy would send requests to now.",
        s.proxy.backends_up,
    );

    let db = &s.database;
    m.one(
        "oscarbox_database_up",
        "1 if the database endpoint answered in time.",
        db.endpoint_reachable,
    );
    m.known(
        "oscarbox_database_writable",
        "1 if the database behind the endpoint takes writes.",
        db.writable,
    );
    let per_node = |v: &dyn Fn(&oscarbox_watchdog_api::DbNodeStatus) -> Option<Sample>| {
        (db.nodes.iter())
            .filter_map(|n| Some((vec![label("node", &n.name)], v(n)?)))
            .collect()
    };
    m.by(
        "oscarbox_database_replication_lag_seconds",
        "How far the database node's replication is behind.",
        per_node(&|n| n.lag_seconds.map(Into::into)),
    );
    m.by(
        "oscarbox_database_semi_sync_enabled",
        "1 if the database node has semi-synchronous replication on.",
        per_node(&|n| n.semi_sync.map(Into::into)),
    );
    m.known(
        "oscarbox_database_last_failover_timestamp_seconds",
        "When the database last failed over, seconds since the Unix epoch.",
        db.last_failover.as_ref().map(|f| f.at),
    );

    let b = &s.backups;
    m.one(
        "oscarbox_backup_disk_present",
        "1 if the backup disk is there.",
        b.disk_present,
    );
    let ages = [
        ("database", b.newest_database_age_seconds),
        ("documents", b.newest_documents_age_seconds),
    ];
    let ages = ages
        .into_iter()
        .filter_map(|(kind, age)| Some((vec![label("kind", kind)], age?.into())));
    m.by(
        "oscarbox_backup_newest_age_seconds",
        "Seconds since the newest backup of each kind.",
        ages.collect(),
    );
    m.known(
        "oscarbox_backup_drill_last_timestamp_seconds",
        "When the backups were last test-restored, seconds since the Unix epoch.",
        b.last_drill.as_ref().map(|d| d.at),
    );
    m.known(
        "oscarbox_backup_drill_passed",
        "1 if the last test restore of the backups worked.",
        b.last_drill.as_ref().map(|d| d.passed),
    );

    let sys = &s.system;
    let disks = [("system", sys.disk.as_ref()), ("backup", b.disk.as_ref())];
    let per_disk = |v: fn(&Space) -> u64| {
        (disks.iter())
            .filter_map(|(name, space)| Some((vec![label("disk", name)], v((*space)?).into())))
            .collect()
    };
    m.by(
        "oscarbox_filesystem_size_bytes",
        "The size of the file system holding each disk's data.",
        per_disk(|d| d.total_bytes),
    );
    m.by(
        "oscarbox_filesystem_avail_bytes",
        "What an unprivileged writer can still use of each disk.",
        per_disk(|d| d.available_bytes),
    );
    m.one(
        "oscarbox_memory_total_bytes",
        "The box's memory.",
        sys.memory_total_bytes,
    );
    m.one(
        "oscarbox_memory_available_bytes",
        "Memory available to new work without swapping.",
        sys.memory_available_bytes,
    );
    m.one("oscarbox_cpus", "The box's processors.", sys.cpus);
    m.one(
        "oscarbox_cpu_usage_ratio",
        "Share of all processors in use, 0 to 1.",
        sys.cpu_usage_percent / 100.0,
    );
    let periods = ["1m", "5m", "15m"];
    let loads = periods
        .iter()
        .zip(sys.load_average)
        .map(|(p, l)| (vec![label("period", p)], l.into()));
    m.by(
        "oscarbox_load_average",
        "The system load average over each period.",
        loads.collect(),
    );
    m.known(
        "oscarbox_tls_certificate_expiry_timestamp_seconds",
        "When the box's certificate expires, seconds since the Unix epoch.",
        s.tls.as_ref().map(|t| t.not_after),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assess::fixture::{assessed, fine, worker, NOW};
    use std::collections::BTreeMap;

    /// The samples by `name{labels}`, and the families that have a HELP line.
    fn parse(text: &str) -> (BTreeMap<String, f64>, Vec<String>) {
        let mut samples = BTreeMap::new();
        let mut help = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                help.push(rest.split(' ').next().expect("a name").to_owned());
            } else if !line.starts_with('#') {
                let (series, value) = line.rsplit_once(' ').expect("name and value");
                let value = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
                assert!(
                    samples.insert(series.to_owned(), value).is_none(),
                    "{line} twice"
                );
            }
        }
        (samples, help)
    }

    #[test]
    fn a_sample_status_as_metrics() {
        let mut s = fine();
        s.instances[1] = worker(2, "hung");
        s.database.last_failover = Some(oscarbox_watchdog_api::FailoverSummary {
            at: NOW - 100,
            seconds_to_recover: Some(4.5),
            transactions_lost: Some(0),
        });
        let text = encode(&assessed(s));
        assert!(text.ends_with("# EOF\n"));
        let (samples, help) = parse(&text);
        let want = [
            ("oscarbox_box_info{box=\"clinic-a\",version=\"0.4.0\"}", 1.0),
            ("oscarbox_status{status=\"ok\"}", 0.0),
            ("oscarbox_status{status=\"degraded\"}", 1.0),
            ("oscarbox_status{status=\"critical\"}", 0.0),
            (
                "oscarbox_problem{id=\"emr-instance-down\",severity=\"warning\",\
                 emr_instance=\"2\"}",
                1.0,
            ),
            ("oscarbox_status_checked_timestamp_seconds", 1.7e9),
            ("oscarbox_watchdog_up", 1.0),
            ("oscarbox_emr_instances", 2.0),
            ("oscarbox_emr_instance_healthy{emr_instance=\"1\"}", 1.0),
            ("oscarbox_emr_instance_healthy{emr_instance=\"2\"}", 0.0),
            (
                "oscarbox_emr_instance_restarts_total{emr_instance=\"2\"}",
                2.0,
            ),
            (
                "oscarbox_emr_instance_probe_seconds{emr_instance=\"1\"}",
                0.0015,
            ),
            (
                "oscarbox_emr_instance_resident_memory_bytes{emr_instance=\"1\"}",
                734_003_200.0,
            ),
            ("oscarbox_proxy_up", 1.0),
            ("oscarbox_proxy_backends_up", 2.0),
            ("oscarbox_database_up", 1.0),
            ("oscarbox_database_writable", 1.0),
            (
                "oscarbox_database_replication_lag_seconds{node=\"db2\"}",
                0.0,
            ),
            ("oscarbox_database_semi_sync_enabled{node=\"db1\"}", 1.0),
            (
                "oscarbox_database_last_failover_timestamp_seconds",
                1.7e9 - 100.0,
            ),
            ("oscarbox_backup_disk_present", 1.0),
            (
                "oscarbox_backup_newest_age_seconds{kind=\"database\"}",
                60.0,
            ),
            (
                "oscarbox_backup_newest_age_seconds{kind=\"documents\"}",
                1800.0,
            ),
            (
                "oscarbox_backup_drill_last_timestamp_seconds",
                1.7e9 - 86_400.0,
            ),
            ("oscarbox_backup_drill_passed", 1.0),
            (
                "oscarbox_filesystem_size_bytes{disk=\"system\"}",
                500.0 * 1_073_741_824.0,
            ),
            (
                "oscarbox_filesystem_avail_bytes{disk=\"backup\"}",
                800.0 * 1_073_741_824.0,
            ),
            ("oscarbox_memory_total_bytes", 16.0 * 1_073_741_824.0),
            ("oscarbox_memory_available_bytes", 8.0 * 1_073_741_824.0),
            ("oscarbox_cpus", 4.0),
            ("oscarbox_cpu_usage_ratio", 0.125),
            ("oscarbox_load_average{period=\"5m\"}", 0.75),
            (
                "oscarbox_tls_certificate_expiry_timestamp_seconds",
                1.7e9 + 60.0 * 86_400.0,
            ),
        ];
        for (series, value) in want {
            assert_eq!(samples.get(series), Some(&value), "{series} in\n{text}");
        }
        assert_eq!(samples.len(), 41, "{text}");
        // The database pair's lag is only shown where it is known.
        assert!(!samples.contains_key("oscarbox_database_replication_lag_seconds{node=\"db1\"}"));
        for series in samples.keys() {
            let name = series.split('{').next().expect("a name");
            let family = name.trim_end_matches("_total");
            assert!(help.iter().any(|h| h == family), "{family} has a HELP line");
        }
    }

    #[test]
    fn unknown_facts_are_left_out() {
        let mut s = fine();
        s.watchdog_running = false;
        s.instances.clear();
        s.database.writable = None;
        s.database.nodes.clear();
        s.backups.last_drill = None;
        s.backups.disk = None;
        s.backups.newest_database_age_seconds = None;
        s.backups.newest_documents_age_seconds = None;
        s.tls = None;
        let text = encode(&assessed(s));
        for absent in [
            "oscarbox_emr_instance_healthy",
            "oscarbox_database_writable",
            "oscarbox_database_replication_lag_seconds",
            "oscarbox_backup_newest_age_seconds",
            "oscarbox_backup_drill_passed",
            "oscarbox_tls_certificate_expiry",
            "disk=\"backup\"",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
        let (samples, _) = parse(&text);
        assert_eq!(samples.get("oscarbox_emr_instances"), Some(&0.0));
        assert_eq!(
            samples.get("oscarbox_status{status=\"critical\"}"),
            Some(&1.0)
        );
        assert!(text.contains("# HELP oscarbox_problem "));
    }

    #[test]
    fn label_values_are_only_our_own_and_escaped() {
        let mut s = fine();
        s.box_name = "a\"b\\c\nd".into();
        s.instances[0].state = "hung".into();
        s.instances[0].why = "SECRET why with \"quotes\"".into();
        let text = encode(&assessed(s));
        assert!(
            text.contains("oscarbox_box_info{box=\"a\\\"b\\\\c\\nd\",version=\"0.4.0\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("SECRET"));
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("oscarbox_box_info"))
        {
            let labels = line.split_once('{').map_or("", |(_, l)| l);
            assert!(
                labels
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "{}=\",-_. ".contains(c)),
                "{line}"
            );
        }
    }
}
