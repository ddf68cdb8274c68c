//! The status page: one self-contained HTML page for clinic staff and technicians, served by
//! the admin listener. No scripts and no external assets, so it works on any browser on the
//! clinic's network and keeps working when the internet does not; it reloads itself.
//!
//! Every string from the status is escaped, and colours come from the reasons (the same ones
//! alerts are sent for), so the page never disagrees with them.

use std::fmt::Write as _;

use oscarbox_common::escape_html as esc;
use oscarbox_watchdog_api::{BoxStatus, Severity, Verdict};

use crate::assess::{bytes, duration, id, percent, worst};
use crate::health::rfc3339;

/// Writes formatted text to a `String`, which cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {
        $out.write_fmt(format_args!($($arg)*)).expect("writing to a String cannot fail")
    };
}

const STYLE: &str = r#"
:root { --ok: #1b7f3b; --warning: #a15c00; --critical: #b3261e; --line: #d9dde3; --muted: #5f6670;
  --card: #fff; --bg: #f3f5f8; --text: #1d2329; color-scheme: light dark; }
@media (prefers-color-scheme: dark) {
  :root { --line: #3a414a; --muted: #a9b1bb; --card: #1f252c; --bg: #14181d; --text: #e8ecf0; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  background: var(--bg); color: var(--text); }
main { max-width: 68rem; margin: 0 auto; padding: 1rem; }
header.top { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: baseline;
  justify-content: space-between; margin-bottom: .75rem; color: var(--muted); }
header.top strong { color: var(--text); font-size: 1.15rem; }
.banner { border-radius: .75rem; padding: 1rem 1.25rem; color: #fff; margin-bottom: 1rem; }
.banner h1 { margin: 0; font-size: clamp(1.4rem, 4vw, 2rem); line-height: 1.2; }
.banner p { margin: .25rem 0 0; opacity: .9; }
.banner.ok { background: var(--ok); } .banner.degraded { background: var(--warning); }
.banner.critical { background: var(--critical); }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: .75rem;
  padding: .75rem 1rem 1rem; }
h2 { font-size: 1.1rem; margin: .25rem 0 .5rem; }
#reasons { margin-bottom: 1rem; }
#reasons ol { list-style: none; margin: 0; padding: 0; }
#reasons li { border-left: .35rem solid var(--warning); padding: .4rem .75rem; margin: .5rem 0;
  background: var(--bg); border-radius: .25rem; }
#reasons li.critical { border-color: var(--critical); }
#reasons p { margin: 0; } #reasons .todo { color: var(--muted); }
.grid { display: grid; gap: 1rem;
  grid-template-columns: repeat(auto-fit, minmax(min(100%, 26rem), 1fr)); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem .3rem 0; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: .9rem; white-space: nowrap; }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; font-size: .9rem;
  color: #fff; background: var(--ok); white-space: nowrap; }
.badge.warning { background: var(--warning); } .badge.critical { background: var(--critical); }
.bar { height: .6rem; background: var(--line); border-radius: .3rem; overflow: hidden;
  margin: .2rem 0; min-width: 6rem; }
.bar span { display: block; height: 100%; background: var(--ok); }
.bar.warning span { background: var(--warning); }
.bar.critical span { background: var(--critical); }
footer { color: var(--muted); font-size: .85rem; margin-top: 1rem; }
"#;

/// The page for `s`, reloading every `refresh_seconds`.
pub fn render(s: &BoxStatus, refresh_seconds: u32) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let (headline, explain) = match s.verdict {
        Verdict::Ok => (
            "Everything is working",
            "OSCAR is available and its data is protected.",
        ),
        Verdict::Degraded => (
            "Working, but needs attention",
            "Clinics can work; something below should be looked at soon.",
        ),
        Verdict::Critical => (
            "Not working",
            "OSCAR is not available, or its data is not protected. See below.",
        ),
    };
    let name = esc(&s.box_name);
    let checked = rfc3339(s.checked_at);
    // The machine-readable time goes in `datetime`; people read it without the `T`.
    let shown = checked.replace('T', " ").replace('Z', " UTC");
    put!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"{refresh_seconds}\">\n\
         <title>{headline} · {name} · OSCAR Box</title>\n<style>{STYLE}</style>\n</head>\n\
         <body>\n<main>\n\
         <header class=\"top\"><span>OSCAR Box <strong id=\"box-name\">{name}</strong></span>\
         <span>checked <time datetime=\"{checked}\">{shown}</time></span></header>\n\
         <section id=\"verdict\" class=\"banner {verdict}\" data-verdict=\"{verdict}\">\
         <h1>{headline}</h1><p>{explain} (status: {verdict})</p></section>\n",
        verdict = s.verdict.as_str(),
    );
    reasons(&mut out, s);
    out.push_str("<div class=\"grid\">\n");
    instances(&mut out, s);
    proxy_and_database(&mut out, s);
    backups(&mut out, s);
    system(&mut out, s);
    out.push_str("</div>\n");
    put!(
        out,
        "<footer>Checked at {shown} · OSCAR Box {version} · this page reloads every \
         {refresh_seconds} seconds</footer>\n</main>\n</body>\n</html>\n",
        version = esc(&s.software_version),
    );
    out
}

