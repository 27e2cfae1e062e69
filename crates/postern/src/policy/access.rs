//! Per-app access rules: which authenticated identities may reach an app
//! on the public gate.
//!
//! An app without rules admits every authenticated identity. An app with
//! any rule admits an identity that matches at least one of them: a person
//! by group, exact email or email domain, a machine by name. The app is the
//! one that routing found for the request's normalized host, so the rules
//! and the route can never disagree about which app a request is for.

use std::sync::Arc;

use crate::auth::{Identity, IdentityKind};

/// `auth_method` of machine tokens, as [`crate::auth::MachineTokens`] sets it.
const MACHINE_TOKEN_METHOD: &str = "machine_token";
/// `auth_method` of the client-credentials tokens postern itself issues.
const POSTERN_JWT_METHOD: &str = "jwt:postern";

/// The access rules of one app, from `app_config.<app>.settings`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRules {
    /// `allowed_groups`: group names, compared exactly.
    pub groups: Vec<Arc<str>>,
    /// `allowed_emails`: lowercase addresses.
    pub emails: Vec<Arc<str>>,
    /// `allowed_email_domains`: lowercase domains, matched exactly (a
    /// subdomain is another domain).
    pub email_domains: Vec<Arc<str>>,
    /// `allowed_machines`.
    pub machines: Vec<MachineRule>,
}

/// One `allowed_machines` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineRule {
    /// `NAME`: a machine token's name or an OAuth client's id, which
    /// postern provisions itself.
    Provisioned(Arc<str>),
    /// `ISSUER:IDENTITY`: a bearer JWT from the trusted issuer named
    /// `ISSUER` whose identity claim is `IDENTITY`. The issuer is part of
    /// the rule so that another issuer cannot mint a token for the same
    /// name.
    Issuer {
        /// `jwt:<issuer name>`, as the identity's `method` carries it.
        method: Arc<str>,
        subject: Arc<str>,
    },
}

/// The rule that let an identity through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The app has no rules.
    NoRules,
    Group(Arc<str>),
    Email,
    EmailDomain,
    Machine,
}

/// An identity that matches none of the app's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied;

// === impl AccessRules ===

impl AccessRules {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.emails.is_empty()
            && self.email_domains.is_empty()
            && self.machines.is_empty()
    }

    /// Decides whether `identity` may reach the app. Rules about people
    /// apply only to people and `allowed_machines` only to machines.
    pub fn check(&self, identity: &Identity) -> Result<Grant, Denied> {
        if self.is_empty() {
            return Ok(Grant::NoRules);
        }
        let grant = match identity.kind {
            IdentityKind::Person => self.check_person(identity),
            IdentityKind::Machine => self
                .machines
                .iter()
                .any(|rule| rule.matches(identity))
                .then_some(Grant::Machine),
        };
        grant.ok_or(Denied)
    }

    fn check_person(&self, identity: &Identity) -> Option<Grant> {
        if let Some(group) = self
            .groups
            .iter()
            .find(|allowed| identity.groups.contains(allowed))
        {
            return Some(Grant::Group(group.clone()));
        }
        let email = identity.email.as_deref()?.to_ascii_lowercase();
        if self.emails.iter().any(|allowed| **allowed == *email) {
            return Some(Grant::Email);
        }
        let (_, domain) = email.rsplit_once('@')?;
        self.email_domains
            .iter()
            .any(|allowed| **allowed == *domain)
            .then_some(Grant::EmailDomain)
    }
}

// === impl MachineRule ===

impl MachineRule {
    /// Parses an `allowed_machines` entry: `NAME` or `ISSUER:IDENTITY`.
    /// Issuer names never contain `:`, so the first `:` separates them.
    pub fn parse(text: &str) -> Self {
        match text.split_once(':') {
            Some((issuer, subject)) => MachineRule::Issuer {
                method: Arc::from(format!("jwt:{issuer}")),
                subject: Arc::from(subject),
            },
            None => MachineRule::Provisioned(Arc::from(text)),
        }
    }

    fn matches(&self, identity: &Identity) -> bool {
        match self {
            MachineRule::Provisioned(name) => {
                *identity.name == **name
                    && matches!(&*identity.method, MACHINE_TOKEN_METHOD | POSTERN_JWT_METHOD)
            }
            MachineRule::Issuer { method, subject } => {
                identity.method == *method && identity.name == *subject
            }
        }
    }
}

