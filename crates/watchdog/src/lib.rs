//! The box's supervisor: runs the EMR workers, probes them with SOAP `isAlive`, heals hung
//! ones, and answers `oscarbox status` on its control socket.
//!
//! - [`verdict`]: the pure per-worker state machine (fake-clock tested);
//! - [`worker`]: its executor (processes, probes, heal sequence);
//! - [`supervisor`]: the top level (workers, systemd, SIGHUP, memory guard);
//! - [`control`]: the control socket;
//! - [`hsperf`]: HotSpot's performance counters, to tell a GC pause from a hang.

pub mod control;
pub mod hsperf;
pub mod supervisor;
pub mod verdict;
pub mod worker;

pub use supervisor::run;
