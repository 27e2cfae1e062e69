//! The Redis session store: the session lives in Redis under a random id,
//! and the cookie carries only that id, still sealed like a whole session.
//!
//! A session's key expires with the session (`SET ... EX` with its
//! remaining lifetime), and sign-out deletes it, so a sign-out takes effect
//! on every replica that shares the Redis server at once. A Redis outage
//! makes [`RedisStore`] calls fail with [`SessionError::Unavailable`], and
//! the gate returns 503 for the request instead of crashing.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ExistenceCheck, SetExpiry, SetOptions};
use tokio::sync::OnceCell;

use super::SessionError;
use crate::config::identity::RedisConfig;

/// Prefix of every session key, so the keys can share a Redis server.
const KEY_PREFIX: &str = "postern:session:";
/// Time to open a connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time to wait for one command's reply; past it the request gets 503.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to the Redis server that stores the sessions.
pub struct RedisStore {
    client: redis::Client,
    /// Connected on first use, so postern starts (and reports the outage
    /// per request) while Redis is down. A failed connect is tried again by
    /// the next request.
    connection: OnceCell<ConnectionManager>,
    /// The server's URL for log lines, without user info. The config
    /// rejects credentials in it, and this masks any that get through.
    server_url: String,
}

// === impl RedisStore ===

impl RedisStore {
    /// Reads the password and parses the URL; connects on first use.
    pub fn new(config: &RedisConfig) -> Result<Self, String> {
        let server_url = crate::redact::url_userinfo(&config.url).into_owned();
        let mut info = redis::IntoConnectionInfo::into_connection_info(config.url.as_str())
            .map_err(|e| format!("invalid Redis URL {server_url:?}: {e}"))?;
        if let Some(source) = &config.password {
            let password = source.read()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.trim_end_matches(['\r', '\n']));
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info)
            .map_err(|e| format!("invalid Redis URL {server_url:?}: {e}"))?;
        Ok(RedisStore {
            client,
            connection: OnceCell::new(),
            server_url,
        })
    }

    /// Reads the session stored under `id`.
    pub async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, SessionError> {
        let mut connection = self.connection().await?;
        let found: Option<Vec<u8>> = timed(connection.get(key(id)))
            .await
            .map_err(|e| self.unavailable("GET", e))?;
        Ok(found)
    }

    /// Stores a session under `id` for `ttl_secs` seconds.
    pub async fn set(&self, id: &str, value: &[u8], ttl_secs: u64) -> Result<(), SessionError> {
        let mut connection = self.connection().await?;
        timed(connection.set_ex::<_, _, ()>(key(id), value, ttl_secs.max(1)))
            .await
            .map_err(|e| self.unavailable("SET", e))
    }

    /// Overwrites the session stored under `id` for `ttl_secs` seconds, only
    /// while it exists (`SET ... XX`), so that a refresh finishing after a
    /// sign-out does not bring the session back. Returns whether it existed.
    pub async fn replace(
        &self,
        id: &str,
        value: &[u8],
        ttl_secs: u64,
    ) -> Result<bool, SessionError> {
        let mut connection = self.connection().await?;
        let options = SetOptions::default()
            .conditional_set(ExistenceCheck::XX)
            .with_expiration(SetExpiry::EX(ttl_secs.max(1)));
        let reply: Option<String> = timed(connection.set_options(key(id), value, options))
            .await
            .map_err(|e| self.unavailable("SET XX", e))?;
        Ok(reply.is_some())
    }

    /// Deletes the session stored under `id`.
    pub async fn delete(&self, id: &str) -> Result<(), SessionError> {
        let mut connection = self.connection().await?;
        timed(connection.del::<_, ()>(key(id)))
            .await
            .map_err(|e| self.unavailable("DEL", e))
    }

    async fn connection(&self) -> Result<ConnectionManager, SessionError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1);
        let connection = self
            .connection
            .get_or_try_init(|| {
                self.client
                    .get_connection_manager_with_config(config.clone())
            })
            .await
            .map_err(|e| self.unavailable("connect", e))?;
        Ok(connection.clone())
    }

    fn unavailable(&self, operation: &'static str, error: redis::RedisError) -> SessionError {
        tracing::error!(server = %self.server_url, operation, error = %error,
            "Redis session store unavailable");
        SessionError::Unavailable(error.to_string())
    }
}

fn key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// Bounds a command by [`RESPONSE_TIMEOUT`] on top of the connection
/// manager's own timeout, so no request waits on Redis for longer.
async fn timed<T>(
    command: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, command).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no reply from Redis in time",
        ))),
    }
}

/// Makes a new random session id: 256 bits in hex.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}
