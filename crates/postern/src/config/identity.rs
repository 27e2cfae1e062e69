//! The `identities` section beyond static machine tokens: OAuth clients,
//! trusted JWT issuers and postern's own signing keys, as validated data.

use std::path::PathBuf;
use std::time::Duration;

pub use jsonwebtoken::Algorithm;

/// Default clock skew allowed on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Cap on `leeway`: a larger skew would keep expired tokens alive.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Default time between two scheduled fetches of an issuer's JWKS.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// Default shortest time between two fetches of an issuer's JWKS caused by
/// tokens with an unknown key id.
pub const DEFAULT_JWKS_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Default lifetime of the tokens postern's token endpoint issues.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Cap on `token_lifetime`: the tokens cannot be revoked before they lapse.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Algorithms accepted from a trusted issuer when the config lists none.
pub const DEFAULT_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];
/// The issuer name reserved for postern itself, as in `jwt:postern`.
pub const POSTERN_ISSUER_NAME: &str = "postern";

/// Default name of the session cookie.
pub const DEFAULT_COOKIE_NAME: &str = "_postern";
/// Default lifetime of a session, from sign-in.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Shortest session key: the cookie key is derived from it with HKDF, which
/// needs 256 bits of input.
pub const MIN_SESSION_KEY_BYTES: usize = 32;
/// Scopes asked of a provider when the config names none.
pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];

/// `identities.clients`, `identities.jwt_issuers`, `identities.signing`,
/// `identities.sessions`, `identities.providers` and `identities.users`.
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    pub clients: Vec<OAuthClient>,
    pub issuers: Vec<TrustedIssuer>,
    pub signing: Option<Signing>,
    pub sessions: Option<SessionsConfig>,
    pub providers: Vec<ProviderConfig>,
    pub users: Vec<User>,
}

/// A person provisioned in postern, who signs in on postern's login page
/// with a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name typed on the login page; becomes `X-Auth-Request-User`.
    pub name: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// The password's argon2id hash as a PHC string (`$argon2id$v=19$...`),
    /// checked to parse when the config was decoded.
    pub password_argon2id: String,
}

/// Browser sessions: the cookie and the keys that seal it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsConfig {
    /// The first key seals new cookies; every key opens them.
    pub keys: Vec<SecretSource>,
    pub lifetime: Duration,
    pub cookie_name: String,
    /// The cookie's `Domain`: the cluster hostname, so that one sign-in
    /// covers every app.
    pub domain: String,
    /// Whether cookies carry `Secure`: the public gate has TLS.
    pub secure: bool,
    /// Server-side sessions in Redis; `None` keeps the whole session in
    /// the cookie.
    pub redis: Option<RedisConfig>,
}

/// `identities.sessions.redis`: the Redis server that holds the sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://HOST[:PORT][/DB]` or `rediss://...` (TLS), without
    /// credentials.
    pub url: String,
    pub password: Option<SecretSource>,
}

/// An upstream OpenID provider that people sign in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Short name for the login page and `auth_method` (`oidc:<name>`).
    pub name: String,
    /// The issuer URL; the endpoints come from its discovery document.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretSource,
    pub scopes: Vec<String>,
    /// The ID token claims that give the user name, email and groups.
    pub user_claim: String,
    pub email_claim: String,
    pub groups_claim: String,
}

impl IdentityConfig {
    /// Checks whether postern serves `auth.<cluster hostname>`: it does for
    /// its issuer endpoints and for sign-in, through providers or the login
    /// page.
    pub fn serves_auth_host(&self) -> bool {
        self.signing.is_some() || !self.providers.is_empty() || !self.users.is_empty()
    }
}

/// A machine that gets short-lived JWTs from postern's token endpoint with
/// the OAuth 2.0 client-credentials grant.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    /// The client id, which becomes the token's `sub` and the identity.
    pub id: String,
    pub secret_sha256: [u8; 32],
}

/// An external issuer whose bearer JWTs the public gate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    /// Short name for logs and the access log's `auth_method` (`jwt:NAME`).
    pub name: String,
    /// The exact `iss` value; discovery is read from
    /// `<issuer>/.well-known/openid-configuration` unless `jwks_uri` is set.
    pub issuer: String,
    pub jwks_uri: Option<String>,
    /// A token's `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// Signature algorithms accepted; never `none` and never HMAC.
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    /// The claim whose string value becomes the identity.
    pub identity_claim: String,
    pub jwks_refresh_interval: Duration,
    pub jwks_min_refetch_interval: Duration,
}

/// postern as an issuer: its keys and the tokens its token endpoint makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    /// The `iss` of postern's tokens and the issuer of its discovery
    /// document.
    pub issuer: String,
    /// Every key, all published in the JWKS.
    pub keys: Vec<SigningKey>,
    /// Index into `keys` of the key that signs new tokens.
    pub active: usize,
    /// The `aud` of issued tokens, which the public gate accepts.
    pub audience: String,
    pub token_lifetime: Duration,
}

/// One of postern's signing keys: a PKCS#8 PEM private key, P-256 (ES256)
/// or Ed25519 (EdDSA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// The JWK `kid`.
    pub id: String,
    pub source: SecretSource,
}

/// Where a secret is read from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
    /// Written in the vars file itself; for tests only.
    InsecureInline(String),
}

// === impl SecretSource ===

impl SecretSource {
    /// Reads the secret. Errors name the file or variable, never the value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            SecretSource::Env(name) => std::env::var(name).map_err(|e| {
                format!("cannot read the environment variable {name}: {e}; set it or use file:")
            }),
            SecretSource::InsecureInline(value) => Ok(value.clone()),
        }
    }
}

/// Shows where the secret comes from, never the secret.
impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "File({})", path.display()),
            SecretSource::Env(name) => write!(f, "Env({name})"),
            SecretSource::InsecureInline(_) => f.write_str("InsecureInline(<redacted>)"),
        }
    }
}