fn reasons(out: &mut String, s: &BoxStatus) {
    out.push_str("<section id=\"reasons\" class=\"card\">\n<h2>What needs attention</h2>\n");
    if s.reasons.is_empty() {
        out.push_str("<p>Nothing needs attention.</p>\n");
    } else {
        out.push_str("<ol>\n");
        for r in &s.reasons {
            put!(
                out,
                "<li class=\"{}\" data-id=\"{}\"><p class=\"what\">{}</p>\
                 <p class=\"todo\"><strong>What to do:</strong> {}</p></li>\n",
                r.severity.as_str(),
                esc(&r.key()),
                esc(&r.what),
                esc(&r.todo)
            );
        }
        out.push_str("</ol>\n");
    }
    out.push_str("</section>\n");
}

fn instances(out: &mut String, s: &BoxStatus) {
    let rows = s.instances.iter().map(|w| {
        let level = worst(s, &[id::EMR_INSTANCE_DOWN], Some(w.instance));
        vec![
            format!("{}", w.instance),
            badge(level, &w.state),
            w.uptime_seconds.map_or("–".into(), duration),
            format!("{}", w.restarts),
            w.rss_bytes.map_or("–".into(), bytes),
        ]
    });
    let rows: Vec<_> = rows.collect();
    card_start(out, "OSCAR servers");
    if !s.watchdog_running {
        let down = flag(s, &[id::WATCHDOG_DOWN], "The watchdog is not running");
        put!(out, "<p>{down}</p>\n");
    }
    let head = ["Server", "State", "Up for", "Restarts", "Memory"];
    table(out, Some("instances"), &head, &rows);
    out.push_str("</section>\n");
}

fn proxy_and_database(out: &mut String, s: &BoxStatus) {
    card_start(out, "Connections");
    let p = &s.proxy;
    let db = &s.database;
    let in_use = format!("{} of {}", p.backends_up, p.backends);
    let mut facts = vec![
        (
            "Front door (proxy)",
            answering(s, id::PROXY_DOWN, p.reachable),
        ),
        ("Servers in use", flag(s, &[id::PROXY_NO_BACKEND], &in_use)),
        (
            "Database",
            answering(s, id::DATABASE_DOWN, db.endpoint_reachable),
        ),
    ];
    if let Some(writable) = db.writable {
        let saving = if writable {
            "allowed"
        } else {
            "not allowed (read-only)"
        };
        facts.push(("Saving", flag(s, &[id::DATABASE_READ_ONLY], saving)));
    }
    if let Some(f) = &db.last_failover {
        let took = f
            .seconds_to_recover
            .map_or_else(String::new, |t| format!("back in {t:.0} s, "));
        let lost = match f.transactions_lost {
            Some(0) => "nothing lost".to_owned(),
            Some(n) => format!("{n} changes kept for review"),
            None => "checking for lost changes".to_owned(),
        };
        let summary = format!("{} ({took}{lost})", rfc3339(f.at));
        facts.push(("Last switch to the copy", esc(&summary)));
    }
    facts_list(out, &facts);
    if !db.nodes.is_empty() {
        let lag_level = worst(s, &[id::DATABASE_REPLICA_LAG], None);
        let known = |v: Option<bool>, yes: &str, no: &str| match v {
            Some(v) => (if v { yes } else { no }).to_owned(),
            None => "–".into(),
        };
        let rows: Vec<_> = (db.nodes.iter())
            .map(|n| {
                let lag = n.lag_seconds.map_or("–".into(), |l| {
                    let late = l > crate::assess::REPLICA_LAG_WARN_SECS;
                    badge(lag_level.filter(|_| late), &format!("{l:.0} s"))
                });
                let role = n.role.as_deref().map_or("–".into(), esc);
                let semi_sync = known(n.semi_sync, "on", "off");
                vec![
                    esc(&n.name),
                    role,
                    known(n.reachable, "yes", "no"),
                    lag,
                    semi_sync,
                ]
            })
            .collect();
        let head = ["Node", "Role", "Answering", "Behind", "Confirmed saves"];
        table(out, Some("database-nodes"), &head, &rows);
    }
    out.push_str("</section>\n");
}

