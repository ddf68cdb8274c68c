//! The fleet file `oscarbox fleet status FILE` reads: the boxes a support provider watches,
//! with the address of each one's admin listener, its status token and its certificate
//! authority.
//!
//! ```toml
//! version = 1
//!
//! [[box]]
//! name = "clinic-a"
//! url = "https://clinic-a.example.org:9443"
//! token-file = "tokens/clinic-a"   # what `oscarbox status token` printed on that box
//! ca-file = "cas/clinic-a.crt"     # that box's /var/lib/oscarbox/tls/ca.crt
//! # address = "203.0.113.5"        # connect to this IP, and check the certificate for the url's name
//! ```
//!
//! Relative paths are relative to the fleet file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, ConfigErrors};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawFleet {
    pub version: Option<i64>,
    #[serde(rename = "box")]
    pub boxes: Vec<RawFleetBox>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawFleetBox {
    pub name: String,
    /// The admin listener, `https://HOST:PORT`.
    pub url: String,
    pub token_file: Option<String>,
    pub ca_file: Option<String>,
    /// The IP address to connect to when the url's name does not resolve to it (a box reached
    /// through a VPN, named by its own hostname): the certificate is still checked for the
    /// url's name, and the url's port is used.
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    pub boxes: Vec<FleetBox>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetBox {
    pub name: String,
    /// Without a trailing `/`.
    pub url: String,
    pub token: Option<String>,
    /// PEM of the authority the box's certificate is checked against, besides the system's.
    pub ca_pem: Option<Vec<u8>>,
    pub address: Option<std::net::IpAddr>,
}

/// Reads and validates the fleet file at `path`, reading each box's token and authority.
pub fn load(path: &Path) -> Result<Fleet, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(ConfigError {
            file: file.clone(),
            line: None,
            key: None,
            message: format!("cannot read the fleet file: {e}"),
        })
    })?;
    let raw: RawFleet = crate::from_toml(&file, &text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(raw, &file, &text, base)
}

fn validate(raw: RawFleet, file: &str, text: &str, base: &Path) -> Result<Fleet, ConfigErrors> {
    let mut errors = Vec::new();
    let mut err = |key: String, message: String| {
        errors.push(ConfigError {
            file: file.to_owned(),
            line: crate::typed::key_line(text, &key),
            key: Some(key),
            message,
        });
    };
    let RawFleet { version, boxes } = raw;
    if version != Some(1) {
        err(
            "version".into(),
            "expected `version = 1` at the top of the fleet file".into(),
        );
    }
    if boxes.is_empty() {
        err(
            "box".into(),
            "no boxes: add a [[box]] table with name, url and token-file for each box".into(),
        );
    }
    let read = |p: &str| -> Result<Vec<u8>, String> {
        let full: PathBuf = base.join(p);
        std::fs::read(&full).map_err(|e| format!("cannot read {}: {e}", full.display()))
    };
    let mut fleet = Vec::new();
    for (i, b) in boxes.into_iter().enumerate() {
        let RawFleetBox {
            name,
            url,
            token_file,
            ca_file,
            address,
        } = b;
        let address = match address {
            None => None,
            Some(a) => match a.parse() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    err(
                        format!("box[{i}].address"),
                        format!("expected an IP address such as \"203.0.113.5\" (the url gives the port), found {a:?}"),
                    );
                    None
                }
            },
        };
        if name.trim().is_empty() {
            err(
                format!("box[{i}].name"),
                "expected a name for this box".into(),
            );
        } else if fleet.iter().any(|f: &FleetBox| f.name == name) {
            err(
                format!("box[{i}].name"),
                format!("{name:?} is listed twice; give each box its own name"),
            );
        }
        let authority = url
            .strip_prefix("https://")
            .unwrap_or("")
            .trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#']) {
            err(
                format!("box[{i}].url"),
                format!("expected the box's admin listener as https://HOST:PORT, found {url:?}"),
            );
        }
        let token = match token_file.as_deref().map(read) {
            None => None,
            Some(Ok(t)) if !String::from_utf8_lossy(&t).trim().is_empty() => {
                Some(String::from_utf8_lossy(&t).trim().to_owned())
            }
            Some(Ok(_)) => {
                err(
                    format!("box[{i}].token-file"),
                    "the file is empty; put what `oscarbox status token` prints on that box in it"
                        .into(),
                );
                None
            }
            Some(Err(e)) => {
                err(format!("box[{i}].token-file"), e);
                None
            }
        };
        let ca_pem = match ca_file.as_deref().map(read) {
            None => None,
            Some(Ok(pem)) => Some(pem),
            Some(Err(e)) => {
                err(format!("box[{i}].ca-file"), e);
                None
            }
        };
        fleet.push(FleetBox {
            name,
            url: url.trim_end_matches('/').to_owned(),
            token,
            ca_pem,
            address,
        });
    }
    if errors.is_empty() {
        Ok(Fleet { boxes: fleet })
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_file_is_read_with_its_tokens_and_every_mistake_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.token"), "abc\n").expect("write");
        let good = dir.path().join("fleet.toml");
        std::fs::write(
            &good,
            "version = 1\n[[box]]\nname = \"a\"\nurl = \"https://a.example:9443/\"\ntoken-file = \"a.token\"\n",
        )
        .expect("write");
        let fleet = load(&good).expect("valid");
        assert_eq!(fleet.boxes[0].url, "https://a.example:9443");
        assert_eq!(fleet.boxes[0].token.as_deref(), Some("abc"));

        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "version = 1\n[[box]]\nname = \"a\"\nurl = \"http://a:9443\"\n[[box]]\nname = \"a\"\nurl = \"https://b:9443\"\ntoken-file = \"missing\"\n",
        )
        .expect("write");
        let e = load(&bad).expect_err("invalid").to_string();
        assert!(
            e.contains("bad.toml:4: box[0].url: expected the box's admin listener"),
            "{e}"
        );
        assert!(e.contains("box[1].name: \"a\" is listed twice"), "{e}");
        assert!(e.contains("box[1].token-file: cannot read"), "{e}");

        std::fs::write(
            &bad,
            "version = 1\n[[box]]\nname = \"a\"\nurl = \"https://a:9443\"\naddress = \"10.0.0.5:9443\"\n",
        )
        .expect("write");
        let e = load(&bad).expect_err("invalid").to_string();
        assert!(
            e.contains("bad.toml:5: box[0].address: expected an IP address"),
            "{e}"
        );

        std::fs::write(&bad, "version = 1\n[[box]]\nname = \"a\"\nurl = 5\n").expect("write");
        let e = load(&bad).expect_err("invalid").to_string();
        assert!(e.contains("bad.toml:4"), "{e}");
    }
}
