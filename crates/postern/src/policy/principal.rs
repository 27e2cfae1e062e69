//! AWS IAM principals as written in `allowed_principals`.

use std::fmt;
use std::str::FromStr;

/// An IAM principal ARN allowed to connect endpoints to the private gate.
///
/// Only the forms that an endpoint service accepts as a specific principal
/// are valid: an account root, a role or a user. The wildcard `*` is
/// rejected because it would let any AWS account in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    arn: String,
    account: String,
}

// === impl Principal ===

impl Principal {
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// Returns the 12-digit account that owns the principal, and so the account whose
    /// endpoints are admitted.
    pub fn account(&self) -> &str {
        &self.account
    }
}

impl FromStr for Principal {
    type Err = String;

    fn from_str(arn: &str) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "invalid principal {arn:?}: {why}; expected arn:aws:iam::<12-digit account>:root, \
                 arn:aws:iam::<account>:role/<path/name> or arn:aws:iam::<account>:user/<name>"
            )
        };

        let rest = ["arn:aws:iam::", "arn:aws-cn:iam::", "arn:aws-us-gov:iam::"]
            .iter()
            .find_map(|prefix| arn.strip_prefix(prefix))
            .ok_or_else(|| invalid("not an IAM ARN"))?;
        let (account, resource) = rest
            .split_once(':')
            .ok_or_else(|| invalid("missing the resource after the account"))?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the account must be exactly 12 digits"));
        }

        let valid_resource = match resource.split_once('/') {
            None => resource == "root",
            Some(("role" | "user", name)) => valid_iam_path_and_name(name),
            Some(_) => false,
        };
        if !valid_resource {
            return Err(invalid(
                "the resource must be root, role/<name> or user/<name>",
            ));
        }

        Ok(Principal {
            arn: arn.to_owned(),
            account: account.to_owned(),
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// Checks `path/name` against IAM's rules: each segment non-empty and made of
/// letters, digits and `+=,.@_-`, with the name at most 64 characters.
fn valid_iam_path_and_name(text: &str) -> bool {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
    };
    let name = text.rsplit('/').next().unwrap_or_default();
    text.len() <= 512 && name.len() <= 64 && text.split('/').all(segment_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        for arn in [
            "arn:aws:iam::012345678910:root",
            "arn:aws:iam::210987654321:role/inference-clients",
            "arn:aws:iam::210987654321:role/team/ml/inference",
            "arn:aws:iam::210987654321:user/alice",
            "arn:aws-cn:iam::210987654321:root",
        ] {
            let principal: Principal = arn.parse().unwrap_or_else(|e| panic!("{arn}: {e}"));
            assert_eq!(principal.arn(), arn);
        }
        let p: Principal = "arn:aws:iam::012345678910:root".parse().unwrap();
        assert_eq!(p.account(), "012345678910");
    }

    #[test]
    fn rejected_forms() {
        for arn in [
            "*",
            "012345678910",
            "arn:aws:iam::12345:root",
            "arn:aws:iam::0123456789101:root",
            "arn:aws:iam::01234567891a:root",
            "arn:aws:iam::012345678910:group/admins",
            "arn:aws:iam::012345678910:role/",
            "arn:aws:iam::012345678910:role//x",
            "arn:aws:iam::012345678910:role/bad name",
            "arn:aws:iam::012345678910:*",
            "arn:aws:sts::012345678910:assumed-role/x/y",
            "arn:aws:iam::012345678910",
        ] {
            let err = arn.parse::<Principal>().unwrap_err();
            assert!(err.contains(arn), "error should name {arn}: {err}");
        }
    }
}
