//! Reading PAN-OS XML API responses (`<response status="success|error" code="N">`) with
//! roxmltree, and writing the little XML the requests carry (escaped text only).

use super::super::DriverError;

/// A successful response's document text, parsed on demand.
pub struct Response(String);

/// Escapes text for an XML element or a single-quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Maps a PAN-OS error code (the `code` attribute) onto the classification.
fn map_error(op: &str, code: Option<u32>, msg: &str) -> DriverError {
    let what = format!("PAN-OS {op}: error {}: {msg}", code.map_or_else(|| "?".to_owned(), |c| c.to_string()));
    match code {
        Some(403 | 16 | 22) => DriverError::Auth(what),
        Some(2..=5 | 11 | 21) => DriverError::Unreachable(what),
        _ => DriverError::Device(what),
    }
}

/// All text under `node`'s `msg` (or `line`) descendants, joined, or the whole node's text.
fn messages(node: roxmltree::Node<'_, '_>) -> String {
    let lines: Vec<&str> = node
        .descendants()
        .filter(|n| n.has_tag_name("msg") || n.has_tag_name("line"))
        .flat_map(|n| n.children().filter_map(|c| c.text()))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let text = if lines.is_empty() { node.descendants().filter_map(|n| n.text()).collect() } else { lines.join("; ") };
    text.chars().take(300).collect()
}

impl Response {
    /// Parses `body`; `status="error"` becomes the mapped `DriverError`.
    pub fn parse(op: &str, body: String) -> Result<Self, DriverError> {
        let doc = roxmltree::Document::parse(&body)
            .map_err(|e| DriverError::Device(format!("PAN-OS {op}: the answer is not XML: {e}")))?;
        let root = doc.root_element();
        if !root.has_tag_name("response") {
            return Err(DriverError::Device(format!("PAN-OS {op}: unexpected <{}> answer", root.tag_name().name())));
        }
        let code = root.attribute("code").and_then(|c| c.trim().parse().ok());
        match root.attribute("status") {
            Some("success") => {}
            Some("error") => return Err(map_error(op, code, &messages(root))),
            other => {
                return Err(DriverError::Device(format!(
                    "PAN-OS {op}: response status {}",
                    other.map_or("(missing)".to_owned(), |s| format!("\"{s}\""))
                )));
            }
        }
        drop(doc);
        Ok(Self(body))
    }

    /// The text of the first element named by `path` (each step a child of the previous;
    /// the first step searched anywhere).
    pub fn text(&self, path: &[&str]) -> Option<String> {
        let doc = roxmltree::Document::parse(&self.0).ok()?;
        let (first, rest) = path.split_first()?;
        doc.descendants().filter(|n| n.has_tag_name(*first)).find_map(|start| {
            let mut node = start;
            for step in rest {
                node = node.children().find(|c| c.has_tag_name(*step))?;
            }
            node.text().map(|t| t.trim().to_owned())
        })
    }

    /// Whether an element named by `path` exists (same lookup as [`Response::text`]).
    pub fn has(&self, path: &[&str]) -> bool {
        let Ok(doc) = roxmltree::Document::parse(&self.0) else { return false };
        let Some((first, rest)) = path.split_first() else { return false };
        doc.descendants().filter(|n| n.has_tag_name(*first)).any(|start| {
            let mut node = Some(start);
            for step in rest {
                node = node.and_then(|n| n.children().find(|c| c.has_tag_name(*step)));
            }
            node.is_some()
        })
    }

    /// Every message line, for errors and logs.
    pub fn messages(&self) -> String {
        roxmltree::Document::parse(&self.0).map(|d| messages(d.root_element())).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_error_and_lookups() {
        let ok = Response::parse("x", "<response status=\"success\"><result><key>K1</key></result></response>".into());
        assert_eq!(ok.unwrap().text(&["result", "key"]).as_deref(), Some("K1"));
        let err = "<response status = 'error' code = '403'><result><msg>Invalid Credential</msg></result></response>";
        assert!(
            matches!(Response::parse("keygen", err.into()), Err(DriverError::Auth(m)) if m.contains("Invalid Credential"))
        );
        let busy = "<response status=\"error\" code=\"21\"><msg><line>busy</line></msg></response>";
        assert!(matches!(Response::parse("x", busy.into()), Err(DriverError::Unreachable(_))));
        assert!(matches!(Response::parse("x", "not xml".into()), Err(DriverError::Device(_))));
        assert_eq!(escape("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;");
    }
}
