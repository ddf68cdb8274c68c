//! Generated secrets, kept in files of mode 0600 and written durably.

use std::path::Path;

use rand::distr::{Alphanumeric, SampleString as _};

/// Reads the secret in `path`, or generates a 32-character one and writes it there first
/// (mode 0600, durably: [`oscarbox_common::write_private`]).
pub fn ensure(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
    oscarbox_common::write_private(path, format!("{secret}\n").as_bytes())?;
    Ok(secret)
}
