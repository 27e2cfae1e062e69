//! The endpoints file: interface endpoints connected to the cluster's
//! endpoint service, as the control plane last read them from the EC2 API.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::decode::{Cursor, Decoder};
use super::{Problem, Problems, tree};

/// The state of an endpoint connection, as EC2 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    Available,
    PendingAcceptance,
    Pending,
    Rejected,
    Deleting,
    Deleted,
    Failed,
    Expired,
    Partial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    /// The 12-digit account that owns the endpoint.
    pub owner: String,
    pub state: EndpointState,
    pub region: Option<String>,
}

/// The endpoints file, indexed by endpoint id.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    by_id: HashMap<String, Endpoint>,
}

// === impl EndpointState ===

impl EndpointState {
    const NAMES: [(&'static str, EndpointState); 9] = [
        ("available", EndpointState::Available),
        ("pendingAcceptance", EndpointState::PendingAcceptance),
        ("pending", EndpointState::Pending),
        ("rejected", EndpointState::Rejected),
        ("deleting", EndpointState::Deleting),
        ("deleted", EndpointState::Deleted),
        ("failed", EndpointState::Failed),
        ("expired", EndpointState::Expired),
        ("partial", EndpointState::Partial),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, s)| *s == self)
            .map(|(n, _)| *n)
            .unwrap_or("unknown")
    }

    /// Reads a state as EC2 writes it, such as `pendingAcceptance`.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == text)
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "invalid state {text:?}; expected one of: {}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for EndpointState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Endpoints ===

impl Endpoints {
    pub fn load(path: &Path) -> Result<Endpoints, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                file: path.to_owned(),
                line: 0,
                column: 0,
                path: String::new(),
                message: format!(
                    "cannot read the endpoints file {}: {e}; postern reconcile writes it, or \
                     create it with `endpoints: []`",
                    path.display()
                ),
            }])
        })?;
        Endpoints::from_text(path, &text)
    }

    pub fn from_text(path: &Path, text: &str) -> Result<Endpoints, Problems> {
        let mut d = Decoder::new(path);
        let Some(root) = d.parse_document(text) else {
            return Err(Problems(d.problems));
        };
        match decode(&mut d, Cursor::root(&root)) {
            Some(endpoints) if d.problems.is_empty() => Ok(endpoints),
            _ => {
                d.problems.sort_by_key(|p| (p.line, p.column));
                Err(Problems(d.problems))
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&Endpoint> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn from_list(list: impl IntoIterator<Item = Endpoint>) -> Self {
        Endpoints {
            by_id: list.into_iter().map(|e| (e.id.clone(), e)).collect(),
        }
    }
}

fn decode(d: &mut Decoder, at: Cursor<'_>) -> Option<Endpoints> {
    if matches!(at.node.value, tree::Value::Null) {
        d.report(
            at,
            "the endpoints file is empty; write `endpoints: []` for a file without endpoints",
        );
        return None;
    }
    let map = d.mapping(at, &["endpoints"])?;
    let Some((p, n)) = map.get("endpoints") else {
        return Some(Endpoints::default());
    };
    if matches!(n.value, tree::Value::Null) {
        return Some(Endpoints::default());
    }
    let list = d.list(p.cursor(n), endpoint)?;

    let mut by_id = HashMap::new();
    let items = d.sequence(p.cursor(n))?;
    for (i, endpoint) in list.into_iter().enumerate() {
        if by_id.contains_key(&endpoint.id) {
            let path = super::decode::index(p.as_str(), i);
            d.report(
                path.cursor(&items[i]),
                format!("duplicate endpoint id {}", endpoint.id),
            );
            continue;
        }
        by_id.insert(endpoint.id.clone(), endpoint);
    }
    Some(Endpoints { by_id })
}

fn endpoint(d: &mut Decoder, at: Cursor<'_>) -> Option<Endpoint> {
    let map = d.mapping(at, &["id", "owner", "state", "region"])?;

    let mut field = |key: &str, parse: fn(&str) -> Result<String, String>| match map.get(key) {
        Some((p, n)) => d.parse(p.cursor(n), parse),
        None => {
            let path = super::decode::join(map.path(), key);
            d.report(
                path.cursor(at.node),
                format!("missing required key `{key}`"),
            );
            None
        }
    };
    let id = field("id", |s| {
        validate_endpoint_id(s)
            .map(|()| s.to_owned())
            .map_err(|e| e.to_string())
    });
    // Unquoted, YAML reads an account id as a number and drops its leading
    // zeros, so that case gets its own message below, whatever number YAML
    // made of it.
    let unquoted_owner = map
        .get("owner")
        .filter(|(_, n)| matches!(n.value, tree::Value::Integer(_) | tree::Value::Float(_)));
    let owner = match unquoted_owner {
        Some(_) => None,
        None => field("owner", parse_account),
    };
    let state = field("state", |s| EndpointState::parse(s).map(|_| s.to_owned()));
    if let Some((p, n)) = unquoted_owner {
        d.report(
            p.cursor(n),
            "the owner must be quoted, such as \"012345678910\", because YAML reads an \
             unquoted account id as a number and drops its leading zeros",
        );
    }
    let region = match map.get("region") {
        Some((p, n)) => d.string(p.cursor(n)).map(Some),
        None => Some(None),
    };
    Some(Endpoint {
        id: id?,
        owner: owner?,
        state: EndpointState::parse(&state?).ok()?,
        region: region?,
    })
}

fn parse_account(text: &str) -> Result<String, String> {
    if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid owner {text:?}; expected a quoted 12-digit AWS account id"
        ))
    }
}

