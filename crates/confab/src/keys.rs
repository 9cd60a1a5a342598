//! Key material: the JWT signing key and the Web Push VAPID key (each generated on first start and
//! stored 0600 in the data folder) and TLS certificates.

use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
    sync::Arc,
};

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::{
    auth::{
        jwt::{DEV_TOKEN_TTL_S, JwtKeys},
        tokens::random_bytes,
    },
    config::Config,
    push::vapid::Vapid,
};

const KEY_FILE: &str = "jwt.key";
/// The VAPID private key: browsers subscribe with its public half and never ask again, so it is
/// created once and kept (PROTOCOL §6.9).
const VAPID_FILE: &str = "vapid.key";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// The signing keys: `auth.jwt_secret` when set, else `<data_dir>/jwt.key`, created on first start.
pub fn load(config: &Config) -> anyhow::Result<JwtKeys> {
    let secret = if !config.auth.jwt_secret.is_empty() {
        unhex(&config.auth.jwt_secret).unwrap_or_else(|| config.auth.jwt_secret.as_bytes().to_vec())
    } else {
        create_data_dir(config)?;
        load_or_create(&config.data_dir.join(KEY_FILE))?
    };
    let auth = &config.auth;
    let keys = JwtKeys::new("k1", secret, &auth.jwt_issuer, &auth.jwt_audience, auth.access_ttl_s);
    // Only `--dev` hands out (and so accepts) the long-lived test token.
    Ok(if config.dev { keys.accepting_lifetime(DEV_TOKEN_TTL_S) } else { keys })
}

/// The VAPID key from `<data_dir>/vapid.key`, created on first start; `None` when push is off.
pub fn vapid(config: &Config) -> anyhow::Result<Option<Vapid>> {
    if !config.push.enabled {
        return Ok(None);
    }
    create_data_dir(config)?;
    let path = config.data_dir.join(VAPID_FILE);
    let secret = load_or_create(&path)?;
    let key = secret.get(..32).and_then(Vapid::from_secret);
    key.map(Some).with_context(|| format!("{} does not hold a P-256 private key", path.display()))
}

fn create_data_dir(config: &Config) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))
}

fn load_or_create(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "key file is readable by others");
            }
            let key = unhex(&text).with_context(|| format!("{} is not a hex key", path.display()))?;
            anyhow::ensure!(key.len() >= 32, "{} holds fewer than 256 bits", path.display());
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_bytes::<32>().to_vec();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(hex(&key).as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "generated a new key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A rustls server configuration (ring provider, no global default) from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let first = load_or_create(&path).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), first);
    }

    #[test]
    fn vapid_key_is_created_private_kept_and_off_when_push_is() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().join("data"), ..Config::default() };
        let first = vapid(&config).unwrap().unwrap();
        let path = config.data_dir.join(VAPID_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(vapid(&config).unwrap().unwrap().public_key(), first.public_key());
        std::fs::write(&path, hex(&[0u8; 32])).unwrap();
        assert!(vapid(&config).is_err());
        let mut off = config.clone();
        off.push.enabled = false;
        assert!(vapid(&off).unwrap().is_none());
    }
}
