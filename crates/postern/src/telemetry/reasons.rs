//! Every `reason` code the access log can write. docs/observability.md
//! explains each one, and a test keeps the two lists equal.
//!
//! The codes are set as `&'static str` where each decision is made, and
//! this list does not produce them. A debug build panics on an access-log
//! line whose code is missing here, so the integration tests, which run the
//! debug binary, catch a new code that was not added.

/// The reason codes, grouped as docs/observability.md groups them.
pub const REASONS: &[&str] = &[
    // The request pipeline on both gates.
    "authorized",
    "invalid_target",
    "invalid_host",
    "ambiguous_framing",
    "method_not_allowed",
    "unknown_host",
    "health_check",
    "health_check_only",
    "assertion_failed",
    // A reload revoked the connection's admission (the refusal's reason).
    "peer_not_in_vpc",
    "endpoint_unknown",
    "endpoint_not_available",
    "endpoint_owner_not_allowed",
    "gate_disabled",
    // Credentials and access rules on the public gate.
    "credential_missing",
    "credential_invalid",
    "jwt_malformed",
    "jwt_algorithm_not_allowed",
    "jwt_unknown_key",
    "jwt_bad_signature",
    "jwt_wrong_issuer",
    "jwt_wrong_audience",
    "jwt_expired",
    "jwt_not_yet_valid",
    "jwt_issued_in_future",
    "jwt_identity_claim_invalid",
    "session_store_unavailable",
    "session_cookie_conflict",
    "access_rule",
    // The upstream and the streamed bodies.
    "upstream_connect_failed",
    "upstream_connect_timeout",
    "upstream_reset",
    "upstream_response_timeout",
    "upstream_body_idle_timeout",
    "upstream_body_error",
    "total_timeout",
    "client_body_invalid",
    "client_body_timeout",
    "client_closed",
    "client_send_timeout",
    "gateway_shutdown",
    // The auth host: pages, the login form and sign-out.
    "auth_index",
    "unknown_auth_path",
    "login_page",
    "login_no_origin",
    "login_cross_site",
    "login_invalid_form",
    "login_rate_limited",
    "login_failed",
    "login_succeeded",
    "sign_out_confirm",
    "sign_out_cross_site",
    "signed_out",
    // The auth host: sign-in through a provider.
    "sign_in_choice",
    "unknown_provider",
    "provider_unavailable",
    "sign_in_started",
    "sign_in_flow_missing",
    "provider_refused",
    "sign_in_state_mismatch",
    "sign_in_failed",
    "provider_timeout",
    "provider_response_invalid",
    "session_too_large",
    "signed_in",
    // The auth host: postern's issuer and token endpoint.
    "issuer_discovery",
    "issuer_jwks",
    "unknown_issuer_path",
    "invalid_token_request",
    "invalid_request",
    "unsupported_grant_type",
    "invalid_client",
    "server_error",
    "token_issued",
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::REASONS;

    const OBSERVABILITY: &str = include_str!("../../../../docs/observability.md");

    /// Returns the first code of each table row in the doc's reason section,
    /// in order.
    fn documented_reasons() -> Vec<&'static str> {
        let section = OBSERVABILITY
            .split_once("\n### Reasons\n")
            .expect("docs/observability.md has a `### Reasons` section")
            .1;
        let section = section.split("\n#").next().unwrap_or(section);
        section
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|row| row.split_once('`'))
            .map(|(code, _)| code)
            .collect()
    }

    #[test]
    fn reasons_listed_once() {
        let unique: BTreeSet<&str> = REASONS.iter().copied().collect();
        assert_eq!(unique.len(), REASONS.len(), "a code is listed twice");
    }

    #[test]
    fn docs_list_every_reason() {
        let documented = documented_reasons();
        let unique: BTreeSet<&str> = documented.iter().copied().collect();
        assert_eq!(unique.len(), documented.len(), "a code is documented twice");
        let listed: BTreeSet<&str> = REASONS.iter().copied().collect();
        let undocumented: Vec<_> = listed.difference(&unique).collect();
        let unknown: Vec<_> = unique.difference(&listed).collect();
        assert!(
            undocumented.is_empty(),
            "not in docs/observability.md: {undocumented:?}"
        );
        assert!(
            unknown.is_empty(),
            "documented but not in REASONS: {unknown:?}"
        );
    }
}