/// Error for an endpoint id that is not `vpce-` and 8 to 17 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid VPC endpoint id {0:?}; expected vpce- followed by 8 to 17 lowercase hex digits")]
pub struct InvalidEndpointId(pub String);

/// Checks a VPC endpoint id as EC2 writes it: `vpce-` and 8 or 17 lowercase
/// hex digits. Both lengths are in use, so anything from 8 to 17 is accepted.
pub fn validate_endpoint_id(id: &str) -> Result<(), InvalidEndpointId> {
    let hex = id.strip_prefix("vpce-").unwrap_or_default();
    let ok = (8..=17).contains(&hex.len())
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        let shown: String = id.chars().take(64).collect();
        Err(InvalidEndpointId(shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_loads() {
        let text = "endpoints:\n  - id: vpce-0a1b2c3d4e5f60001\n    owner: \"012345678910\"\n    state: available\n  - id: vpce-0a1b2c3d4e5f60003\n    owner: \"012345678910\"\n    state: pendingAcceptance\n";
        let endpoints = Endpoints::from_text(Path::new("e.yaml"), text).unwrap();
        assert_eq!(endpoints.len(), 2);
        let e = endpoints.get("vpce-0a1b2c3d4e5f60003").unwrap();
        assert_eq!(e.state, EndpointState::PendingAcceptance);
        assert_eq!(e.owner, "012345678910");
    }

    #[test]
    fn every_problem_reported() {
        let text = "endpoints:\n  - id: vpce-XYZ\n    owner: 12345\n    state: up\n  - id: vpce-0a1b2c3d\n    owner: \"012345678910\"\n    state: available\n    color: red\n";
        let problems = Endpoints::from_text(Path::new("e.yaml"), text)
            .unwrap_err()
            .0;
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "endpoints[0].id",
                "endpoints[0].owner",
                "endpoints[0].state",
                "endpoints[1].color"
            ]
        );
        assert_eq!(problems[0].line, 2);
    }

    #[test]
    fn unquoted_owner_with_leading_zero() {
        for owner in ["011122223333", "123456789012"] {
            let text = format!(
                "endpoints:\n  - id: vpce-0a1b2c3d\n    owner: {owner}\n    state: available\n"
            );
            let problems = Endpoints::from_text(Path::new("e.yaml"), &text)
                .unwrap_err()
                .0;
            let shown: Vec<String> = problems.iter().map(Problem::to_string).collect();
            assert_eq!(
                shown,
                [
                    "e.yaml:3:12: endpoints[0].owner: the owner must be quoted, such as \
                  \"012345678910\", because YAML reads an unquoted account id as a number and \
                  drops its leading zeros"
                ],
                "{owner}"
            );
        }
    }

    #[test]
    fn empty_file_suggests_empty_list() {
        for text in ["", "# written by hand\n"] {
            let problems = Endpoints::from_text(Path::new("e.yaml"), text)
                .unwrap_err()
                .0;
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(
                problems[0].message,
                "the endpoints file is empty; write `endpoints: []` for a file without endpoints"
            );
        }
        assert!(Endpoints::from_text(Path::new("e.yaml"), "endpoints: []\n").is_ok());
    }

    #[test]
    fn endpoint_id_forms() {
        assert!(validate_endpoint_id("vpce-0a1b2c3d4e5f60001").is_ok());
        assert!(validate_endpoint_id("vpce-0a1b2c3d").is_ok());
        for bad in [
            "",
            "vpce-",
            "vpce-0A1B2C3D",
            "vpce-0a1b2c3",
            "vpce-0a1b2c3d4e5f600011",
            "vpc-0a1b2c3d",
            "vpce-0a1b2c3d\n",
            "vpce-0a1b 2c3d",
        ] {
            assert!(validate_endpoint_id(bad).is_err(), "{bad:?}");
        }
    }
}
