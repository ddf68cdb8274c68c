//! `oscarbox status [token]` and `oscarbox workers restart`: clients of the watchdog's control
//! socket.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use oscarbox_status::assess;
use oscarbox_watchdog::control::{self, AskError};
use oscarbox_watchdog_api::{to_line, Answer, BoxStatus, Request, Space, Verdict, VERSION};

fn ask(config: Option<&Path>, request: &Request) -> Result<Answer, ExitCode> {
    crate::service::ask(
        config,
        "watchdog",
        "oscarbox-watchdog",
        |c| &c.watchdog.control_socket,
        request,
    )
}

/// `oscarbox status`: the watchdog's box status, or, when the watchdog is not running, what
/// can be gathered here (with the watchdog's absence as the first reason). Exit 0 when the box
/// is ok, 1 when degraded, 2 when critical, so scripts and monitoring agents can use it.
pub fn status(config_path: Option<&Path>, json: bool) -> ExitCode {
    let config = match oscarbox_common::load_config(config_path) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    let status = runtime.block_on(async {
        let socket = &config.watchdog.control_socket;
        let workers = match control::ask(socket, &Request::BoxStatus).await {
            Ok(Answer::BoxStatus(s)) => return Ok(*s),
            // A watchdog whose status service failed to start still knows its instances.
            Ok(_) => match control::ask(socket, &Request::Status).await {
                Ok(Answer::Status(s)) => Some(s.workers),
                _ => None,
            },
            Err(AskError::Unreachable { cause, .. })
                if cause.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                return Err(format!(
                    "cannot read the watchdog's control socket {}: permission denied; run `sudo oscarbox status`",
                    socket.display()
                ));
            }
            Err(e @ AskError::Unreachable { .. }) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "note: the watchdog does not answer ({e}); showing what this command can see"
                );
                None
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut gatherer = oscarbox_status::gather::Gatherer::default();
        Ok(gatherer.gather(&config, workers).await)
    });
    let status = match status {
        Ok(s) => s,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "{message}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = if json {
        write!(out, "{}", to_line(&status))
    } else {
        write!(out, "{}", table(&status))
    };
    if status.version != VERSION {
        let _ = writeln!(
            std::io::stderr(),
            "note: the watchdog speaks control protocol {}, this oscarbox {VERSION}",
            status.version
        );
    }
    ExitCode::from(match status.verdict {
        Verdict::Ok => 0,
        Verdict::Degraded => 1,
        Verdict::Critical => 2,
    })
}

/// `oscarbox status token`: the bearer token the admin listener wants from clients that are
/// not on the box itself (a provider's Prometheus, `oscarbox fleet status`).
pub fn token(config_path: Option<&Path>) -> ExitCode {
    let config = match oscarbox_common::load_config(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match std::fs::read_to_string(&config.status.token_file) {
        Ok(t) => {
            let _ = writeln!(std::io::stdout(), "{}", t.trim());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "cannot read the status token {}: {e}; the watchdog makes it when it first starts (run as the box's user, or with sudo)",
                config.status.token_file.display()
            );
            ExitCode::FAILURE
        }
    }
}

