//! `oscarbox db status [--json]` and `oscarbox db switchover`: clients of the database pair's
//! control socket.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use oscarbox_watchdog_api::db::{DbAnswer, DbPairStatus, DbRequest};
use oscarbox_watchdog_api::to_line;

fn ask(config: Option<&Path>, request: &DbRequest) -> Result<DbAnswer, ExitCode> {
    crate::service::ask(
        config,
        "database pair",
        "oscarbox-watchdog",
        |c| &c.database.control_socket,
        request,
    )
}

/// The pair in a few lines: each node's role and state, positions, lag, semi-sync, the epoch,
/// where the endpoint points, the last plan and incident.
pub fn table(s: &DbPairStatus) -> String {
    let mut out = format!(
        "database pair: epoch {}, primary node {}, endpoint on {}\n",
        s.epoch,
        s.primary,
        s.endpoint_target.as_deref().unwrap_or("nothing")
    );
    for n in &s.nodes {
        let mut facts = vec![
            format!("{} ({}, {})", n.role, n.name, n.address),
            n.state.clone(),
        ];
        if let Some(w) = n.writable {
            facts.push(if w {
                "writable".into()
            } else {
                "read-only".into()
            });
        }
        if let Some(r) = n.replicating {
            facts.push(if r {
                "replicating".into()
            } else {
                "not replicating".into()
            });
        }
        if let Some(l) = n.lag_seconds {
            facts.push(format!("{l:.1}s behind"));
        }
        if n.semi_sync_master == Some(true) {
            facts.push(match n.semi_sync_active {
                Some(true) => "semi-sync on".into(),
                _ => "semi-sync fell back to async".into(),
            });
        }
        if let Some(p) = &n.gtid_current_pos {
            facts.push(format!("at {}", if p.is_empty() { "(empty)" } else { p }));
        }
        if let Some(d) = &n.detail {
            facts.push(d.clone());
        }
        let _ = writeln!(out, "  node {}: {}", n.id, facts.join(", "));
    }
    if let Some(f) = &s.last_failover {
        let mut facts = vec![format!("epoch {}, {} to {}", f.epoch, f.from, f.to)];
        if let Some(secs) = f.seconds_to_recover {
            facts.push(format!("writes resumed within {secs:.1} s"));
        }
        facts.push(match f.transactions_lost {
            Some(0) => "nothing lost".to_owned(),
            Some(n) => format!("{n} transactions of the old primary saved for review"),
            None => "what was lost is known when the old primary is back".to_owned(),
        });
        let _ = writeln!(out, "last failover: {} ({})", facts.join(", "), f.report);
    }
    if let Some(p) = &s.last_plan {
        let _ = writeln!(out, "last action: {}", p.lines().next().unwrap_or_default());
    }
    out
}

pub fn status(config: Option<&Path>, json: bool) -> ExitCode {
    let answer = match ask(config, &DbRequest::Status) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut out = std::io::stdout().lock();
    match answer {
        DbAnswer::Status(s) => {
            let _ = if json {
                writeln!(out, "{}", to_line(&s).trim_end())
            } else {
                write!(out, "{}", table(&s))
            };
            ExitCode::SUCCESS
        }
        other => unexpected(&other),
    }
}

pub fn switchover(config: Option<&Path>) -> ExitCode {
    match ask(config, &DbRequest::Switchover) {
        Ok(DbAnswer::Switched {
            plan,
            write_block_ms,
        }) => {
            let _ = writeln!(
                std::io::stdout(),
                "switched over; writes were blocked for {write_block_ms} ms\n{plan}"
            );
            ExitCode::SUCCESS
        }
        Ok(DbAnswer::Refused { message }) => {
            let _ = writeln!(
                std::io::stderr(),
                "switchover refused, nothing changed: {message}"
            );
            ExitCode::from(2)
        }
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

fn unexpected(answer: &DbAnswer) -> ExitCode {
    let message = match answer {
        DbAnswer::Error { message } => message.clone(),
        other => format!("unexpected answer: {}", to_line(other).trim_end()),
    };
    let _ = writeln!(std::io::stderr(), "{message}");
    ExitCode::FAILURE
}
