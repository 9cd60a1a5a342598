//! Attachments (PROTOCOL §3.6, §6.9): the configuration, the per-server runtime (file storage, a
//! local folder or an S3 bucket; upload credentials of live connections; the per-user upload
//! window), the wire object, the expiry rule and the sweeper that removes files whose time is up.
//!
//! The HTTP routes are in [`crate::http`], the commands in [`crate::commands`], the rows in
//! [`crate::store::attachments`].

pub mod images;
pub mod s3;
pub mod sigv4;
pub mod sniff;
pub mod storage;
pub mod sweeper;

use std::{
    collections::VecDeque,
    path::PathBuf,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::store::attachments::AttachmentRow;

/// The `attachments` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttachmentsConfig {
    /// Whether `POST /attachments/upload` and attachments on messages are accepted.
    pub enabled: bool,
    /// Largest decoded file, in bytes.
    pub max_size: u64,
    /// MIME patterns accepted (`type/*`, exact types, `*`).
    pub allowed_types: Vec<String>,
    /// Uploads kept per user; at the limit a new upload removes the uploader's oldest one
    /// (PROTOCOL §2.1). −1 is unlimited.
    pub max_attachments_per_user: i64,
    /// Rotur subscription tiers whose uploads are permanent (advertised in the handshake).
    pub permanent_tiers: Vec<String>,
    /// Days a permanent upload is kept.
    pub permanent_expiration_days: f64,
    /// Uploads per user per minute (when `rate_limits.enabled`).
    pub uploads_per_minute: usize,
    /// Seconds an upload no message uses is kept.
    pub unused_ttl_s: u64,
    /// How often the sweeper looks for files to remove, in milliseconds.
    pub sweep_interval_ms: u64,
    /// Uploads decoded at the same time; more wait (a body is about 2.3× its file in memory).
    pub concurrent_uploads: usize,
    /// `local` (files under `dir`) or `s3` (objects in the bucket of `s3`).
    pub storage: storage::StorageKind,
    /// Folder of the files of the local storage; empty means `<data_dir>/attachments`.
    pub dir: PathBuf,
    /// The bucket of the `s3` storage.
    pub s3: s3::S3Config,
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        AttachmentsConfig {
            enabled: true,
            max_size: 100 * 1024 * 1024,
            allowed_types: ["image/*", "video/*", "audio/*", "application/pdf"].map(str::to_owned).to_vec(),
            max_attachments_per_user: -1,
            permanent_tiers: ["pro", "max"].map(str::to_owned).to_vec(),
            permanent_expiration_days: 365.0,
            uploads_per_minute: 10,
            unused_ttl_s: 3600,
            sweep_interval_ms: 60_000,
            concurrent_uploads: 4,
            storage: storage::StorageKind::Local,
            dir: PathBuf::new(),
            s3: s3::S3Config::default(),
        }
    }
}

impl AttachmentsConfig {
    /// The handshake's `attachments` object (PROTOCOL §2.1).
    pub fn handshake(&self) -> Value {
        json!({
            "enabled": self.enabled,
            "max_size": self.max_size,
            "allowed_types": self.allowed_types,
            "max_attachments_per_user": self.max_attachments_per_user,
            "permanent_tiers": self.permanent_tiers,
        })
    }
}

/// The upload credential of one authenticated connection (PROTOCOL §3.6 forms 2 and 3, §3.9).
#[derive(Debug, Clone)]
pub struct UploadKey {
    pub conn_id: u64,
    pub user_id: String,
    /// The `ready.validator` sent to that connection.
    pub validator: String,
}

/// What the server keeps for attachments while it runs.
pub struct Attachments {
    pub storage: storage::Storage,
    /// Handshake `validator_key` → the connection that holds it, while it is authenticated.
    pub keys: DashMap<String, UploadKey>,
    /// Upload times per user in the last minute.
    recent: DashMap<String, VecDeque<Instant>>,
    /// Caps the uploads decoded at once.
    pub slots: tokio::sync::Semaphore,
}

