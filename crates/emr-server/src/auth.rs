//! Passwords, SOAP security tokens and account lockout.
//!
//! New passwords are stored as Argon2id PHC strings. Two older forms are accepted so that an
//! imported database keeps its logins, and upgraded at the next successful sign-in: OSCAR's
//! SHA-1 "signed decimal" form (reference §1.5) and Open-O's `{bcrypt}` form.

use std::sync::LazyLock;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Each Argon2 computation holds about 19 MiB. Without a bound, a burst of sign-ins (even for
/// unknown users) could take gigabytes and invite the OOM killer to the database next door.
static HASHING: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    tokio::sync::Semaphore::new(cores * 2)
});

/// How long a sign-in waits for a hashing slot before it is refused as busy.
const HASHING_WAIT: Duration = Duration::from_secs(10);

/// Every hashing slot stayed taken for [`HASHING_WAIT`].
#[derive(Debug, thiserror::Error)]
#[error("too many sign-ins at once: no password hashing slot within {HASHING_WAIT:?}")]
pub struct Busy;

/// Runs CPU- and memory-heavy password work off the async path, a bounded number at a time.
pub async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
    let permit = tokio::time::timeout(HASHING_WAIT, HASHING.acquire())
        .await
        .map_err(|_| Busy)?
        .expect("the hashing semaphore is never closed");
    let out = tokio::task::spawn_blocking(f)
        .await
        .expect("password hashing does not panic");
    drop(permit);
    Ok(out)
}

/// Which stored form a password hash is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Argon2,
    /// Open-O's Spring `DelegatingPasswordEncoder` bcrypt.
    Bcrypt,
    /// OSCAR 19's unsalted SHA-1, bytes printed as signed decimals.
    LegacySha1,
}

impl HashKind {
    pub fn of(stored: &str) -> HashKind {
        if stored.starts_with("$argon2") {
            HashKind::Argon2
        } else if stored.starts_with("{bcrypt}") {
            HashKind::Bcrypt
        } else {
            HashKind::LegacySha1
        }
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The stored hash is an older form and should be replaced now that the password is known.
    pub needs_upgrade: bool,
}

/// Hashes a new password with Argon2id and a random salt. CPU-heavy: call off the async path.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters hashes any input")
        .to_string()
}

/// OSCAR's legacy form: SHA-1 of the UTF-8 password, each byte as a signed decimal.
pub fn legacy_sha1(password: &str) -> String {
    Sha1::digest(password.as_bytes())
        .iter()
        .map(|&b| (b as i8).to_string())
        .collect()
}

/// Checks `password` against `stored`. CPU-heavy: call off the async path.
pub fn verify_password(stored: &str, password: &str) -> Verified {
    match HashKind::of(stored) {
        HashKind::Argon2 => Verified {
            ok: PasswordHash::new(stored).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            }),
            needs_upgrade: false,
        },
        HashKind::Bcrypt => Verified {
            ok: bcrypt::verify(password, &stored["{bcrypt}".len()..]).unwrap_or(false),
            needs_upgrade: true,
        },
        HashKind::LegacySha1 => Verified {
            ok: !stored.is_empty()
                && bool::from(legacy_sha1(password).as_bytes().ct_eq(stored.as_bytes())),
            needs_upgrade: true,
        },
    }
}

/// Checks a PIN. OSCAR 19 stores PINs as plain text (imported databases keep them so); ours
/// are Argon2id. An account without a PIN needs none. CPU-heavy for hashed PINs: call off the
/// async path.
pub fn verify_pin(stored: &str, given: &str) -> bool {
    if stored.is_empty() {
        return true;
    }
    if HashKind::of(stored) == HashKind::Argon2 {
        return verify_password(stored, given).ok;
    }
    bool::from(stored.as_bytes().ct_eq(given.as_bytes()))
}

/// OSCAR's SOAP token: a server epoch plus a deterministic "mangle" of the stored password
/// hash, so that every login returns the same token until the epoch or the password changes.
/// Clients only echo it back, but the arithmetic follows OSCAR's `WsUtils` (Java `long`, so
/// wrapping) so that tokens look like the ones integrators have seen.
pub fn security_token(epoch_ms: i64, stored_hash: &str) -> String {
    let mut result: i64 = 0;
    let mut power: u32 = 0;
    for c in stored_hash.encode_utf16() {
        result = result.wrapping_add(i64::from(c).wrapping_mul(100_i64.wrapping_pow(power)));
        power = (power + 1) % 6;
    }
    epoch_ms.wrapping_add(result).to_string()
}

/// Failed sign-ins recorded for one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureState {
    pub failures: u32,
    /// Seconds since the Unix epoch, on the database's clock (shared by all instances).
    pub first_failure: i64,
    pub locked_until: Option<i64>,
}

/// Lockout policy: `max_failures` within `window` lock the account for `window`.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub window: Duration,
}

