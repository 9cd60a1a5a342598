//! Slash-command rules (PROTOCOL §6.8): the registration schema, its limits, the checks of a call's
//! `args` against the declared options, and the whitelist / blacklist role checks.
//!
//! Pure functions returning the exact wire texts, so the registry, built-in commands and calls to
//! bot commands all judge a command the same way.

use serde_json::{Map, Value, json};

/// Most commands one connection may register.
pub const MAX_COMMANDS: usize = 100;
/// Most options per command.
pub const MAX_OPTIONS: usize = 25;
/// Longest command or option description, in characters.
pub const MAX_DESCRIPTION: usize = 100;
/// Longest command or option name, in characters.
const MAX_NAME: usize = 32;

/// The value type of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    Str,
    Int,
    Float,
    Bool,
    Enum,
}

impl OptionType {
    fn parse(s: &str) -> Option<OptionType> {
        Some(match s {
            "str" => OptionType::Str,
            "int" => OptionType::Int,
            "float" => OptionType::Float,
            "bool" => OptionType::Bool,
            "enum" => OptionType::Enum,
            _ => return None,
        })
    }

    /// The name as the schema and the error texts write it.
    pub fn as_str(self) -> &'static str {
        match self {
            OptionType::Str => "str",
            OptionType::Int => "int",
            OptionType::Float => "float",
            OptionType::Bool => "bool",
            OptionType::Enum => "enum",
        }
    }
}

/// One declared argument of a command.
#[derive(Debug, Clone, PartialEq)]
pub struct SlashOption {
    pub name: String,
    pub description: String,
    pub kind: OptionType,
    /// The allowed values of an `enum` option.
    pub choices: Option<Vec<String>>,
    pub required: bool,
}

/// A slash command as registered by a connection or built into the server.
#[derive(Debug, Clone, PartialEq)]
pub struct SlashCommand {
    pub name: String,
    pub description: String,
    pub options: Vec<SlashOption>,
    /// When set, the invoker needs one of these roles.
    pub whitelist_roles: Option<Vec<String>>,
    /// When set, the invoker must have none of these roles.
    pub blacklist_roles: Option<Vec<String>>,
    /// Output goes only to the invoker's connections and is not stored.
    pub ephemeral: bool,
    /// A server permission the command needs (built-in moderation commands only) [ext].
    pub permission: Option<&'static str>,
}

impl SlashCommand {
    /// The wire form of `slash_add` and `slash_list` entries.
    pub fn to_json(&self, registered_by: &str) -> Value {
        let options: Vec<Value> = self
            .options
            .iter()
            .map(|o| {
                json!({"name": o.name, "description": o.description, "type": o.kind.as_str(),
                       "choices": o.choices, "required": o.required})
            })
            .collect();
        let mut v = json!({
            "name": self.name, "description": self.description, "options": options,
            "whitelistRoles": self.whitelist_roles, "blacklistRoles": self.blacklist_roles,
            "ephemeral": self.ephemeral, "registeredBy": registered_by,
        });
        if let Some(permission) = self.permission {
            v["permission"] = json!(permission);
        }
        v
    }
}

/// Why a `slash_register` list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaError {
    /// `"Commands must be provided as a list"`.
    NotAList,
    /// `"Invalid command schema: <reason>"`.
    Invalid(String),
}

impl SchemaError {
    /// The exact wire text.
    pub fn text(&self) -> String {
        match self {
            SchemaError::NotAList => "Commands must be provided as a list".to_owned(),
            SchemaError::Invalid(reason) => format!("Invalid command schema: {reason}"),
        }
    }
}

/// A command name: 1–32 characters from `[a-z0-9_-]`.
pub fn command_name_ok(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn invalid(reason: String) -> SchemaError {
    SchemaError::Invalid(reason)
}

/// A required string field of at most `max` characters.
fn text_field(obj: &Map<String, Value>, at: &str, key: &str, max: usize) -> Result<String, SchemaError> {
    match obj.get(key) {
        Some(Value::String(s)) if s.chars().count() <= max => Ok(s.clone()),
        Some(Value::String(_)) => Err(invalid(format!("{at}.{key} must be at most {max} characters"))),
        _ => Err(invalid(format!("{at}.{key} must be a string"))),
    }
}

/// An optional list of strings (`null` is absent).
fn string_list(obj: &Map<String, Value>, at: &str, key: &str) -> Result<Option<Vec<String>>, SchemaError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .map(Some)
            .ok_or_else(|| invalid(format!("{at}.{key} must be a list of strings"))),
        Some(_) => Err(invalid(format!("{at}.{key} must be a list of strings"))),
    }
}

/// An optional boolean (`null` is absent).
fn flag(obj: &Map<String, Value>, at: &str, key: &str, default: bool) -> Result<bool, SchemaError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(format!("{at}.{key} must be a boolean"))),
    }
}

