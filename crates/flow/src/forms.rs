//! Forms designed with form-js (the bpmn.io form editor): schema checks at deploy time and
//! server-side validation of submitted data, so a client cannot skip a required field or send
//! a value of the wrong kind.

use serde_json::{Map, Value};

/// Input components and what their values must be.
fn value_kind(component_type: &str) -> Option<&'static str> {
    Some(match component_type {
        "textfield" | "textarea" | "datetime" | "radio" | "select" => "text",
        "number" => "number",
        "checkbox" => "boolean",
        "checklist" | "taglist" => "list",
        _ => return None,
    })
}

/// Layout and display components that carry no value.
const DISPLAY: &[&str] = &[
    "text",
    "html",
    "image",
    "spacer",
    "separator",
    "button",
    "group",
    "dynamiclist",
    "iframe",
    "table",
    "expression",
    "filepicker",
];

/// Every input component of a schema, groups flattened.
fn inputs(schema: &Value) -> Vec<&Map<String, Value>> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = vec![schema];
    while let Some(node) = stack.pop() {
        if let Some(components) = node.get("components").and_then(Value::as_array) {
            for c in components.iter().rev() {
                stack.push(c);
                if let Some(obj) = c.as_object() {
                    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
                    if value_kind(ty).is_some() && obj.contains_key("key") {
                        out.push(obj);
                    }
                }
            }
        }
    }
    out.reverse();
    out
}

/// Checks that a schema is one we can validate submissions against.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let components = schema.get("components").and_then(Value::as_array).ok_or("the schema has no components list")?;
    if components.len() > 500 {
        return Err("a form may have at most 500 components".into());
    }
    let mut stack: Vec<&Value> = components.iter().collect();
    let mut keys = std::collections::HashSet::new();
    while let Some(c) = stack.pop() {
        let ty = c.get("type").and_then(Value::as_str).ok_or("a component has no type")?;
        if let Some(children) = c.get("components").and_then(Value::as_array) {
            stack.extend(children);
        }
        if value_kind(ty).is_none() {
            if !DISPLAY.contains(&ty) {
                return Err(format!("component type '{ty}' is not supported"));
            }
            continue;
        }
        let key = c.get("key").and_then(Value::as_str).ok_or_else(|| format!("a '{ty}' component has no key"))?;
        if !keys.insert(key.to_string()) {
            return Err(format!("the key '{key}' is used twice"));
        }
    }
    Ok(())
}

