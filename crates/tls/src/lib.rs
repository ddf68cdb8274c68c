//! The box's TLS, shared by the proxy and the admin listener: the certificate named in the
//! config, or one generated on first start and kept; rustls offering TLS 1.3 and 1.2 only, with
//! AEAD suites only.
//!
//! The generated pair is a small local certificate authority (`tls/ca.crt`, the file a
//! technician installs in the clinic's browsers once) and a server certificate it signs. A
//! lone self-signed server certificate would do for OpenSSL clients, but WebPKI clients (rustls,
//! browsers' own verifiers) refuse a certificate that is its own trust anchor. The server
//! certificate is valid for 397 days (what browsers accept) and reissued from the same
//! authority well before it ends, or when the machine's name changes, so clients that trust
//! `ca.crt` keep trusting the box.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const LEAF_DAYS: i64 = 397;
/// Reissue the server certificate once its file is this old.
const REISSUE_AFTER: Duration = Duration::from_secs(360 * 24 * 3600);

/// Where the generated certificate lives.
#[derive(Debug, Clone)]
pub struct Generated {
    pub dir: PathBuf,
}

impl Generated {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("proxy.crt")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("proxy.key")
    }
    fn names(&self) -> PathBuf {
        self.dir.join("proxy.names")
    }
}

/// The box's rustls server configuration (ALPN h2 and http/1.1): `proxy.tls-cert-file` and
/// `proxy.tls-key-file` when set, else the generated pair in the state directory.
pub fn for_box(config: &oscarbox_config::Config) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let p = &config.proxy;
    let files = p.tls_cert_file.as_deref().zip(p.tls_key_file.as_deref());
    // The addresses the box is reached at beyond its names: the proxy's and the admin
    // listener's, when they are specific.
    let mut extra: Vec<String> = Vec::new();
    for ip in [p.listen_address, config.status.listen.ip()] {
        if !ip.is_unspecified() && !ip.is_loopback() && !extra.contains(&ip.to_string()) {
            extra.push(ip.to_string());
        }
    }
    server_config(files, &generated(config), &extra)
}

/// Where the box keeps its generated certificate.
pub fn generated(config: &oscarbox_config::Config) -> Generated {
    Generated {
        dir: oscarbox_config::ProxyConfig::tls_dir(&config.box_.state_dir),
    }
}

