//! Child processes the way the box runs them.
//!
//! Every child gets its own process group, so that a signal reaches the whole tree (a JVM's
//! helpers, a shell's children), and a parent-death signal, so that nothing outlives the
//! process that started it, even when that process is killed with SIGKILL. Stopping is
//! SIGTERM to the group, a grace period, then SIGKILL to the group.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// What to do with a child's stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Share the parent's (a foreground `oscarbox up` shows everything on the terminal).
    Inherit,
    /// Hand pipes to the caller, which must read them.
    Piped,
    /// Discard.
    Null,
}

/// A command line to run as a supervised child.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Short name for logs, e.g. `emr-1` or `mariadb-db1`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub current_dir: Option<PathBuf>,
    pub output: Output,
}

impl ChildSpec {
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        ChildSpec {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            output: Output::Inherit,
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }
}

/// A running child, leader of its own process group.
#[derive(Debug)]
pub struct Child {
    pub name: String,
    inner: tokio::process::Child,
    pgid: Pid,
}

impl Child {
    /// Starts `spec`. Call it from a runtime worker thread, not from `spawn_blocking`: the
    /// parent-death signal fires when the *thread* that forked exits, and blocking-pool threads
    /// exit when idle.
    pub fn spawn(spec: &ChildSpec) -> std::io::Result<Child> {
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        if let Some(dir) = &spec.current_dir {
            cmd.current_dir(dir);
        }
        let (out, err) = match spec.output {
            Output::Inherit => (Stdio::inherit(), Stdio::inherit()),
            Output::Piped => (Stdio::piped(), Stdio::piped()),
            Output::Null => (Stdio::null(), Stdio::null()),
        };
        cmd.stdout(out).stderr(err);
        set_parent_death_signal(&mut cmd);
        let inner = cmd.spawn()?;
        let pid = inner
            .id()
            .expect("a child that was just spawned has not been reaped");
        let pgid = Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"));
        Ok(Child {
            name: spec.name.clone(),
            inner,
            pgid,
        })
    }

    /// The child's pid, which is also its process group id.
    pub fn pid(&self) -> i32 {
        self.pgid.as_raw()
    }

    pub fn stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.inner.stdout.take()
    }

    pub fn stderr(&mut self) -> Option<tokio::process::ChildStderr> {
        self.inner.stderr.take()
    }

    /// Sends `signal` to the child's whole process group.
    pub fn signal_group(&self, signal: Signal) -> nix::Result<()> {
        match killpg(self.pgid, signal) {
            // The group is already gone: nothing left to signal.
            Err(nix::errno::Errno::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// Whether the child has exited, without waiting.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.inner.try_wait()
    }

    /// Waits for the child to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.inner.wait().await
    }

    /// SIGTERM to the group, up to `grace` for the child to exit, then SIGKILL to the group.
    /// Returns the exit status and whether SIGKILL was needed.
    pub async fn terminate(&mut self, grace: Duration) -> std::io::Result<(ExitStatus, bool)> {
        if let Some(status) = self.inner.try_wait()? {
            // The leader is gone; make sure nothing it left in its group survives.
            let _ = self.signal_group(Signal::SIGKILL);
            return Ok((status, false));
        }
        let _ = self.signal_group(Signal::SIGTERM);
        match tokio::time::timeout(grace, self.inner.wait()).await {
            Ok(status) => {
                let _ = self.signal_group(Signal::SIGKILL);
                Ok((status?, false))
            }
            Err(_) => {
                tracing::warn!(child = %self.name, grace = ?grace, "did not exit after SIGTERM; sending SIGKILL");
                let _ = self.signal_group(Signal::SIGKILL);
                Ok((self.inner.wait().await?, true))
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // A dropped handle must not leave a process behind: kill the group, then reap the
        // leader if it is already gone so that no zombie lingers.
        if matches!(self.inner.try_wait(), Ok(None)) {
            let _ = self.signal_group(Signal::SIGKILL);
            let _ = self.inner.start_kill();
        }
    }
}

/// Asks the kernel to SIGKILL the child when the thread that spawned it dies.
#[expect(unsafe_code)]
fn set_parent_death_signal(cmd: &mut tokio::process::Command) {
    // Read before the fork: inside the child, a parent pid other than this one means the
    // parent died before prctl took effect (the child was reparented, to init or a subreaper),
    // and then no signal will ever come.
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and calls only prctl(2) and getppid(2),
    // both async-signal-safe; it allocates nothing (the error is a plain errno) and takes no
    // locks.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn terminate_reaches_the_whole_group() {
        // A shell that starts a grandchild, then ignores SIGTERM: only SIGKILL to the group
        // ends both.
        let spec = ChildSpec::new("stubborn", "/bin/sh")
            .args(["-c", "trap '' TERM; sleep 300 & echo $!; wait"])
            .output(Output::Piped);
        let mut child = Child::spawn(&spec).expect("spawn sh");
        let mut out = child.stdout().expect("piped stdout");
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(&mut out), &mut line)
            .await
            .expect("read grandchild pid");
        let grandchild: i32 = line.trim().parse().expect("a pid");
        let (_, killed) = child
            .terminate(Duration::from_millis(300))
            .await
            .expect("terminate");
        assert!(killed, "the shell ignores SIGTERM, so SIGKILL was needed");
        // The grandchild was in the same group, so it is gone too (or a zombie of init).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "grandchild survives: {stat}"
        );
    }
}
