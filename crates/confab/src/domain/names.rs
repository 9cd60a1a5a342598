//! Validation of user-chosen names (PROTOCOL §2.3, §5.3, §5.5).
//!
//! Functions return the exact wire text of the first rule broken, so every entry point (WebSocket,
//! HTTP, CLI) reports the same error. Names others read (nicknames, channel and thread names) may
//! hold any visible text, but nothing invisible or reordering ([`is_hidden`]), and names that must
//! not impersonate an account are compared by their [`lookalike_key`].

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

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

/// Whether `c` is invisible or changes how the text around it reads: control characters (NUL
/// included) and format characters (Unicode category Cf: bidi embeddings, overrides and isolates,
/// zero-width spaces and joiners, the BOM, the soft hyphen, …). A name holding one can look like
/// another, or turn the rest of a line around.
pub fn is_hidden(c: char) -> bool {
    c.is_control() || c.general_category() == GeneralCategory::Format
}

/// Whether a name holds any [`is_hidden`] character.
pub fn has_hidden(name: &str) -> bool {
    name.chars().any(is_hidden)
}

/// What two names are compared by when one must not pass for the other: NFKC (so full-width,
/// ligature and other compatibility forms become their plain letters) then lower case.
pub fn lookalike_key(name: &str) -> String {
    name.trim().nfkc().flat_map(char::to_lowercase).collect()
}

/// Whether `name` is, or looks like, the reserved system username: no account or nickname may
/// take it on any path (registration, Rotur logins and renames, `user_update`, `/nick`, the CLI).
pub fn is_reserved(name: &str, system_username: &str) -> bool {
    lookalike_key(name) == lookalike_key(system_username)
}

/// A channel name: 1–64 characters, nothing hidden, no surrounding whitespace (PROTOCOL §5.5).
pub fn channel_name_ok(name: &str) -> bool {
    let n = name.chars().count();
    (1..=64).contains(&n) && !has_hidden(name) && name.trim() == name
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
    fn hidden_characters_and_lookalikes() {
        for hidden in ['\0', '\u{7}', '\u{202E}', '\u{2066}', '\u{200B}', '\u{200D}', '\u{FEFF}', '\u{AD}', '\u{E0041}']
        {
            assert!(is_hidden(hidden), "{:04X}", hidden as u32);
        }
        for visible in ['a', 'ñ', '😀', ' ', '\u{301}', '中'] {
            assert!(!is_hidden(visible), "{:04X}", visible as u32);
        }
        assert!(
            !channel_name_ok("gen\u{200B}eral") && !channel_name_ok("\u{202E}lareneg") && channel_name_ok("général")
        );
        assert_eq!(lookalike_key(" ＡＤＭＩＮ "), "admin");
        assert_eq!(lookalike_key("\u{212A}ate"), "kate", "the Kelvin sign is a K");
        assert!(is_reserved("ORIGINCHATS", "originChats") && is_reserved("ｏriginchats", "originChats"));
        assert!(!is_reserved("originChats2", "originChats"));
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