fn backups(out: &mut String, s: &BoxStatus) {
    let b = &s.backups;
    card_start(out, "Backups");
    let disk = if b.disk_present {
        badge(None, "present")
    } else {
        let problem = (b.disk_problem.as_deref()).map_or(String::new(), |p| format!(" ({p})"));
        flag(s, &[id::BACKUP_DISK_MISSING], &format!("missing{problem}"))
    };
    let age = |age: Option<u64>, reason: &str| match age {
        None => "not set up yet".to_owned(),
        Some(age) => flag(s, &[reason], &format!("{} ago", duration(age))),
    };
    let drill = b.last_drill.as_ref().map_or("not set up yet".into(), |d| {
        let result = if d.passed { "passed" } else { "failed" };
        let ids = [id::BACKUP_DRILL_FAILED, id::BACKUP_DRILL_OVERDUE];
        let ago = duration(s.checked_at.saturating_sub(d.at));
        flag(s, &ids, &format!("{result} {ago} ago"))
    });
    let database = age(b.newest_database_age_seconds, id::BACKUP_DATABASE_OLD);
    let documents = age(b.newest_documents_age_seconds, id::BACKUP_DOCUMENTS_OLD);
    facts_list(
        out,
        &[
            ("Backup disk", disk),
            ("Newest database backup", database),
            ("Newest documents backup", documents),
            ("Last test restore", drill),
        ],
    );
    out.push_str("</section>\n");
}

fn system(out: &mut String, s: &BoxStatus) {
    let sys = &s.system;
    card_start(out, "The box");
    let backup_disk = s.backups.disk.as_ref().filter(|_| s.backups.disk_present);
    let memory = crate::assess::memory(sys);
    let spaces = [
        ("Main disk", sys.disk.as_ref(), id::SYSTEM_DISK_FULL),
        ("Backup disk", backup_disk, id::BACKUP_DISK_FULL),
        ("Memory", memory.as_ref(), id::MEMORY_LOW),
    ];
    let mut rows: Vec<_> = (spaces.into_iter())
        .filter_map(|(what, space, reason)| {
            let space = space?;
            let (free, total) = (bytes(space.available_bytes), bytes(space.total_bytes));
            let detail = format!("{free} free of {total}");
            Some(usage(s, what, space.used_percent(), reason, &detail))
        })
        .collect();
    let [one, five, fifteen] = sys.load_average;
    let cpus = sys.cpus;
    let load =
        format!("load {one:.2}, {five:.2}, {fifteen:.2} (1, 5, 15 min) on {cpus} processors");
    rows.push(usage(
        s,
        "Processors",
        sys.cpu_usage_percent,
        id::LOAD_HIGH,
        &load,
    ));
    table(out, Some("resources"), &["", "In use", ""], &rows);
    let mut facts = vec![("Running for", esc(&duration(sys.uptime_seconds)))];
    if let Some(tls) = &s.tls {
        let left = tls.not_after.saturating_sub(s.checked_at);
        let until = rfc3339(tls.not_after);
        let until = until.get(..10).unwrap_or(&until);
        let until = if left == 0 {
            format!("expired {until}")
        } else {
            format!("until {until} ({} left)", duration(left))
        };
        facts.push(("Security certificate", flag(s, &[id::TLS_EXPIRING], &until)));
    }
    facts_list(out, &facts);
    out.push_str("</section>\n");
}

/// A resource row: its name, a bar coloured by the reason about it, and the numbers.
fn usage(s: &BoxStatus, what: &str, used: f64, reason: &str, detail: &str) -> Vec<String> {
    let class = worst(s, &[reason], None).map_or("ok", Severity::as_str);
    let (p, width) = (percent(used), used.clamp(0.0, 100.0));
    let bar = format!(
        "<div class=\"bar {class}\" role=\"img\" aria-label=\"{p} in use\">\
         <span style=\"width:{width:.1}%\"></span></div>{p}"
    );
    vec![esc(what), bar, esc(detail)]
}

/// "answering" or "not answering", coloured by the reason about it.
fn answering(s: &BoxStatus, reason: &str, yes: bool) -> String {
    flag(
        s,
        &[reason],
        if yes { "answering" } else { "not answering" },
    )
}

/// A badge coloured by the worst of the reasons with these ids.
fn flag(s: &BoxStatus, ids: &[&str], text: &str) -> String {
    badge(worst(s, ids, None), text)
}

fn badge(level: Option<Severity>, text: &str) -> String {
    let class = level.map_or("ok", Severity::as_str);
    format!("<span class=\"badge {class}\">{}</span>", esc(text))
}

fn card_start(out: &mut String, title: &str) {
    put!(out, "<section class=\"card\">\n<h2>{}</h2>\n", esc(title));
}

