//! Query strings decoded as HTML forms do, without losing bytes.
//!
//! `%XX` escapes and `+` for space, like axum's `Query`, but a repeated
//! parameter is an error, and a value that does not decode to UTF-8 is an
//! error rather than being silently replaced by U+FFFD (which would turn
//! one key into another).

use super::ApiError;
use std::collections::BTreeMap;

/// The decoded parameters of `raw` (the part after `?`), one value each.
pub fn parse(raw: Option<&str>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut params = BTreeMap::new();
    for pair in raw.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(name)?;
        let value = decode_component(value)?;
        if params.contains_key(&name) {
            return Err(ApiError::bad_request(format!("query parameter {name:?} is given more than once")));
        }
        params.insert(name, value);
    }
    Ok(params)
}

fn decode_component(raw: &str) -> Result<String, ApiError> {
    let spaced = raw.replace('+', " ");
    let bytes: Vec<u8> = percent_decode(spaced.as_bytes());
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(format!("query component {raw:?} does not decode to UTF-8")))
}

/// `%XX` with two hex digits becomes that byte; any other `%` stays literal.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut at = 0;
    while at < input.len() {
        if input[at] == b'%' {
            if let (Some(high), Some(low)) =
                (input.get(at + 1).copied().and_then(hex), input.get(at + 2).copied().and_then(hex))
            {
                out.push(high << 4 | low);
                at += 3;
                continue;
            }
        }
        out.push(input[at]);
        at += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_a_form() {
        let params = parse(Some("key=a+b%2Bc%20d&consistency=strong&x")).unwrap();
        assert_eq!(params["key"], "a b+c d");
        assert_eq!(params["consistency"], "strong");
        assert_eq!(params["x"], "");
        assert_eq!(parse(Some("key=%zz%4")).unwrap()["key"], "%zz%4");
        assert_eq!(parse(Some("key=%E2%9C%93")).unwrap()["key"], "\u{2713}");
        assert!(parse(None).unwrap().is_empty());
    }

    #[test]
    fn rejects_repeats_and_broken_utf8() {
        assert!(parse(Some("key=a&key=b")).is_err());
        assert!(parse(Some("key=%FF")).is_err());
    }
}
