//! Placeholder templates shared by message templates (`{{name}}`) and connector settings
//! (`${name}`).

/// Replaces every `open name close` in `template` with `lookup(name)` (name trimmed; `None` →
/// nothing). An unclosed placeholder is kept as written.
pub fn fill(template: &str, open: &str, close: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find(open) {
        out.push_str(&rest[..start]);
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(close) else {
            out.push_str(&rest[start..]);
            return out;
        };
        if let Some(v) = lookup(after[..end].trim()) {
            out.push_str(&v);
        }
        rest = &after[end + close.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_filled_and_unclosed_ones_kept() {
        let f = |n: &str| (n == "a").then(|| "1".to_string());
        assert_eq!(super::fill("x{{ a }}y{{b}}z", "{{", "}}", f), "x1yz");
        assert_eq!(super::fill("open ${a", "${", "}", f), "open ${a");
    }
}