/// Facts as a two-column table; the values are HTML already.
fn facts_list(out: &mut String, facts: &[(&str, String)]) {
    let rows: Vec<_> = facts.iter().map(|(k, v)| vec![esc(k), v.clone()]).collect();
    table(out, None, &[], &rows);
}

/// A table whose cells are HTML already; no header row when `head` is empty.
fn table(out: &mut String, id: Option<&str>, head: &[&str], rows: &[Vec<String>]) {
    let id = id.map_or(String::new(), |id| format!(" id=\"{}\"", esc(id)));
    put!(out, "<div class=\"scroll\"><table{id}>\n");
    if !head.is_empty() {
        out.push_str("<thead><tr>");
        for h in head {
            put!(out, "<th scope=\"col\">{}</th>", esc(h));
        }
        out.push_str("</tr></thead>\n");
    }
    out.push_str("<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            put!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assess::fixture::{assessed, fine, worker};

    /// The text of the element with `id`, tags stripped.
    fn text_of(html: &str, id: &str) -> String {
        let start = html
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id}"));
        let open = html[..start].rfind('<').expect("an opening tag");
        let tag: String = html[open + 1..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        let end = start
            + html[start..]
                .find(&format!("</{tag}>"))
                .expect("a closing tag");
        let mut text = String::new();
        let mut in_tag = false;
        for c in html[start..end].chars().skip_while(|&c| c != '>').skip(1) {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        text
    }

    #[test]
    fn a_healthy_box_is_green() {
        let html = render(&assessed(fine()), 10);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(html.contains("class=\"banner ok\""));
        let verdict = text_of(&html, "verdict");
        assert!(
            verdict.contains("Everything is working") && verdict.contains("ok"),
            "{verdict}"
        );
        assert_eq!(text_of(&html, "box-name"), "clinic-a");
        assert!(text_of(&html, "reasons").contains("Nothing needs attention."));
        let instances = text_of(&html, "instances");
        assert!(
            instances.contains("healthy") && instances.contains("3 hours"),
            "{instances}"
        );
        assert!(html.contains("2023-11-14T22:13:20Z"));
        assert!(html.contains("OSCAR Box 0.4.0"));
        for external in ["<script", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(external), "{external}");
        }
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn problems_are_listed_with_what_to_do() {
        let mut s = fine();
        s.instances[1] = worker(2, "hung");
        s.backups.newest_database_age_seconds = None;
        s.system.disk = Some(crate::assess::fixture::space("/", 100, 3));
        let s = assessed(s);
        let html = render(&s, 30);
        assert!(html.contains("class=\"banner critical\""));
        let verdict = text_of(&html, "verdict");
        assert!(
            verdict.contains("Not working") && verdict.contains("critical"),
            "{verdict}"
        );
        let reasons = text_of(&html, "reasons");
        for r in &s.reasons {
            assert!(reasons.contains(&esc(&r.what)), "{}", r.what);
        }
        assert!(reasons.contains("What to do:"));
        assert!(html.contains("<li class=\"warning\" data-id=\"emr-instance-down/2\">"));
        assert!(html.contains("<span class=\"badge warning\">hung</span>"));
        assert!(html.contains("<div class=\"bar critical\""));
        assert!(
            html.contains("not set up yet"),
            "a backup that does not exist yet is said so"
        );
    }

    #[test]
    fn degraded_is_amber_and_missing_backups_are_not_set_up_yet() {
        let mut s = fine();
        s.backups.newest_documents_age_seconds = None;
        s.backups.last_drill = None;
        s.instances[0] = worker(1, "starting");
        (s.verdict, s.reasons) = crate::assess::assess(
            &s,
            &crate::assess::Expect {
                backups_running: false,
                ..crate::assess::fixture::expect()
            },
            s.checked_at,
        );
        let html = render(&s, 10);
        assert!(html.contains("class=\"banner degraded\""));
        assert!(text_of(&html, "verdict").contains("Working, but needs attention"));
        assert_eq!(html.matches("not set up yet").count(), 2);
    }

    #[test]
    fn everything_from_the_status_is_escaped() {
        let mut s = fine();
        s.box_name = "<script>alert('x')</script>".into();
        s.software_version = "\"><b>".into();
        s.instances[0].state = "<img src=x>".into();
        s.backups.disk_present = false;
        s.backups.disk_problem = Some("<i>gone</i> & more".into());
        let html = render(&assessed(s), 10);
        assert!(!html.contains("<script"));
        assert!(!html.contains("<img") && !html.contains("<i>") && !html.contains("\"><b>"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("&lt;i&gt;gone&lt;/i&gt; &amp; more"));
        assert_eq!(
            text_of(&html, "box-name"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
    }
}
