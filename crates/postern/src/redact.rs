//! Masking of secrets in text that postern prints or logs.

use std::borrow::Cow;

/// The text that replaces the user info of a URL.
const MASK: &str = "***";

/// Replaces the user info (user and password) of a URL with `***`, as in
/// `redis://***@127.0.0.1:6379/0`, so an error message can show the rest.
///
/// This works on the raw text, not on a parsed URL, because the URLs it
/// masks are mostly ones that failed to parse. The authority starts after
/// `://`, or at the start of text without a scheme, and the user info ends
/// at its last `@`. A password may contain `/`, `?` or `#` when it is
/// mistyped, so every `@` after the scheme counts: a URL whose path has an
/// `@` is masked up to it, which hides too much rather than too little.
pub fn url_userinfo(text: &str) -> Cow<'_, str> {
    let start = text.find("://").map_or(0, |i| i + 3);
    match text[start..].rfind('@') {
        Some(at) => Cow::Owned(format!("{}{MASK}{}", &text[..start], &text[start + at..])),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::url_userinfo;

    #[test]
    fn userinfo_masked() {
        let cases = [
            (
                "redis://:hunter2secret@127.0.0.1:6379/0",
                "redis://***@127.0.0.1:6379/0",
            ),
            ("http://user:pw@127.0.0.1:1", "http://***@127.0.0.1:1"),
            ("user:pw@127.0.0.1:1", "***@127.0.0.1:1"),
            ("https://u:p/a?s#s@idp.test/x", "https://***@idp.test/x"),
            ("https://u:p@w@idp.test", "https://***@idp.test"),
        ];
        for (text, masked) in cases {
            assert_eq!(url_userinfo(text), masked, "{text}");
        }
    }

    #[test]
    fn url_without_userinfo_kept() {
        for text in [
            "redis://127.0.0.1:6379/0",
            "http://127.0.0.1:1",
            "",
            "not a url",
        ] {
            assert_eq!(url_userinfo(text), text);
        }
    }
}
