//! Validation of user-chosen names (PROTOCOL §2.3, §5.3, §5.5).
//!
//! Functions return the exact wire text of the first rule broken, so every entry point (WebSocket,
//! HTTP, CLI) reports the same error.

/// A broken username or password rule: the `auth_error` code name and its exact text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    pub code: confab_proto::ErrorCode,
    pub text: String,
}

fn name_error(code: confab_proto::ErrorCode, text: impl Into<String>) -> NameError {
    NameError { code, text: text.into() }
}

/// Trims a requested username and checks its length (2–32 characters).
pub fn username_length(raw: &str) -> Result<&str, NameError> {
    let name = raw.trim();
    let n = name.chars().count();
    if !(2..=32).contains(&n) {
        return Err(name_error(confab_proto::ErrorCode::InvalidUsername, "Username must be 2-32 characters"));
    }
    Ok(name)
}

/// Checks the characters of a (trimmed) username: `[A-Za-z0-9_-]` only.
pub fn username_chars(name: &str) -> Result<(), NameError> {
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Ok(())
    } else {
        Err(name_error(
            confab_proto::ErrorCode::InvalidUsername,
            "Username can only contain letters, numbers, hyphens, and underscores",
        ))
    }
}

/// Checks a password's length in characters against the configured bounds; passwords are never trimmed.
pub fn password_length(password: &str, min: usize, max: usize) -> Result<(), NameError> {
    let n = password.chars().count();
    if n < min || n > max {
        return Err(name_error(
            confab_proto::ErrorCode::InvalidPassword,
            format!("Password must be {min}-{max} characters"),
        ));
    }
    Ok(())
}

/// Full username check in the order registration applies it, minus the password in between.
pub fn username(raw: &str) -> Result<&str, NameError> {
    let name = username_length(raw)?;
    username_chars(name)?;
    Ok(name)
}

/// A channel name: 1–64 characters, no control characters, no surrounding whitespace (PROTOCOL §5.5).
pub fn channel_name_ok(name: &str) -> bool {
    let n = name.chars().count();
    (1..=64).contains(&n) && !name.chars().any(char::is_control) && name.trim() == name
}

/// A role name: 1–32 characters from `[A-Za-z0-9_-]` and not the `banned` pseudo-role in any case
/// (PROTOCOL §5.3). The character set also keeps the `!` of channel denials out of names.
pub fn role_name_ok(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.eq_ignore_ascii_case("banned")
}

/// The case-folded key used for lookups and uniqueness (ASCII case-insensitive).
pub fn fold(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        assert_eq!(username("  Alice_1 "), Ok("Alice_1"));
        assert_eq!(username("a").unwrap_err().text, "Username must be 2-32 characters");
        assert_eq!(username(&"a".repeat(33)).unwrap_err().text, "Username must be 2-32 characters");
        assert_eq!(
            username("al ice").unwrap_err().text,
            "Username can only contain letters, numbers, hyphens, and underscores"
        );
        assert_eq!(username("ünï").unwrap_err().code, confab_proto::ErrorCode::InvalidUsername);
    }

    #[test]
    fn role_name_rules() {
        assert!(role_name_ok("vip_2-x"));
        assert!(role_name_ok(&"r".repeat(32)));
        for bad in ["", "has space", "!vip", "Banned", "banned", "ünï", "a.b"] {
            assert!(!role_name_ok(bad), "{bad:?}");
        }
        assert!(!role_name_ok(&"r".repeat(33)));
    }

    #[test]
    fn password_rules() {
        assert!(password_length("12345678", 8, 128).is_ok());
        assert_eq!(password_length("short", 8, 128).unwrap_err().text, "Password must be 8-128 characters");
        assert!(password_length(" spaces  ", 8, 128).is_ok());
    }
}
