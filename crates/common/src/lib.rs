//! What every OSCAR Box binary shares: argument and configuration loading with the exit code
//! for usage errors, logging setup, the shutdown signal, writing secrets to disk, and escaping
//! text for the HTML pages the box serves.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Exit status for a bad command line or configuration (`EX_USAGE` from sysexits.h).
pub const EX_USAGE: u8 = 64;

/// Escapes text for an HTML element's content or a quoted attribute value.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A directory is a mount point when it is on another device than its parent, or is its
/// parent (the root). Bind mounts of a directory on the same device are not seen, which is
/// right for the backup disk: it must be another device.
pub fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(canonical) = std::fs::canonicalize(path) else {
        return false;
    };
    let parent = canonical.parent().unwrap_or(&canonical);
    match (std::fs::metadata(&canonical), std::fs::metadata(parent)) {
        (Ok(me), Ok(up)) => me.dev() != up.dev() || me.ino() == up.ino(),
        _ => false,
    }
}

/// The file system holding `path`: (bytes available to a writer, usable size), `None` when it
/// cannot be asked. The size is what a writer other than root can fill: the blocks in use plus
/// those still available, without root's reserve. So "used" is what `df` shows, and 100 %
/// means full for the box's services, which do not run as root.
pub fn space(path: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    // statvfs's field types differ between platforms; on 64-bit Linux all are u64 already.
    let (fragment, blocks, free, available) = (
        st.fragment_size(),
        st.blocks(),
        st.blocks_free(),
        st.blocks_available(),
    );
    let used = blocks.saturating_sub(free);
    Some((
        available.saturating_mul(fragment),
        used.saturating_add(available).saturating_mul(fragment),
    ))
}

/// Writes `contents` to `path` for this user only, durably: the directory is created with mode
/// 0700, the file written beside it with mode 0600 and fsynced, then renamed into place and
/// the directory fsynced, so that a crash leaves the old file or the new one, never half.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A stale temporary file keeps its old mode; this one must be private whatever it was.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Parses the command line; on a usage error prints it and gives exit status 64, on `--help` or
/// `--version` prints them and gives 0.
pub fn parse_args<T: clap::Parser>() -> Result<T, ExitCode> {
    T::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(EX_USAGE)
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// Loads `--config` (or the embedded development default); on any error prints every problem
/// and gives exit status 64.
pub fn load_config(path: Option<&Path>) -> Result<oscarbox_config::Config, ExitCode> {
    oscarbox_config::load_or_default(path).map_err(|errors| {
        let _ = writeln!(std::io::stderr(), "{errors}");
        ExitCode::from(EX_USAGE)
    })
}

/// Starts logging at `log_level` and builds the multi-threaded runtime every binary runs on;
/// a failure is logged and becomes the exit status.
pub fn start_runtime(log_level: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    init_logging(log_level);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::error!("failed to build the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Logs to stderr, filtered by `RUST_LOG` when set, else by `default_filter` (the config's
/// `box.log-level`). Colours only on a terminal, so that captured logs stay greppable.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default_filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Cancels `token` on the first SIGTERM or SIGINT. A second one exits at once with status 130:
/// the way out when a graceful stop is itself stuck.
pub fn cancel_on_signals(token: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let mut seen = false;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if seen {
                tracing::warn!(signal = name, "second stop signal: exiting at once");
                std::process::exit(130);
            }
            seen = true;
            tracing::info!(signal = name, "stopping");
            token.cancel();
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_a_mount_point_and_a_plain_directory_is_not() {
        assert!(is_mount_point(Path::new("/")));
        let dir = tempfile::tempdir().expect("temp dir");
        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).expect("mkdir");
        assert!(!is_mount_point(&plain));
        assert!(!is_mount_point(&dir.path().join("missing")));
    }

    #[test]
    fn html_escapes_markup_and_both_quotes() {
        assert_eq!(
            escape_html(r#"<a href="x">O'Neil & co</a>"#),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;"
        );
        assert_eq!(escape_html("plain é"), "plain é");
    }
}