/// The end of validity of the first certificate in the PEM file at `path`, in seconds since
/// the Unix epoch: what the status reports as the certificate's expiry.
pub fn not_after(path: &Path) -> anyhow::Result<u64> {
    let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .with_context(|| format!("{} holds no PEM certificate", path.display()))?
        .with_context(|| format!("parse the PEM in {}", path.display()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .with_context(|| format!("parse the certificate in {}", path.display()))?;
    u64::try_from(cert.validity().not_after.timestamp())
        .with_context(|| format!("{} ends before 1970", path.display()))
}

/// The certificate file clients are shown: the configured one, or the generated one.
pub fn served_cert(config: &oscarbox_config::Config) -> PathBuf {
    config
        .proxy
        .tls_cert_file
        .clone()
        .unwrap_or_else(|| generated(config).cert())
}

/// The rustls server configuration: from `cert`/`key` when given, else from the generated
/// pair in `generated` (created or reissued as needed).
pub fn server_config(
    files: Option<(&Path, &Path)>,
    generated: &Generated,
    extra_names: &[String],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    // The generated pair is read under the lock it is written under, so a reader never pairs
    // a new key with an old certificate.
    let mut _lock = None;
    let (cert, key) = match files {
        Some(pair) => (pair.0.to_path_buf(), pair.1.to_path_buf()),
        None => {
            _lock = Some(ensure_generated(generated, extra_names)?);
            (generated.cert(), generated.key())
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .with_context(|| format!("read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parse the PEM certificates in {}", cert.display()))?;
    if chain.is_empty() {
        bail!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----); set proxy.tls-cert-file to the server certificate chain",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&key).with_context(|| {
        format!(
            "read the PEM private key in {} (proxy.tls-key-file)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("choose TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("pair the certificate with its private key (do proxy.tls-cert-file and proxy.tls-key-file belong together?)")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The names the server certificate covers: loopback, this machine's name (and its `.local`
/// mDNS name, which clinics without DNS use) and any configured address.
fn names(extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = nix::unistd::gethostname() {
        if let Some(h) = h.to_str().filter(|h| !h.is_empty() && *h != "localhost") {
            names.push(h.to_owned());
            if !h.contains('.') {
                names.push(format!("{h}.local"));
            }
        }
    }
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "OSCAR Box");
    dn.push(DnType::CommonName, "OSCAR Box local certificate authority");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// Creates or reissues the generated pair under an exclusive lock on the directory, because the
/// proxy and the watchdog's admin listener may start at the same moment: without it each could
/// make its own authority, and one would sign with a key whose certificate the other replaced.
fn ensure_generated(
    g: &Generated,
    extra_names: &[String],
) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    std::fs::create_dir_all(&g.dir).with_context(|| format!("create {}", g.dir.display()))?;
    let lock_path = g.dir.join(".lock");
    let lock_file = std::fs::File::create(&lock_path)
        .with_context(|| format!("open {}", lock_path.display()))?;
    let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("lock {}", lock_path.display()))?;
    let names = names(extra_names);
    let names_line = names.join(" ");
    let ca_key = match std::fs::read_to_string(g.ca_key()) {
        Ok(pem) => KeyPair::from_pem(&pem)
            .with_context(|| format!("parse {}; move it away to generate a new authority (clients must then trust the new ca.crt)", g.ca_key().display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate().context("generate the authority's key")?;
            let mut params = ca_params()?;
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(3650);
            let cert = params
                .self_signed(&key)
                .context("sign the authority's certificate")?;
            // The certificate first: a crash between the two leaves no key, so the next start
            // makes a new authority instead of failing on a key without its certificate.
            write_public(&g.ca_cert(), cert.pem().as_bytes())?;
            oscarbox_common::write_private(&g.ca_key(), key.serialize_pem().as_bytes())
                .with_context(|| format!("write {}", g.ca_key().display()))?;
            // A new authority invalidates any server certificate of an old one.
            let _ = std::fs::remove_file(g.cert());
            tracing::info!(ca = %g.ca_cert().display(), "generated a local certificate authority; install ca.crt in the clinic's browsers to trust the box");
            key
        }
        Err(e) => return Err(e).with_context(|| format!("read {}", g.ca_key().display())),
    };
    let fresh = std::fs::metadata(g.cert())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < REISSUE_AFTER);
    let same_names = std::fs::read_to_string(g.names()).is_ok_and(|n| n.trim() == names_line);
    if fresh && same_names && std::fs::metadata(g.key()).is_ok() {
        return Ok(lock);
    }
    let key = KeyPair::generate().context("generate the server key")?;
    let mut params = CertificateParams::new(names.clone())
        .with_context(|| format!("use {names_line} as certificate names"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, names[3..].first().unwrap_or(&names[0]));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(LEAF_DAYS - 1);
    let issuer = Issuer::new(ca_params()?, ca_key);
    let cert = params
        .signed_by(&key, &issuer)
        .context("sign the server certificate")?;
    let ca_pem = std::fs::read_to_string(g.ca_cert())
        .with_context(|| format!("read {}", g.ca_cert().display()))?;
    oscarbox_common::write_private(&g.key(), key.serialize_pem().as_bytes())
        .with_context(|| format!("write {}", g.key().display()))?;
    write_public(&g.cert(), format!("{}{ca_pem}", cert.pem()).as_bytes())?;
    write_public(&g.names(), names_line.as_bytes())?;
    tracing::info!(cert = %g.cert().display(), names = %names_line, "issued the server certificate");
    Ok(lock)
}

/// Certificates are public; written like secrets (whole or not at all) but readable.
fn write_public(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    oscarbox_common::write_private(path, contents)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)))
        .with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_kept_and_reissued_from_the_same_authority() {
        let dir = tempfile::tempdir().expect("temp dir");
        let g = Generated {
            dir: dir.path().join("tls"),
        };
        server_config(None, &g, &[]).expect("generate");
        let end = not_after(&g.cert()).expect("readable");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert!(
            (now + 390 * 86_400..now + 398 * 86_400).contains(&end),
            "{end}"
        );
        let ca = std::fs::read(g.ca_cert()).expect("ca");
        let leaf = std::fs::read(g.cert()).expect("leaf");
        server_config(None, &g, &[]).expect("reuse");
        assert_eq!(std::fs::read(g.cert()).expect("leaf"), leaf, "kept");
        server_config(None, &g, &["clinic.example".into()]).expect("reissue");
        assert_ne!(std::fs::read(g.cert()).expect("leaf"), leaf, "new names");
        assert_eq!(
            std::fs::read(g.ca_cert()).expect("ca"),
            ca,
            "same authority"
        );
        use std::os::unix::fs::PermissionsExt as _;
        for (path, mode) in [(g.ca_key(), 0o600), (g.key(), 0o600), (g.ca_cert(), 0o644)] {
            let m = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(m, mode, "{}", path.display());
        }
    }

    #[test]
    fn a_wrong_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bogus = dir.path().join("cert.pem");
        std::fs::write(&bogus, "not a certificate").expect("write");
        let g = Generated {
            dir: dir.path().join("tls"),
        };
        let e = server_config(Some((&bogus, &bogus)), &g, &[]).expect_err("refused");
        assert!(
            format!("{e:#}").contains("holds no PEM certificate"),
            "{e:#}"
        );
    }
}
