//! Where attachment bytes live: a folder under the data folder (the default), or a bucket of an
//! S3-compatible store (`attachments.storage = "s3"`). Callers see one [`Storage`] either way.
//!
//! Keys are attachment ids, which the server generates (UUIDs): no user input ever becomes a path
//! or an object key.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{StreamExt, stream::BoxStream};
use serde::{Deserialize, Serialize};

use super::{AttachmentsConfig, s3};

/// Which backend `attachments.storage` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    #[default]
    Local,
    S3,
}

/// A file's bytes as they are read, chunk by chunk: neither backend holds a whole file in memory
/// to serve it.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// A file store addressed by attachment id.
#[derive(Debug)]
pub enum Storage {
    /// Files in one local folder, created on first write, readable by the owner only.
    Local { dir: PathBuf },
    /// Objects in an S3-compatible bucket.
    S3(Box<s3::Bucket>),
}

impl Storage {
    /// The backend `config` chooses; files go under `<data_dir>/attachments` unless `dir` says
    /// otherwise. The S3 settings must have passed validation ([`s3::S3Config::problem`]).
    pub fn new(config: &AttachmentsConfig, data_dir: &Path) -> std::io::Result<Storage> {
        Ok(match config.storage {
            StorageKind::Local => {
                let dir =
                    if config.dir.as_os_str().is_empty() { data_dir.join("attachments") } else { config.dir.clone() };
                Storage::Local { dir }
            }
            StorageKind::S3 => Storage::S3(Box::new(s3::Bucket::new(&config.s3)?)),
        })
    }

    /// Stores `bytes` under `key`, replacing what was there. A local file is written under a
    /// temporary name and renamed, and an S3 PUT is atomic, so a reader never sees half a file.
    pub async fn put(&self, key: &str, bytes: Bytes) -> std::io::Result<()> {
        match self {
            Storage::Local { dir } => {
                use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
                let dir = dir.clone();
                let key = key.to_owned();
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
            Storage::S3(bucket) => bucket.put(key, bytes).await,
        }
    }

    /// The bytes under `key`, all of them or `first..=last` (which the caller has checked against
    /// the stored size); `None` when there is no such file.
    pub async fn get(&self, key: &str, range: Option<(u64, u64)>) -> std::io::Result<Option<ByteStream>> {
        match self {
            Storage::Local { dir } => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let mut file = match tokio::fs::File::open(dir.join(key)).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                let reader = match range {
                    Some((first, last)) => {
                        file.seek(std::io::SeekFrom::Start(first)).await?;
                        file.take(last.saturating_sub(first) + 1)
                    }
                    None => file.take(u64::MAX),
                };
                Ok(Some(tokio_util::io::ReaderStream::new(reader).boxed()))
            }
            Storage::S3(bucket) => {
                let Some(response) = bucket.get(key, range).await? else { return Ok(None) };
                let chunks = futures_util::stream::unfold(Some(response), |response| async move {
                    let mut response = response?;
                    match response.chunk().await {
                        Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
                        Ok(None) => None,
                        // One error ends the stream.
                        Err(e) => Some((Err(std::io::Error::other(e)), None)),
                    }
                });
                Ok(Some(chunks.boxed()))
            }
        }
    }

    /// Removes the file under `key`; a missing file counts as removed.
    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        match self {
            Storage::Local { dir } => match tokio::fs::remove_file(dir.join(key)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Storage::S3(bucket) => bucket.delete(key).await,
        }
    }
}
