//! The scopes credentials live in: a user, a project, or the organisation.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a credential is kept and looked up: `user:<id>`, `project:<id>` or `org` (the
/// whole deployment). Written and parsed as that text (`--scope user:ada`).
///
/// ```
/// use reprise::identity::Scope;
/// assert_eq!(Scope::parse("user:ada"), Ok(Scope::User("ada".into())));
/// assert_eq!(Scope::Org.to_string(), "org");
/// assert!(Scope::parse("team:x").unwrap_err().contains("user:<id>"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[schemars(with = "String")]
pub enum Scope {
    /// One user's credentials.
    User(String),
    /// One project's credentials.
    Project(String),
    /// The organisation's credentials: every run falls back to these.
    Org,
}

impl Scope {
    /// Parses `user:<id>`, `project:<id>` or `org`. Ids are 1 to 128 bytes of ASCII
    /// letters, digits, `-`, `_`, `.` and `@`.
    ///
    /// # Errors
    /// A sentence naming the text and the accepted forms.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let text = text.trim();
        if text == "org" {
            return Ok(Scope::Org);
        }
        let forms = "use `user:<id>`, `project:<id>` or `org`";
        let Some((kind, id)) = text.split_once(':') else {
            return Err(format!("unknown scope `{text}`; {forms}"));
        };
        match kind {
            "user" => check_id("user", id).map(|()| Scope::User(id.to_owned())),
            "project" => check_id("project", id).map(|()| Scope::Project(id.to_owned())),
            _ => Err(format!("unknown scope `{text}`; {forms}")),
        }
    }

    /// The scope's kind: `user`, `project` or `org`.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::User(_) => "user",
            Scope::Project(_) => "project",
            Scope::Org => "org",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::User(id) => write!(f, "user:{id}"),
            Scope::Project(id) => write!(f, "project:{id}"),
            Scope::Org => f.write_str("org"),
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s)
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Scope::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Checks a user or project id: 1 to 128 bytes of ASCII letters, digits, `-`, `_`, `.`
/// and `@`.
///
/// # Errors
/// A sentence naming `what` and the id.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} id `{id}` must be 1 to 128 bytes of ASCII letters, digits, `-`, `_`, `.` \
             and `@`"
        ))
    }
}
