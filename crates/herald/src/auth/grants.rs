//! Grants: what a verified token may read and publish, from its claims.
//!
//! - `sub` (a string): the one topic a v1 (Neurow) subscriber reads, and a v2 subscriber reads too.
//! - `topics`: a list of topic names or prefix patterns ending in `*` (`orders.*`; `*` alone is
//!   every topic of the issuer).
//! - `publish`: the same patterns, for what the token may publish where a transport allows it.
//! - `roles`: a list of names; a token holding one of the node's privileged roles reads any topic of
//!   its issuer (RIG's privileged users).
//!
//! Names are always within the token's issuer: a grant never reaches another issuer's topics.
//! Claims of the wrong shape make the grants invalid (a v2 request is refused with
//! `invalid_grants`); v1 ignores them, as Neurow did.

use std::sync::Arc;

use serde_json::{Map, Value};

/// A topic name or a prefix pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPattern {
    /// Exactly this name.
    Exact(Arc<str>),
    /// Every name starting with this (the pattern without its `*`).
    Prefix(Arc<str>),
}

impl TopicPattern {
    fn parse(s: &str) -> TopicPattern {
        match s.strip_suffix('*') {
            Some(prefix) => TopicPattern::Prefix(prefix.into()),
            None => TopicPattern::Exact(s.into()),
        }
    }

    /// Whether `name` (within the issuer) matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            TopicPattern::Exact(n) => &**n == name,
            TopicPattern::Prefix(p) => name.starts_with(&**p),
        }
    }
}

/// What a token may do besides its `sub` topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The `topics` claim.
    pub read: Vec<TopicPattern>,
    /// The `publish` claim.
    pub publish: Vec<TopicPattern>,
    /// The `roles` claim.
    pub roles: Vec<Arc<str>>,
}

/// A grants claim of the wrong shape, named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {0} claim must be a list of non-empty strings")]
pub struct InvalidGrants(pub &'static str);

impl Grants {
    /// Reads the grant claims of a verified token.
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Grants, InvalidGrants> {
        Ok(Grants {
            read: strings(claims, "topics")?
                .iter()
                .map(|s| TopicPattern::parse(s))
                .collect(),
            publish: strings(claims, "publish")?
                .iter()
                .map(|s| TopicPattern::parse(s))
                .collect(),
            roles: strings(claims, "roles")?.into_iter().map(Arc::from).collect(),
        })
    }

    /// Whether the grants (with `subject`, and the node's privileged roles) let the token read `name`.
    pub fn may_read(&self, subject: Option<&str>, privileged_roles: &[String], name: &str) -> bool {
        subject == Some(name)
            || self.read.iter().any(|p| p.matches(name))
            || self.roles.iter().any(|r| privileged_roles.iter().any(|p| **p == **r))
    }

    /// Whether the grants let the token publish to `name`.
    pub fn may_publish(&self, name: &str) -> bool {
        self.publish.iter().any(|p| p.matches(name))
    }
}

fn strings<'a>(claims: &'a Map<String, Value>, name: &'static str) -> Result<Vec<&'a str>, InvalidGrants> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().filter(|s| !s.is_empty()).ok_or(InvalidGrants(name)))
            .collect(),
        Some(_) => Err(InvalidGrants(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grants(claims: Value) -> Result<Grants, InvalidGrants> {
        Grants::from_claims(claims.as_object().unwrap())
    }

    #[test]
    fn names_patterns_subject_and_roles() {
        let g = grants(json!({"topics": ["news", "orders.*"], "roles": ["support"]})).unwrap();
        assert!(g.may_read(None, &[], "news"));
        assert!(g.may_read(None, &[], "orders.42"));
        assert!(!g.may_read(None, &[], "orders"), "a prefix pattern needs its prefix");
        assert!(!g.may_read(None, &[], "newsletter"));
        assert!(g.may_read(Some("me"), &[], "me"));
        assert!(g.may_read(None, &["admin".into(), "support".into()], "anything"));
        assert!(!g.may_read(None, &["admin".into()], "anything"));
        let all = grants(json!({"topics": ["*"]})).unwrap();
        assert!(all.may_read(None, &[], "x"));
    }

    #[test]
    fn publish_grants_are_separate() {
        let g = grants(json!({"topics": ["a"], "publish": ["chat.*"]})).unwrap();
        assert!(g.may_publish("chat.1") && !g.may_publish("a"));
    }

    #[test]
    fn wrong_shapes_are_named() {
        assert_eq!(grants(json!({"topics": "a"})), Err(InvalidGrants("topics")));
        assert_eq!(grants(json!({"publish": [1]})), Err(InvalidGrants("publish")));
        assert_eq!(grants(json!({"roles": [""]})), Err(InvalidGrants("roles")));
        assert_eq!(grants(json!({"topics": null})), Ok(Grants::default()));
    }
}