/// Validates submitted data against a schema. Returns the data limited to the form's fields, or
/// every problem found (field key and what is wrong, in Chinese-friendly plain words).
pub fn validate(schema: &Value, data: &Map<String, Value>) -> Result<Map<String, Value>, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Map::new();
    let fields = inputs(schema);
    let known: std::collections::HashSet<&str> =
        fields.iter().filter_map(|f| f.get("key").and_then(Value::as_str)).collect();
    for k in data.keys() {
        if !known.contains(k.as_str()) {
            errors.push(format!("'{k}' is not a field of this form"));
        }
    }
    for f in fields {
        let key = f.get("key").and_then(Value::as_str).unwrap_or_default();
        let label = f.get("label").and_then(Value::as_str).unwrap_or(key);
        let ty = f.get("type").and_then(Value::as_str).unwrap_or_default();
        let v = f.get("validate");
        let rule = |name: &str| v.and_then(|v| v.get(name));
        let disabled = f.get("disabled").and_then(Value::as_bool).unwrap_or(false)
            || f.get("readonly").and_then(Value::as_bool).unwrap_or(false);
        let value = data.get(key).filter(|v| !v.is_null() && *v != &Value::String(String::new()));
        let Some(value) = value else {
            if rule("required").and_then(Value::as_bool).unwrap_or(false) && !disabled {
                errors.push(format!("'{label}' ({key}) is required"));
            }
            continue;
        };
        let kind = value_kind(ty).unwrap_or("text");
        let ok_kind = match kind {
            "text" => value.is_string(),
            "number" => value.is_number() || value.as_str().is_some_and(|s| s.parse::<f64>().is_ok()),
            "boolean" => value.is_boolean(),
            _ => value.as_array().is_some_and(|a| a.iter().all(|x| x.is_string() || x.is_number())),
        };
        if !ok_kind {
            errors.push(format!("'{label}' ({key}) must be {kind}"));
            continue;
        }
        if let Some(s) = value.as_str() {
            let n = s.chars().count() as u64;
            if let Some(min) = rule("minLength").and_then(Value::as_u64)
                && n < min
            {
                errors.push(format!("'{label}' ({key}) needs at least {min} characters"));
            }
            let max = rule("maxLength").and_then(Value::as_u64).unwrap_or(10_000);
            if n > max {
                errors.push(format!("'{label}' ({key}) allows at most {max} characters"));
            }
            if let Some(pattern) = rule("pattern").and_then(Value::as_str)
                && !simple_pattern_matches(pattern, s)
            {
                errors.push(format!("'{label}' ({key}) does not match the required format"));
            }
        }
        if kind == "number" {
            let n = value.as_f64().or_else(|| value.as_str().and_then(|s| s.parse().ok())).unwrap_or(0.0);
            if rule("min").and_then(Value::as_f64).is_some_and(|m| n < m) {
                errors.push(format!("'{label}' ({key}) is below the minimum"));
            }
            if rule("max").and_then(Value::as_f64).is_some_and(|m| n > m) {
                errors.push(format!("'{label}' ({key}) is above the maximum"));
            }
        }
        if matches!(ty, "select" | "radio" | "checklist")
            && let Some(options) = f.get("values").and_then(Value::as_array)
        {
            let allowed: Vec<&Value> = options.iter().filter_map(|o| o.get("value")).collect();
            let picked: Vec<&Value> = match value {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            if picked.iter().any(|p| !allowed.contains(p)) {
                errors.push(format!("'{label}' ({key}) has a value that is not one of the options"));
            }
        }
        out.insert(key.to_string(), value.clone());
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The subset of regular expressions form designers use for formats: `^\d{6}$`-style patterns
/// of literal characters, `\d`, `\w`, `.`, character classes `[..]`, and `{n}` / `{n,m}` / `+` /
/// `*` / `?` quantifiers. Anything fancier is treated as matching (validated in the browser).
fn simple_pattern_matches(pattern: &str, s: &str) -> bool {
    let p = pattern.trim_start_matches('^').trim_end_matches('$');
    let Some(atoms) = parse_atoms(p) else { return true };
    let chars: Vec<char> = s.chars().collect();
    matches_from(&atoms, 0, &chars, 0)
}

#[derive(Debug)]
struct Atom {
    class: Vec<(char, char)>,
    negate: bool,
    any: bool,
    min: usize,
    max: usize,
}

fn parse_atoms(p: &str) -> Option<Vec<Atom>> {
    let cs: Vec<char> = p.chars().collect();
    let mut i = 0;
    let mut atoms = Vec::new();
    while i < cs.len() {
        let mut atom = Atom { class: vec![], negate: false, any: false, min: 1, max: 1 };
        match cs[i] {
            '\\' => {
                i += 1;
                match cs.get(i)? {
                    'd' => atom.class = vec![('0', '9')],
                    'w' => atom.class = vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')],
                    c if !c.is_alphanumeric() => atom.class = vec![(*c, *c)],
                    _ => return None,
                }
            }
            '.' => atom.any = true,
            '[' => {
                i += 1;
                if cs.get(i) == Some(&'^') {
                    atom.negate = true;
                    i += 1;
                }
                while *cs.get(i)? != ']' {
                    let a = if cs[i] == '\\' {
                        i += 1;
                        match cs.get(i)? {
                            'd' => {
                                atom.class.push(('0', '9'));
                                i += 1;
                                continue;
                            }
                            c => *c,
                        }
                    } else {
                        cs[i]
                    };
                    if cs.get(i + 1) == Some(&'-') && cs.get(i + 2).is_some_and(|c| *c != ']') {
                        atom.class.push((a, cs[i + 2]));
                        i += 3;
                    } else {
                        atom.class.push((a, a));
                        i += 1;
                    }
                }
            }
            '(' | ')' | '|' => return None,
            c => atom.class = vec![(c, c)],
        }
        i += 1;
        match cs.get(i) {
            Some('+') => (atom.min, atom.max, i) = (1, usize::MAX, i + 1),
            Some('*') => (atom.min, atom.max, i) = (0, usize::MAX, i + 1),
            Some('?') => (atom.min, atom.max, i) = (0, 1, i + 1),
            Some('{') => {
                let end = cs[i..].iter().position(|c| *c == '}')? + i;
                let inner: String = cs[i + 1..end].iter().collect();
                let (a, b) = match inner.split_once(',') {
                    Some((a, "")) => (a.parse().ok()?, usize::MAX),
                    Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                    None => (inner.parse().ok()?, inner.parse().ok()?),
                };
                (atom.min, atom.max, i) = (a, b, end + 1);
            }
            _ => {}
        }
        atoms.push(atom);
    }
    Some(atoms)
}

fn matches_from(atoms: &[Atom], ai: usize, s: &[char], si: usize) -> bool {
    let Some(a) = atoms.get(ai) else { return si == s.len() };
    let ok = |c: char| a.any || (a.class.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != a.negate);
    let mut n = 0;
    while n < a.min {
        if si + n >= s.len() || !ok(s[si + n]) {
            return false;
        }
        n += 1;
    }
    loop {
        if matches_from(atoms, ai + 1, s, si + n) {
            return true;
        }
        if n >= a.max || si + n >= s.len() || !ok(s[si + n]) {
            return false;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "default", "components": [
            {"type": "textfield", "key": "title", "label": "标题", "validate": {"required": true, "maxLength": 20}},
            {"type": "number", "key": "amount", "label": "金额", "validate": {"min": 0, "max": 1000}},
            {"type": "group", "components": [
                {"type": "select", "key": "level", "label": "等级", "values": [{"label": "一般", "value": "normal"}, {"label": "紧急", "value": "urgent"}]},
                {"type": "textfield", "key": "phone", "label": "电话", "validate": {"pattern": "^1[3-9]\\d{9}$"}}
            ]},
            {"type": "checkbox", "key": "approved", "label": "同意"},
            {"type": "text", "text": "说明"}
        ]})
    }

    #[test]
    fn submissions_are_checked_field_by_field() {
        let s = schema();
        check_schema(&s).unwrap();
        let ok =
            json!({"title": "占道经营", "amount": 12, "level": "urgent", "phone": "13912345678", "approved": true});
        assert_eq!(validate(&s, ok.as_object().unwrap()).unwrap().len(), 5);
        let bad = json!({"amount": 5000, "level": "whatever", "phone": "12345", "approved": "yes", "extra": 1});
        let errs = validate(&s, bad.as_object().unwrap()).unwrap_err();
        for want in [
            "'extra' is not a field",
            "标题",
            "above the maximum",
            "not one of the options",
            "required format",
            "must be boolean",
        ] {
            assert!(errs.iter().any(|e| e.contains(want)), "{want}: {errs:?}");
        }
    }

    #[test]
    fn schemas_with_unknown_components_or_duplicate_keys_are_refused() {
        assert!(check_schema(&json!({"components": [{"type": "script", "key": "x"}]})).is_err());
        assert!(
            check_schema(&json!({"components": [{"type": "textfield", "key": "a"}, {"type": "number", "key": "a"}]}))
                .is_err()
        );
        assert!(check_schema(&json!({"nope": 1})).is_err());
    }

    #[test]
    fn simple_patterns() {
        assert!(simple_pattern_matches("^\\d{6}$", "370102"));
        assert!(!simple_pattern_matches("^\\d{6}$", "37010"));
        assert!(simple_pattern_matches("[A-Z]+-\\d+", "JN-42"));
        assert!(simple_pattern_matches("(a|b)", "anything"), "unsupported patterns pass");
    }
}
