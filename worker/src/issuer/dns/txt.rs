//! TXT value spelling shared by the HTTP-API providers: Route 53 wants each value as one or
//! more quoted character-strings; Cloudflare may hand a value back quoted or bare.

/// One character-string holds at most 255 bytes.
#[cfg(any(feature = "aws", test))]
const MAX_STRING: usize = 255;

/// Quotes `value` for a zone-file style TXT field: `"..."` with `"` and `\` escaped, split
/// into several strings when longer than 255 bytes (ACME values are 43 bytes). Only Route
/// 53 (the `aws` feature) writes TXT values this way.
#[cfg(any(feature = "aws", test))]
pub(crate) fn quote_txt(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    let mut chunk_len = 0;
    out.push('"');
    for c in value.chars() {
        if chunk_len + c.len_utf8() > MAX_STRING {
            out.push_str("\" \"");
            chunk_len = 0;
        }
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
        chunk_len += c.len_utf8();
    }
    out.push('"');
    out
}

/// Reads a TXT field back: quoted strings are unescaped and joined; a bare field is
/// returned as it is.
pub(crate) fn unquote_txt(field: &str) -> String {
    let field = field.trim();
    if !field.starts_with('"') {
        return field.to_owned();
    }
    let mut out = String::with_capacity(field.len());
    let mut quoted = false;
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', _) => quoted = !quoted,
            ('\\', true) => out.extend(chars.next()),
            (c, true) => out.push(c),
            (_, false) => {} // whitespace between strings
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for v in ["abc", "with \"quotes\" and \\", "", &"x".repeat(600)] {
            assert_eq!(unquote_txt(&quote_txt(v)), v);
        }
        assert_eq!(quote_txt("a\"b"), r#""a\"b""#);
        assert_eq!(quote_txt(&"y".repeat(256)), format!("\"{}\" \"y\"", "y".repeat(255)));
        assert_eq!(unquote_txt("\"ab\" \"cd\""), "abcd");
        assert_eq!(unquote_txt("bare-value"), "bare-value");
    }
}
