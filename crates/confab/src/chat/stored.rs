//! The token file: the refresh token of the last login per server, so that the next `confab chat`
//! does not ask again. It holds a credential, so it is written with mode 0600 in a 0700 folder, and
//! replaced atomically (a crash never leaves half a file). Refresh tokens rotate: the file is
//! rewritten after every refresh, and only the interactive client uses it, so two processes never
//! spend the same token (which would revoke the session, PROTOCOL §3.1).

use std::{
    collections::BTreeMap,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// One server's stored login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub username: String,
    pub refresh_token: String,
}

/// The whole file.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The server used last (its `http://` base), taken when no server is named.
    #[serde(default)]
    pub last: Option<String>,
    #[serde(default)]
    pub servers: BTreeMap<String, Login>,
}

/// `$XDG_CONFIG_HOME/confab/chat.json`, else `~/.config/confab/chat.json`.
pub fn default_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("confab").join("chat.json"))
}

/// The file's contents; a missing or unreadable file is an empty one (the user logs in again).
pub fn load(path: &Path) -> Stored {
    std::fs::read(path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

/// Writes the file with mode 0600, its folder with 0700.
pub fn save(path: &Path, stored: &Stored) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(stored).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_file_round_trips_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confab").join("chat.json");
        assert_eq!(load(&path), Stored::default());
        let mut stored = Stored { last: Some("http://h:1".into()), ..Stored::default() };
        stored.servers.insert("http://h:1".into(), Login { username: "alice".into(), refresh_token: "r".into() });
        save(&path, &stored).unwrap();
        assert_eq!(load(&path), stored);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(load(&path), Stored::default(), "a damaged file means: log in again");
    }
}
