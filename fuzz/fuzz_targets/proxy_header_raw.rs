//! Feeds arbitrary bytes to the PROXY header parser.
//!
//! Beyond "never panics", it checks the properties the connection reader
//! relies on when a header arrives split across reads:
//! - a whole header has a length in `1..=input.len()`;
//! - every shorter prefix of that header is `Incomplete`;
//! - the header followed by any of the input's later bytes parses to the
//!   same header and length, because those bytes belong to the next protocol;
//! - `Incomplete` only for inputs that could start a PROXY header and are
//!   shorter than `MAX_HEADER_BYTES`, so the reader's size cap ends the wait;
//! - `NotProxy` exactly for non-empty inputs that cannot start a header.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::net::proxy_header::{HeaderFault, MAX_HEADER_BYTES, Parsed, could_be_proxy, parse};

/// How many of the bytes after a header are appended one at a time.
const TRAILING_BYTES_CHECKED: usize = 64;

fuzz_target!(|input: &[u8]| {
    let result = parse(input);

    let not_proxy = !input.is_empty() && !could_be_proxy(input);
    assert_eq!(
        matches!(result, Err(HeaderFault::NotProxy)),
        not_proxy,
        "NotProxy must match could_be_proxy, got {result:?}"
    );

    match &result {
        Ok(Parsed::Incomplete) => {
            assert!(
                input.len() < MAX_HEADER_BYTES,
                "Incomplete for {} bytes, at or above the cap",
                input.len()
            );
        }
        Ok(Parsed::Header(_, len)) => check_prefixes(input, &result, *len),
        Err(_) => {}
    }
});

fn check_prefixes(input: &[u8], whole: &Result<Parsed, HeaderFault>, len: usize) {
    assert!(len > 0, "a header of zero bytes");
    assert!(
        len <= input.len(),
        "header length {len} exceeds the input's {} bytes",
        input.len()
    );

    for end in 0..len {
        let prefix = parse(&input[..end]);
        assert_eq!(
            prefix,
            Ok(Parsed::Incomplete),
            "prefix of {end} bytes of a {len}-byte header"
        );
    }

    let last = input.len().min(len + TRAILING_BYTES_CHECKED);
    for end in len..=last {
        let with_trailing = parse(&input[..end]);
        assert_eq!(
            &with_trailing,
            whole,
            "the header followed by {} more bytes",
            end - len
        );
    }
}
