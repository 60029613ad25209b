//! Masking (脱敏) of personal information on output.
//!
//! Rules (see SECURITY.md): ID-card numbers keep the first and the last two characters — the
//! birth-date digits (positions 7-14) never appear; mobiles keep 3 + 4 (`138****1234`); names
//! keep the first character; addresses keep the part up to the district/street; e-mail keeps the
//! first character of the local part. Masking never fails: malformed input is masked whole.

/// The kinds of sensitive value the platform masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitive {
    IdCard,
    Mobile,
    Name,
    Address,
    Email,
}

/// Applies masking unless the caller may see full values (`pi.unmask`).
#[derive(Debug, Clone, Copy)]
pub struct Masker {
    pub unmask: bool,
}

impl Masker {
    pub const MASKED: Masker = Masker { unmask: false };

    pub fn apply(&self, kind: Sensitive, value: &str) -> String {
        if self.unmask { value.to_string() } else { mask(kind, value) }
    }

    pub fn apply_opt(&self, kind: Sensitive, value: Option<&str>) -> Option<String> {
        value.map(|v| self.apply(kind, v))
    }
}

/// Masks `value` as `kind`.
pub fn mask(kind: Sensitive, value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let stars = |k: usize| "*".repeat(k);
    match kind {
        Sensitive::IdCard => {
            if n < 4 {
                return stars(n);
            }
            format!("{}{}{}", chars[0], stars(n - 3), chars[n - 2..].iter().collect::<String>())
        }
        Sensitive::Mobile => {
            let digit_or_star = |c: &char| c.is_ascii_digit() || *c == '*';
            if n == 11 && chars.iter().all(digit_or_star) {
                format!("{}****{}", chars[..3].iter().collect::<String>(), chars[7..].iter().collect::<String>())
            } else if n > 4 {
                format!("{}{}", stars(n - 4), chars[n - 4..].iter().collect::<String>())
            } else {
                stars(n)
            }
        }
        Sensitive::Name => match n {
            0 => String::new(),
            1 => "*".into(),
            _ => format!("{}{}", chars[0], stars(n - 1)),
        },
        Sensitive::Address => {
            // Keep up to the last administrative suffix among the first part (区/县/街道/镇/乡).
            let keep = ["街道", "镇", "乡", "区", "县"]
                .iter()
                .filter_map(|suffix| value.find(suffix).map(|i| value[..i + suffix.len()].chars().count()))
                .max()
                .filter(|k| *k < n)
                .unwrap_or(n / 3);
            format!("{}{}", chars[..keep].iter().collect::<String>(), stars((n - keep).min(8)))
        }
        Sensitive::Email => match value.split_once('@') {
            Some((local, domain)) if !local.is_empty() => {
                let first = local.chars().next().expect("non-empty");
                format!("{first}**@{domain}")
            }
            _ => stars(n),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_card_never_shows_birth_date_digits() {
        for id in ["370102199003071234", "37010219900307123X", "370102900307123"] {
            let m = mask(Sensitive::IdCard, id);
            assert_eq!(m.chars().count(), id.chars().count(), "length kept");
            // 18-digit numbers hold YYYYMMDD at positions 7-14, 15-digit ones YYMMDD at 7-12.
            let birth = if id.len() == 18 { 6..14 } else { 6..12 };
            for (i, c) in m.chars().enumerate() {
                if birth.contains(&i) {
                    assert_eq!(c, '*', "position {i} of {m}");
                }
            }
        }
        assert_eq!(mask(Sensitive::IdCard, "370102199003071234"), "3***************34");
    }

    #[test]
    fn mobile_name_email_address() {
        assert_eq!(mask(Sensitive::Mobile, "13812341234"), "138****1234");
        assert_eq!(mask(Sensitive::Name, "张三丰"), "张**");
        assert_eq!(mask(Sensitive::Email, "li.lei@jinan.gov.cn"), "l**@jinan.gov.cn");
        let a = mask(Sensitive::Address, "山东省济南市历下区泉城路街道某小区3号楼2单元501");
        assert!(a.starts_with("山东省济南市历下区泉城路街道*"), "{a}");
        assert!(!a.contains("501"));
    }

    #[test]
    fn masking_is_total_and_idempotent_on_odd_input() {
        for kind in [Sensitive::IdCard, Sensitive::Mobile, Sensitive::Name, Sensitive::Address, Sensitive::Email] {
            for v in ["", "1", "ab", "🙂🙂🙂", "@", "\u{0}\n", "13812341234", "370102199003071234", "张三"] {
                let once = mask(kind, v);
                if kind != Sensitive::Address {
                    assert_eq!(mask(kind, &once), once, "{kind:?} masking of {v:?} is idempotent");
                }
            }
        }
        assert_eq!(Masker { unmask: true }.apply(Sensitive::Mobile, "13812341234"), "13812341234");
    }
}
