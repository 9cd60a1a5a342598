//! Mention parsing (PROTOCOL §5.6): `@user` and `@&role` candidates in message content.
//!
//! Only candidates: the caller keeps those that name existing accounts and roles.

/// Names after `@` (users) and `@&` (roles), in order of appearance, without duplicates.
pub fn candidates(content: &str) -> (Vec<String>, Vec<String>) {
    let mut users = Vec::new();
    let mut roles = Vec::new();
    let chars: Vec<char> = content.chars().collect();
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut i = 0;
    while i < chars.len() {
        let follows_word = i > 0 && chars[i - 1].is_alphanumeric();
        if chars[i] == '@' && !follows_word {
            let role = chars.get(i + 1) == Some(&'&');
            let start = if role { i + 2 } else { i + 1 };
            let mut end = start;
            while end < chars.len() && is_name(chars[end]) {
                end += 1;
            }
            if end > start {
                let name: String = chars[start..end].iter().collect();
                let list = if role { &mut roles } else { &mut users };
                if !list.iter().any(|n: &String| n.eq_ignore_ascii_case(&name)) {
                    list.push(name);
                }
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    (users, roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_users_and_roles() {
        let (u, r) = candidates("hi @alice and @&mods, mail bob@example.com, @Alice again @");
        assert_eq!(u, vec!["alice".to_string()]);
        assert_eq!(r, vec!["mods".to_string()]);
        let (u, _) = candidates("(@bob_1-x)!");
        assert_eq!(u, vec!["bob_1-x".to_string()]);
    }
}
