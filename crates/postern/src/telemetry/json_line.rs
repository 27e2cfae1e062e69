//! A writer for one flat JSON object, for the access log.
//!
//! serde_json escapes every key and value byte by byte, and the access log
//! writes one line per request. The keys here are fixed and most values are
//! addresses, codes and hex ids that need no escaping, so this writer copies
//! them as they are and hands serde_json only the strings that need escaping
//! and the floats. The timestamp's date and time of day are formatted once
//! per second.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// One JSON object being written to a buffer.
pub struct JsonLine<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonLine<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        buf.push(b'{');
        JsonLine { buf, first: true }
    }

    /// Closes the object.
    pub fn end(self) {
        self.buf.push(b'}');
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.string(value);
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(value) => self.string(value),
            None => self.buf.extend_from_slice(b"null"),
        }
    }

    pub fn u64(&mut self, key: &str, value: u64) {
        self.key(key);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub fn f64(&mut self, key: &str, value: f64) {
        self.key(key);
        // NaN and infinities become null, as serde_json writes them.
        let _ = serde_json::to_writer(&mut *self.buf, &value);
    }

    pub fn opt_f64(&mut self, key: &str, value: Option<f64>) {
        match value {
            Some(value) => self.f64(key, value),
            None => {
                self.key(key);
                self.buf.extend_from_slice(b"null");
            }
        }
    }

    /// Writes the time in RFC 3339 with milliseconds, in UTC.
    pub fn time(&mut self, key: &str, time: SystemTime) {
        self.key(key);
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (seconds, millis) = (since_epoch.as_secs(), since_epoch.subsec_millis());
        self.buf.push(b'"');
        SECOND.with_borrow_mut(|cached| {
            if cached.0 != seconds || cached.1.is_empty() {
                let text = humantime::format_rfc3339_seconds(UNIX_EPOCH + since_epoch).to_string();
                // "YYYY-MM-DDTHH:MM:SS" without the final "Z".
                *cached = (seconds, text.trim_end_matches('Z').to_owned());
            }
            self.buf.extend_from_slice(cached.1.as_bytes());
        });
        self.buf.push(b'.');
        let digit = |n: u32| b'0' + (n % 10) as u8;
        self.buf
            .extend_from_slice(&[digit(millis / 100), digit(millis / 10), digit(millis)]);
        self.buf.extend_from_slice(b"Z\"");
    }

    fn string(&mut self, value: &str) {
        // A fold without an early exit, which the compiler turns into SIMD
        // compares: values are short and seldom need escaping.
        if value.bytes().fold(false, |any, b| any | needs_escape(b)) {
            let _ = serde_json::to_writer(&mut *self.buf, value);
        } else {
            self.buf.push(b'"');
            self.buf.extend_from_slice(value.as_bytes());
            self.buf.push(b'"');
        }
    }
}

thread_local! {
    /// The last second formatted on this thread, and its text.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Checks whether JSON needs `byte` escaped inside a string.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(write: impl FnOnce(&mut JsonLine<'_>)) -> serde_json::Value {
        let mut buf = Vec::new();
        let mut json = JsonLine::new(&mut buf);
        write(&mut json);
        json.end();
        serde_json::from_slice(&buf).expect("valid JSON")
    }

    #[test]
    fn writes_each_kind_of_value() {
        let value = line(|json| {
            json.str("plain", "abc");
            json.str("escaped", "a\"b\\c\n\u{1}é");
            json.opt_str("none", None);
            json.u64("count", 42);
            json.f64("ms", 1.25);
            json.opt_f64("nan", Some(f64::NAN));
            json.opt_f64("missing", None);
        });
        assert_eq!(
            value,
            serde_json::json!({
                "plain": "abc",
                "escaped": "a\"b\\c\n\u{1}é",
                "none": null,
                "count": 42,
                "ms": 1.25,
                "nan": null,
                "missing": null,
            })
        );
    }

    #[test]
    fn writes_times_in_rfc3339_with_millis() {
        let time = UNIX_EPOCH + Duration::from_millis(1_780_000_000_007);
        let again = time + Duration::from_millis(990);
        let next = time + Duration::from_millis(1_000);
        let value = line(|json| {
            json.time("a", time);
            json.time("b", again);
            json.time("c", next);
        });
        assert_eq!(value["a"], "2026-05-28T20:26:40.007Z");
        assert_eq!(value["b"], "2026-05-28T20:26:40.997Z");
        assert_eq!(value["c"], "2026-05-28T20:26:41.007Z");
    }
}
