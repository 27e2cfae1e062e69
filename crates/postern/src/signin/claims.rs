//! The mapping of a verified ID token's claims to a person: user name,
//! email and groups, as `identities.providers[].claims` names them.

use base64::Engine;

use super::provider::Grant;
use crate::config::identity::ProviderConfig;

/// Maximum length of a mapped claim value, which becomes a header.
const MAX_CLAIM_LEN: usize = 256;

/// Reads the configured claims from a verified ID token.
pub fn map_claims(config: &ProviderConfig, id_token: &str) -> Result<Grant, String> {
    let claims = payload(id_token).ok_or("the ID token's claims do not parse")?;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|v| usable(v))
    };
    let user = text(&config.user_claim)
        .or_else(|| text("sub"))
        .ok_or_else(|| {
            format!(
                "the ID token has no usable {} or sub claim (printable ASCII, at most \
                 {MAX_CLAIM_LEN} characters)",
                config.user_claim
            )
        })?;
    // An address the provider marks as not verified is not used, because
    // per-app rules may admit people by email domain.
    let verified = email_verified(claims.get("email_verified"))?;
    let email = text(&config.email_claim).filter(|_| verified);
    let groups = match claims.get(&config.groups_claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|g| g.as_str())
            .filter(|g| usable(g) && !g.contains(','))
            .map(str::to_owned)
            .collect(),
        Some(serde_json::Value::String(g)) if usable(g) => vec![g.clone()],
        _ => Vec::new(),
    };
    Ok(Grant {
        user: user.to_owned(),
        email: email.map(str::to_owned),
        groups,
        refresh_token: None,
        access_expires_at: None,
        id_token: Some(id_token.to_owned()),
    })
}

/// Reads the `email_verified` claim: a boolean, or the string "true" or
/// "false", which several providers send. A token without the claim, or
/// with null (as openidconnect reads it), does not mark its address as
/// unverified. Any other value is an error, so
/// that no spelling of "no" is read as verified.
fn email_verified(value: Option<&serde_json::Value>) -> Result<bool, String> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(true),
        Some(serde_json::Value::Bool(verified)) => Ok(*verified),
        Some(serde_json::Value::String(text)) if text == "true" => Ok(true),
        Some(serde_json::Value::String(text)) if text == "false" => Ok(false),
        Some(other) => Err(format!(
            "the ID token's email_verified claim is {other}; expected true or false"
        )),
    }
}

/// Decodes the claims of a JWT whose signature was already verified.
fn payload(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let part = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Checks whether a claim value can travel in a request header.
fn usable(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_CLAIM_LEN
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;
    use crate::config::identity::SecretSource;

    fn config() -> ProviderConfig {
        ProviderConfig {
            name: "dex".into(),
            issuer: "https://dex.example.com".into(),
            client_id: "postern".into(),
            client_secret: SecretSource::InsecureInline("s".into()),
            scopes: vec!["openid".into()],
            user_claim: "preferred_username".into(),
            email_claim: "email".into(),
            groups_claim: "groups".into(),
        }
    }

    /// A token with these claims; the signature is not looked at here.
    fn token(claims: serde_json::Value) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn configured_claims_become_the_person() {
        let grant = map_claims(
            &config(),
            &token(json!({
                "sub": "Cg1hbGljZQ", "preferred_username": "alice",
                "email": "alice@example.com", "email_verified": true,
                "groups": ["dev", "ops", 7, "a,b", "caf\u{e9}"],
            })),
        )
        .unwrap();
        assert_eq!(grant.user, "alice");
        assert_eq!(grant.email.as_deref(), Some("alice@example.com"));
        assert_eq!(grant.groups, ["dev", "ops"]);
        assert!(grant.id_token.is_some());
    }

    #[test]
    fn fallbacks_and_unverified_email() {
        let grant = map_claims(
            &config(),
            &token(json!({
                "sub": "Cg1hbGljZQ", "preferred_username": "",
                "email": "mallory@example.com", "email_verified": false,
                "groups": "admins",
            })),
        )
        .unwrap();
        assert_eq!(grant.user, "Cg1hbGljZQ");
        assert_eq!(grant.email, None);
        assert_eq!(grant.groups, ["admins"]);
    }

    #[test]
    fn unusable_user_is_an_error() {
        let long = "x".repeat(MAX_CLAIM_LEN + 1);
        for claims in [json!({ "sub": long }), json!({ "sub": "a\nb" }), json!({})] {
            assert!(
                map_claims(&config(), &token(claims.clone())).is_err(),
                "{claims}"
            );
        }
        assert!(map_claims(&config(), "not-a-jwt").is_err());
    }

    #[test]
    fn email_verified_accepts_booleans_and_their_strings() {
        let cases = [
            (None, Ok(true)),
            (Some(json!(null)), Ok(true)),
            (Some(json!(true)), Ok(true)),
            (Some(json!(false)), Ok(false)),
            (Some(json!("true")), Ok(true)),
            (Some(json!("false")), Ok(false)),
        ];
        for (value, expected) in cases {
            assert_eq!(email_verified(value.as_ref()), expected, "{value:?}");
        }
        for odd in [json!("yes"), json!("False"), json!(1)] {
            let error = email_verified(Some(&odd)).unwrap_err();
            assert!(error.contains("email_verified"), "{error}");
        }
    }

    #[test]
    fn string_false_email_verified_drops_the_email() {
        let claims = json!({
            "sub": "m", "preferred_username": "mallory",
            "email": "mallory@example.com", "email_verified": "false",
        });

        let grant = map_claims(&config(), &token(claims)).unwrap();

        assert_eq!(grant.email, None);
    }
}