impl LockoutPolicy {
    /// Whether the account is locked at `now`.
    pub fn is_locked(&self, state: Option<&FailureState>, now: i64) -> bool {
        state
            .and_then(|s| s.locked_until)
            .is_some_and(|until| now < until)
    }

    /// The state after one more failure at `now`.
    pub fn after_failure(&self, prev: Option<&FailureState>, now: i64) -> FailureState {
        let window = i64::try_from(self.window.as_secs()).unwrap_or(i64::MAX);
        let fresh = FailureState {
            failures: 1,
            first_failure: now,
            locked_until: None,
        };
        let mut next = match prev {
            // Failures older than the window are forgotten, as is an expired lock.
            Some(p) if now.saturating_sub(p.first_failure) < window && !self.expired(p, now) => {
                FailureState {
                    failures: p.failures.saturating_add(1),
                    ..*p
                }
            }
            _ => fresh,
        };
        if next.failures >= self.max_failures && next.locked_until.is_none() {
            next.locked_until = Some(now.saturating_add(window));
        }
        next
    }

    fn expired(&self, s: &FailureState, now: i64) -> bool {
        s.locked_until.is_some_and(|until| now >= until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn legacy_hash_matches_oscars_default_row() {
        // oscardata.sql's row for oscardoc / mac2002 (reference §1.5).
        assert_eq!(
            legacy_sha1("mac2002"),
            "-51-282443-97-5-9410489-60-1021-45-127-12435464-32"
        );
        let v = verify_password(
            "-51-282443-97-5-9410489-60-1021-45-127-12435464-32",
            "mac2002",
        );
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_upgrade: true
            }
        );
        assert!(
            !verify_password(
                "-51-282443-97-5-9410489-60-1021-45-127-12435464-32",
                "mac2003"
            )
            .ok
        );
        assert!(
            !verify_password("", "").ok,
            "an empty stored hash never matches"
        );
    }

    #[test]
    fn argon2_round_trip_and_bcrypt_import() {
        let h = hash_password("correct horse");
        assert_eq!(HashKind::of(&h), HashKind::Argon2);
        assert_eq!(
            verify_password(&h, "correct horse"),
            Verified {
                ok: true,
                needs_upgrade: false
            }
        );
        assert!(!verify_password(&h, "wrong").ok);
        let b = format!(
            "{{bcrypt}}{}",
            bcrypt::hash("pw", 4).expect("bcrypt hashes")
        );
        assert_eq!(
            verify_password(&b, "pw"),
            Verified {
                ok: true,
                needs_upgrade: true
            }
        );
        assert!(!verify_password(&b, "px").ok);
    }

    #[test]
    fn token_is_stable_per_password_and_epoch() {
        let a = security_token(1_700_000_000_000, "-51-28");
        assert_eq!(a, security_token(1_700_000_000_000, "-51-28"));
        assert_ne!(a, security_token(1_700_000_000_001, "-51-28"));
        assert_ne!(a, security_token(1_700_000_000_000, "-51-29"));
        // '-' is 45, '5' is 53 times 100, '1' is 49 times 10^4, ...
        assert_eq!(
            security_token(0, "-51"),
            (45 + 53 * 100 + 49 * 10_000).to_string()
        );
    }

    const POLICY: LockoutPolicy = LockoutPolicy {
        max_failures: 3,
        window: Duration::from_secs(600),
    };

    #[test]
    fn locks_after_max_failures_and_unlocks_after_the_window() {
        let s1 = POLICY.after_failure(None, 1000);
        let s2 = POLICY.after_failure(Some(&s1), 1001);
        assert!(!POLICY.is_locked(Some(&s2), 1002));
        let s3 = POLICY.after_failure(Some(&s2), 1002);
        assert!(POLICY.is_locked(Some(&s3), 1003));
        assert!(POLICY.is_locked(Some(&s3), 1601));
        assert!(!POLICY.is_locked(Some(&s3), 1602));
        // After the lock expires a failure starts a new count.
        let s4 = POLICY.after_failure(Some(&s3), 1700);
        assert_eq!(s4.failures, 1);
        assert!(!POLICY.is_locked(Some(&s4), 1700));
    }

    proptest! {
        #[test]
        fn fewer_than_max_failures_never_lock(times in proptest::collection::vec(0i64..100_000, 0..3)) {
            let mut times = times;
            times.sort_unstable();
            let mut state = None;
            for t in &times {
                state = Some(POLICY.after_failure(state.as_ref(), *t));
            }
            prop_assert!(!POLICY.is_locked(state.as_ref(), times.last().copied().unwrap_or(0)));
        }

        #[test]
        fn max_failures_inside_the_window_always_lock(start in 0i64..1_000_000, gaps in proptest::collection::vec(0i64..200, 2)) {
            let mut t = start;
            let mut state = Some(POLICY.after_failure(None, t));
            for g in gaps {
                t += g;
                state = Some(POLICY.after_failure(state.as_ref(), t));
            }
            prop_assert!(POLICY.is_locked(state.as_ref(), t));
        }
    }
}