pub fn restart_workers(config: Option<&Path>) -> ExitCode {
    match ask(config, &Request::RestartWorkers) {
        Ok(Answer::Restarted { restarted }) => {
            let _ = writeln!(
                std::io::stdout(),
                "restarted instances {restarted:?}, one at a time; all healthy"
            );
            ExitCode::SUCCESS
        }
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

fn unexpected(answer: &Answer) -> ExitCode {
    let message = match answer {
        Answer::Error { message } => message.clone(),
        other => format!("unexpected answer {other:?}"),
    };
    let _ = writeln!(std::io::stderr(), "the watchdog refused: {message}");
    ExitCode::FAILURE
}

fn space_line(space: Option<&Space>) -> String {
    space.map_or_else(
        || "size unknown".to_owned(),
        |s| {
            format!(
                "{} used, {} free of {}",
                assess::percent(s.used_percent()),
                assess::bytes(s.available_bytes),
                assess::bytes(s.total_bytes)
            )
        },
    )
}

/// The people's view: the verdict and its reasons first, then one section per part of the box.
pub fn table(status: &BoxStatus) -> String {
    let healthy = status
        .instances
        .iter()
        .filter(|w| w.state == "healthy")
        .count();
    let mut s = format!(
        "OSCAR Box \"{}\": {}: {healthy} of {} EMR instances healthy\nchecked {} (oscarbox {})\n",
        status.box_name,
        status.verdict.as_str().to_uppercase(),
        status.instances.len(),
        oscarbox_status::health::rfc3339(status.checked_at),
        status.software_version,
    );
    if !status.reasons.is_empty() {
        s.push_str("\nWhat needs attention:\n");
        for r in &status.reasons {
            s.push_str(&format!(
                "  [{}] {}\n      what to do: {}\n",
                r.severity.as_str(),
                r.what,
                r.todo
            ));
        }
    }
    if !status.watchdog_running {
        s.push_str("\nThe watchdog is not running: the EMR instances are not supervised.\n");
    }
    s.push_str(&format!(
        "\n{:<9}{:<12}{:<9}{:<9}{:<10}{:<10}{:<9}{}\n",
        "INSTANCE", "STATE", "PID", "UPTIME", "RESTARTS", "PROBE", "RSS", "WHY"
    ));
    for w in &status.instances {
        let dash = || "-".to_owned();
        s.push_str(&format!(
            "{:<9}{:<12}{:<9}{:<9}{:<10}{:<10}{:<9}{}\n",
            w.instance,
            w.state,
            w.pid.map_or_else(dash, |p| p.to_string()),
            w.uptime_seconds.map_or_else(dash, assess::duration),
            w.restarts,
            w.last_probe_ms.map_or_else(dash, |ms| format!("{ms:.1}ms")),
            w.rss_bytes
                .map_or_else(dash, |b| format!("{}MB", b / (1024 * 1024))),
            w.why
        ));
    }
    let p = &status.proxy;
    let proxy = if p.reachable {
        format!(
            "running, {} of {} instances in service",
            p.backends_up, p.backends
        )
    } else {
        "not answering on its admin socket".to_owned()
    };
    let d = &status.database;
    let mut database = d.summary().to_owned();
    for n in &d.nodes {
        if let Some(role) = &n.role {
            database.push_str(&format!("; {} {role}", n.name));
        }
        if let Some(lag) = n.lag_seconds {
            database.push_str(&format!(" (lag {lag:.1}s)"));
        }
    }
    let b = &status.backups;
    let backup_disk = match &b.disk_problem {
        Some(problem) => format!("MISSING: {problem}"),
        None => space_line(b.disk.as_ref()),
    };
    let age = |a: Option<u64>| {
        a.map_or_else(
            || "none yet".to_owned(),
            |a| format!("{} ago", assess::duration(a)),
        )
    };
    let sys = &status.system;
    let tls = status.tls.as_ref().map_or_else(
        || "certificate unreadable".to_owned(),
        |t| {
            format!(
                "certificate valid until {} ({} days left)",
                oscarbox_status::health::rfc3339(t.not_after),
                t.days_left(status.checked_at)
            )
        },
    );
    for (name, line) in [
        ("Proxy", proxy),
        ("Database", database),
        ("Backup disk", backup_disk),
        (
            "Backups",
            format!(
                "database {}, documents {}",
                age(b.newest_database_age_seconds),
                age(b.newest_documents_age_seconds)
            ),
        ),
        ("System disk", space_line(sys.disk.as_ref())),
        (
            "Memory",
            format!(
                "{} available of {}",
                assess::bytes(sys.memory_available_bytes),
                assess::bytes(sys.memory_total_bytes)
            ),
        ),
        (
            "CPU",
            format!(
                "{:.0}% of {} cores; load {:.2} {:.2} {:.2}",
                sys.cpu_usage_percent,
                sys.cpus,
                sys.load_average[0],
                sys.load_average[1],
                sys.load_average[2]
            ),
        ),
        ("TLS", tls),
    ] {
        s.push_str(&format!("{name:<13}{line}\n"));
    }
    s
}
