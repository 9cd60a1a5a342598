//! Where attachment bytes live. One backend today, a folder under the data folder; the enum is the
//! seam for another (an S3-compatible store through `object_store`) without touching callers.
//!
//! Keys are attachment ids, which the server generates (UUIDs): no user input ever becomes a path.

use std::path::PathBuf;

/// A file store addressed by attachment id.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Files in one local folder, created on first write, readable by the owner only.
    Local { dir: PathBuf },
}

impl Storage {
    /// Stores `bytes` under `key`, replacing what was there. The file is written under a temporary
    /// name and renamed, so a reader never sees half a file.
    pub async fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Storage::Local { dir } => {
                use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
                let dir = dir.clone();
                let key = key.to_owned();
                let bytes = bytes.to_vec();
                tokio::task::spawn_blocking(move || {
                    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
                    let tmp = dir.join(format!("{key}.part"));
                    let mut file =
                        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
                    std::io::Write::write_all(&mut file, &bytes)?;
                    file.sync_all()?;
                    std::fs::rename(&tmp, dir.join(&key))
                })
                .await
                .map_err(std::io::Error::other)?
            }
        }
    }

    /// The bytes under `key`, or `None` when there is no such file.
    pub async fn get(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            Storage::Local { dir } => match tokio::fs::read(dir.join(key)).await {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Removes the file under `key`; a missing file counts as removed.
    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        match self {
            Storage::Local { dir } => match tokio::fs::remove_file(dir.join(key)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}