// === impl Grant ===

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::NoRules => f.write_str("the app has no access rules"),
            Grant::Group(group) => write!(f, "allowed_groups contains {group:?}"),
            Grant::Email => f.write_str("allowed_emails contains the email"),
            Grant::EmailDomain => f.write_str("allowed_email_domains contains the email's domain"),
            Grant::Machine => f.write_str("allowed_machines contains the machine"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str, email: Option<&str>, groups: &[&str]) -> Identity {
        Identity {
            name: Arc::from(name),
            method: Arc::from("oidc:dex"),
            kind: IdentityKind::Person,
            email: email.map(Arc::from),
            groups: groups.iter().map(|g| Arc::from(*g)).collect(),
        }
    }

    fn machine(name: &str, method: &str) -> Identity {
        Identity::machine(Arc::from(name), Arc::from(method))
    }

    fn rules(groups: &[&str], emails: &[&str], domains: &[&str], machines: &[&str]) -> AccessRules {
        let list = |items: &[&str]| items.iter().map(|i| Arc::from(*i)).collect();
        AccessRules {
            groups: list(groups),
            emails: list(emails),
            email_domains: list(domains),
            machines: machines.iter().map(|m| MachineRule::parse(m)).collect(),
        }
    }

    #[test]
    fn access_rule_table() {
        let open = AccessRules::default();
        let admins = rules(&["admins"], &[], &[], &[]);
        let alice = rules(&[], &["alice@example.com"], &[], &[]);
        let domain = rules(&[], &[], &["example.com"], &[]);
        let bots = rules(&[], &[], &[], &["build-bot", "dex:ci-runner"]);
        let mixed = rules(&["admins"], &[], &["example.com"], &["build-bot"]);

        let alice_admin = person("alice", Some("Alice@Example.com"), &["admins", "dev"]);
        let bob_dev = person("bob", Some("bob@example.com"), &["dev"]);
        let carol_other = person("carol", Some("carol@sub.example.com"), &[]);
        let dave_no_email = person("dave", None, &["dev"]);
        let build_bot = machine("build-bot", "machine_token");
        let client = machine("build-bot", "jwt:postern");
        let forged = machine("build-bot", "jwt:dex");
        let ci = machine("ci-runner", "jwt:dex");
        let ci_other_issuer = machine("ci-runner", "jwt:okta");
        // A person whose name equals a machine's gets nothing from
        // allowed_machines.
        let person_named_bot = person("build-bot", None, &[]);

        let cases: [(&str, &AccessRules, &Identity, Result<Grant, Denied>); 20] = [
            ("no rules, person", &open, &bob_dev, Ok(Grant::NoRules)),
            ("no rules, machine", &open, &build_bot, Ok(Grant::NoRules)),
            (
                "group member",
                &admins,
                &alice_admin,
                Ok(Grant::Group("admins".into())),
            ),
            ("not a member", &admins, &bob_dev, Err(Denied)),
            ("machine vs group rule", &admins, &build_bot, Err(Denied)),
            ("email, any case", &alice, &alice_admin, Ok(Grant::Email)),
            ("other email", &alice, &bob_dev, Err(Denied)),
            ("no email", &alice, &dave_no_email, Err(Denied)),
            ("domain", &domain, &bob_dev, Ok(Grant::EmailDomain)),
            (
                "domain, any case",
                &domain,
                &alice_admin,
                Ok(Grant::EmailDomain),
            ),
            (
                "subdomain is another domain",
                &domain,
                &carol_other,
                Err(Denied),
            ),
            ("machine token", &bots, &build_bot, Ok(Grant::Machine)),
            ("client credentials", &bots, &client, Ok(Grant::Machine)),
            ("same name, remote issuer", &bots, &forged, Err(Denied)),
            ("issuer-qualified", &bots, &ci, Ok(Grant::Machine)),
            ("other issuer", &bots, &ci_other_issuer, Err(Denied)),
            (
                "person named like machine",
                &bots,
                &person_named_bot,
                Err(Denied),
            ),
            (
                "mixed: group",
                &mixed,
                &alice_admin,
                Ok(Grant::Group("admins".into())),
            ),
            ("mixed: machine", &mixed, &build_bot, Ok(Grant::Machine)),
            ("mixed: nobody", &mixed, &dave_no_email, Err(Denied)),
        ];
        for (case, rules, identity, expected) in cases {
            assert_eq!(rules.check(identity), expected, "{case}");
        }
    }

    #[test]
    fn machine_rule_forms() {
        assert_eq!(
            MachineRule::parse("build-bot"),
            MachineRule::Provisioned("build-bot".into())
        );
        assert_eq!(
            MachineRule::parse("dex:svc:with:colons"),
            MachineRule::Issuer {
                method: "jwt:dex".into(),
                subject: "svc:with:colons".into()
            }
        );
    }
}