fn parse_option(value: &Value, at: &str) -> Result<SlashOption, SchemaError> {
    let Value::Object(obj) = value else { return Err(invalid(format!("{at} must be an object"))) };
    let name = text_field(obj, at, "name", MAX_NAME)?;
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(invalid(format!("{at}.name must be 1-{MAX_NAME} characters")));
    }
    let description = text_field(obj, at, "description", MAX_DESCRIPTION)?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .and_then(OptionType::parse)
        .ok_or_else(|| invalid(format!("{at}.type must be one of str, int, float, bool, enum")))?;
    let choices = string_list(obj, at, "choices")?;
    if kind == OptionType::Enum && choices.as_ref().is_none_or(Vec::is_empty) {
        return Err(invalid(format!("{at}: enum options must define a non-empty 'choices' list")));
    }
    let required = flag(obj, at, "required", true)?;
    Ok(SlashOption { name, description, kind, choices, required })
}

fn parse_command(value: &Value, at: &str) -> Result<SlashCommand, SchemaError> {
    let Value::Object(obj) = value else { return Err(invalid(format!("{at} must be an object"))) };
    let name = text_field(obj, at, "name", MAX_NAME)?;
    if !command_name_ok(&name) {
        return Err(invalid(format!("{at}.name must be 1-{MAX_NAME} characters from a-z, 0-9, _ and -")));
    }
    let description = text_field(obj, at, "description", MAX_DESCRIPTION)?;
    let options = match obj.get("options") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() > MAX_OPTIONS => {
            return Err(invalid(format!("{at}.options: at most {MAX_OPTIONS} options")));
        }
        Some(Value::Array(items)) => {
            let mut options: Vec<SlashOption> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let option = parse_option(item, &format!("{at}.options[{i}]"))?;
                if options.iter().any(|o| o.name == option.name) {
                    return Err(invalid(format!("{at}.options: duplicate option '{}'", option.name)));
                }
                options.push(option);
            }
            options
        }
        Some(_) => return Err(invalid(format!("{at}.options must be a list"))),
    };
    Ok(SlashCommand {
        name,
        description,
        options,
        whitelist_roles: string_list(obj, at, "whitelistRoles")?,
        blacklist_roles: string_list(obj, at, "blacklistRoles")?,
        ephemeral: flag(obj, at, "ephemeral", false)?,
        permission: None,
    })
}

/// Parses the `commands` of `slash_register` with the limits of PROTOCOL §6.8.
pub fn parse_commands(value: Option<&Value>) -> Result<Vec<SlashCommand>, SchemaError> {
    let Some(Value::Array(items)) = value else { return Err(SchemaError::NotAList) };
    if items.len() > MAX_COMMANDS {
        return Err(invalid(format!("at most {MAX_COMMANDS} commands")));
    }
    let mut commands: Vec<SlashCommand> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let command = parse_command(item, &format!("commands[{i}]"))?;
        if commands.iter().any(|c| c.name == command.name) {
            return Err(invalid(format!("duplicate command name '{}'", command.name)));
        }
        commands.push(command);
    }
    Ok(commands)
}

/// Whether `value` is a valid argument of type `kind`.
fn fits(kind: OptionType, value: &Value) -> bool {
    match kind {
        OptionType::Str | OptionType::Enum => value.is_string(),
        OptionType::Int => value.is_i64() || value.is_u64(),
        OptionType::Float => value.is_number(),
        OptionType::Bool => value.is_boolean(),
    }
}

/// Checks a call's `args` against the command's options: no unknown argument, every required one
/// present (`null` counts as absent), and each value of its declared type. The error is the exact
/// wire text.
pub fn check_args(command: &SlashCommand, args: &Map<String, Value>) -> Result<(), String> {
    if let Some(unknown) = args.keys().find(|k| !command.options.iter().any(|o| &o.name == *k)) {
        return Err(format!("Unknown argument: {unknown}"));
    }
    for option in &command.options {
        let value = args.get(&option.name).filter(|v| !v.is_null());
        let Some(value) = value else {
            if option.required {
                return Err(format!("Missing required argument: {}", option.name));
            }
            continue;
        };
        if option.kind == OptionType::Enum {
            let choices = option.choices.as_deref().unwrap_or_default();
            if !value.as_str().is_some_and(|v| choices.iter().any(|c| c == v)) {
                return Err(format!("Invalid value for '{}': must be one of {}", option.name, choices.join(", ")));
            }
        } else if !fits(option.kind, value) {
            return Err(format!("Invalid value for '{}': expected {}", option.name, option.kind.as_str()));
        }
    }
    Ok(())
}

