//! `oscarbox status` and `oscarbox workers restart`: clients of the watchdog's control socket.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use oscarbox_watchdog_api::{to_line, Answer, Request, Status, VERSION};

fn ask(config: Option<&Path>, request: &Request) -> Result<Answer, ExitCode> {
    crate::service::ask(
        config,
        "watchdog",
        "oscarbox-watchdog",
        |c| &c.watchdog.control_socket,
        request,
    )
}

pub fn status(config: Option<&Path>, json: bool) -> ExitCode {
    match ask(config, &Request::Status) {
        Ok(Answer::Status(status)) => {
            let mut out = std::io::stdout().lock();
            if json {
                let _ = write!(out, "{}", to_line(&status));
            } else {
                let _ = write!(out, "{}", table(&status));
            }
            if status.version != VERSION {
                let _ = writeln!(
                    std::io::stderr(),
                    "note: the watchdog speaks control protocol {}, this oscarbox {VERSION}",
                    status.version
                );
            }
            ExitCode::SUCCESS
        }
        Ok(other) => unexpected(&other),
        Err(code) => code,
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

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// The people's view: one line per instance, the reason last so it can be long.
pub fn table(status: &Status) -> String {
    let healthy = status
        .workers
        .iter()
        .filter(|w| w.state == "healthy")
        .count();
    let mut s = format!(
        "OSCAR Box \"{}\": {healthy} of {} EMR instances healthy\n\n{:<9}{:<12}{:<9}{:<9}{:<10}{:<10}{:<9}{}\n",
        status.box_name,
        status.workers.len(),
        "INSTANCE",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "PROBE",
        "RSS",
        "WHY"
    );
    for w in &status.workers {
        let dash = || "-".to_owned();
        s.push_str(&format!(
            "{:<9}{:<12}{:<9}{:<9}{:<10}{:<10}{:<9}{}\n",
            w.instance,
            w.state,
            w.pid.map_or_else(dash, |p| p.to_string()),
            w.uptime_seconds.map_or_else(dash, human_duration),
            w.restarts,
            w.last_probe_ms.map_or_else(dash, |ms| format!("{ms:.1}ms")),
            w.rss_bytes
                .map_or_else(dash, |b| format!("{}MB", b / (1024 * 1024))),
            w.why
        ));
    }
    s
}