impl Attachments {
    /// The runtime for `config`, keeping files in `storage`.
    pub fn new(config: &AttachmentsConfig, storage: storage::Storage) -> Attachments {
        Attachments {
            storage,
            keys: DashMap::new(),
            recent: DashMap::new(),
            slots: tokio::sync::Semaphore::new(config.concurrent_uploads.max(1)),
        }
    }

    /// Forgets connection `conn_id`'s upload key once it closes.
    pub fn release(&self, key: &str, conn_id: u64) {
        self.keys.remove_if(key, |_, k| k.conn_id == conn_id);
    }

    /// Counts an upload by `user_id`, or says how many seconds to wait when `per_minute` are used.
    pub fn take_upload(&self, user_id: &str, per_minute: usize) -> Result<(), u64> {
        let now = Instant::now();
        let mut times = self.recent.entry(user_id.to_owned()).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
            times.pop_front();
        }
        if times.len() >= per_minute {
            let oldest = times.front().copied().unwrap_or(now);
            return Err((MINUTE.saturating_sub(now.duration_since(oldest))).as_secs().max(1));
        }
        times.push_back(now);
        Ok(())
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// The attachment object of PROTOCOL §5.8, with its URL under `public_url`.
pub fn object(row: &AttachmentRow, public_url: &str) -> Value {
    let mut o = json!({
        "id": row.id,
        "name": row.name,
        "mime_type": row.mime_type,
        "size": row.size,
        "url": format!("{public_url}/attachments/{}", row.id),
        "expires_at": row.expires_at.map(|t| t.floor() as i64),
        "permanent": row.permanent,
    });
    if let (Some(w), Some(h)) = (row.width, row.height) {
        o["width"] = json!(w);
        o["height"] = json!(h);
    }
    o
}

/// Days an upload of `size` bytes is kept (PROTOCOL §3.6): 49 up to 5 MiB, falling linearly to 7
/// at 25 MiB and to 1 at 100 MiB; at most 7 unless permanent.
pub fn expiry_days(size: u64, permanent: bool, permanent_days: f64) -> f64 {
    if permanent {
        return permanent_days;
    }
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = size as f64 / MIB;
    let by_size = if mib <= 5.0 {
        49.0
    } else if mib <= 25.0 {
        49.0 - (mib - 5.0) / 20.0 * 42.0
    } else if mib <= 100.0 {
        7.0 - (mib - 25.0) / 75.0 * 6.0
    } else {
        1.0
    };
    by_size.min(7.0)
}

/// A display name safe to store and to put in a header: the last path segment, without control
/// characters or quotes, trimmed; `None` when nothing is left or it is longer than 255 characters.
pub fn clean_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control() && *c != '"').collect();
    let cleaned = cleaned.trim();
    let ok = !cleaned.is_empty() && cleaned != "." && cleaned != ".." && cleaned.chars().count() <= 255;
    ok.then(|| cleaned.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_by_size() {
        assert_eq!(expiry_days(1, false, 365.0), 7.0);
        assert_eq!(expiry_days(1, true, 365.0), 365.0);
        assert!((expiry_days(100 * 1024 * 1024, false, 365.0) - 1.0).abs() < 1e-9);
        let at_50 = expiry_days(50 * 1024 * 1024, false, 365.0);
        assert!(at_50 < 7.0 && at_50 > 1.0, "{at_50}");
    }

    #[test]
    fn names() {
        assert_eq!(clean_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(clean_name("a\\b\\c.png").as_deref(), Some("c.png"));
        assert_eq!(clean_name("x\"y\n.png").as_deref(), Some("xy.png"));
        assert_eq!(clean_name("../"), None);
        assert_eq!(clean_name("  "), None);
        assert_eq!(clean_name(".."), None);
    }

    #[test]
    fn upload_window() {
        let local = storage::Storage::Local { dir: PathBuf::from("/nonexistent") };
        let a = Attachments::new(&AttachmentsConfig::default(), local);
        assert!(a.take_upload("u", 2).is_ok());
        assert!(a.take_upload("u", 2).is_ok());
        assert!(a.take_upload("u", 2).is_err());
        assert!(a.take_upload("v", 2).is_ok());
    }
}