/// The whitelist / blacklist check for an invoker holding `roles`: `"Access denied: '<role>' role
/// is forbidden"` for the first blacklisted role held, `"Access denied: '<role>' role required"`
/// (the first whitelisted role) when none of the whitelist is held. Names compare case-insensitively.
pub fn check_roles(command: &SlashCommand, roles: &[String]) -> Result<(), String> {
    let holds = |name: &String| roles.iter().any(|r| r.eq_ignore_ascii_case(name));
    if let Some(forbidden) = command.blacklist_roles.iter().flatten().find(|r| holds(r)) {
        return Err(format!("Access denied: '{forbidden}' role is forbidden"));
    }
    if let Some(whitelist) = &command.whitelist_roles
        && let Some(first) = whitelist.first()
        && !whitelist.iter().any(holds)
    {
        return Err(format!("Access denied: '{first}' role required"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Vec<SlashCommand>, String> {
        parse_commands(Some(&v)).map_err(|e| e.text())
    }

    #[test]
    fn schema_limits() {
        assert_eq!(parse_commands(None).unwrap_err().text(), "Commands must be provided as a list");
        assert_eq!(parse(json!({})).unwrap_err(), "Commands must be provided as a list");
        let ok = parse(json!([{"name": "roll", "description": "Roll dice",
            "options": [{"name": "sides", "description": "", "type": "int"},
                        {"name": "mode", "description": "", "type": "enum", "choices": ["a", "b"], "required": false}],
            "ephemeral": true}]))
        .unwrap();
        assert!(ok[0].options[0].required);
        assert_eq!(ok[0].options[1].kind, OptionType::Enum);
        assert!(ok[0].ephemeral);
        let bad = [
            json!([{"name": "Roll", "description": ""}]),
            json!([{"name": "", "description": ""}]),
            json!([{"name": "a".repeat(33), "description": ""}]),
            json!([{"name": "ok", "description": "d".repeat(101)}]),
            json!([{"name": "ok"}]),
            json!([{"name": "ok", "description": "", "options": [{"name": "e", "description": "", "type": "enum"}]}]),
            json!([{"name": "ok", "description": "", "options": [{"name": "e", "description": "", "type": "list"}]}]),
            json!([{"name": "ok", "description": ""}, {"name": "ok", "description": ""}]),
            json!(["ok"]),
        ];
        for b in bad {
            assert!(parse(b.clone()).unwrap_err().starts_with("Invalid command schema: "), "{b}");
        }
        let many: Vec<Value> = (0..101).map(|i| json!({"name": format!("c{i}"), "description": ""})).collect();
        assert!(parse(json!(many)).is_err());
        let opts: Vec<Value> =
            (0..26).map(|i| json!({"name": format!("o{i}"), "description": "", "type": "str"})).collect();
        assert!(parse(json!([{"name": "ok", "description": "", "options": opts}])).is_err());
    }

    #[test]
    fn argument_checks() {
        let cmd = &parse(json!([{"name": "roll", "description": "", "options": [
            {"name": "sides", "description": "", "type": "int"},
            {"name": "scale", "description": "", "type": "float", "required": false},
            {"name": "loud", "description": "", "type": "bool", "required": false},
            {"name": "mode", "description": "", "type": "enum", "choices": ["a", "b"], "required": false}]}]))
        .unwrap()[0];
        let args = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(check_args(cmd, &args(json!({"sides": 6, "scale": 1, "loud": true, "mode": "b"}))), Ok(()));
        assert_eq!(check_args(cmd, &args(json!({"sides": 6, "x": 1}))).unwrap_err(), "Unknown argument: x");
        assert_eq!(check_args(cmd, &args(json!({"sides": null}))).unwrap_err(), "Missing required argument: sides");
        assert_eq!(
            check_args(cmd, &args(json!({"sides": 1.5}))).unwrap_err(),
            "Invalid value for 'sides': expected int"
        );
        assert_eq!(
            check_args(cmd, &args(json!({"sides": 1, "loud": "yes"}))).unwrap_err(),
            "Invalid value for 'loud': expected bool"
        );
        assert_eq!(
            check_args(cmd, &args(json!({"sides": 1, "mode": "c"}))).unwrap_err(),
            "Invalid value for 'mode': must be one of a, b"
        );
    }

    #[test]
    fn role_lists() {
        let mut cmd = parse(json!([{"name": "x", "description": ""}])).unwrap().remove(0);
        let roles = vec!["user".to_owned()];
        assert_eq!(check_roles(&cmd, &roles), Ok(()));
        cmd.whitelist_roles = Some(vec!["vip".into(), "User".into()]);
        assert_eq!(check_roles(&cmd, &roles), Ok(()));
        cmd.whitelist_roles = Some(vec!["vip".into()]);
        assert_eq!(check_roles(&cmd, &roles).unwrap_err(), "Access denied: 'vip' role required");
        cmd.blacklist_roles = Some(vec!["user".into()]);
        assert_eq!(check_roles(&cmd, &roles).unwrap_err(), "Access denied: 'user' role is forbidden");
    }
}
