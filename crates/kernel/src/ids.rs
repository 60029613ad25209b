//! Typed ids. Every id is a UUIDv7 (time-ordered, so indexes stay compact) shown as text.

/// Declares a typed id wrapping a UUID string.
#[macro_export]
macro_rules! typed_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// A fresh time-ordered id.
            pub fn new() -> Self {
                $name($crate::ids::new_id())
            }

            /// Parses an id from user input.
            pub fn parse(s: &str) -> Result<Self, $crate::Error> {
                $crate::ids::check_id(s).map(|()| $name(s.to_ascii_lowercase()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A new UUIDv7 as lowercase hyphenated text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Checks that `s` is a UUID in canonical text form.
pub fn check_id(s: &str) -> Result<(), crate::Error> {
    match uuid::Uuid::try_parse(s) {
        Ok(_) if s.len() == 36 => Ok(()),
        _ => Err(crate::Error::new(crate::ErrorCode::NotFound, "no object with that id")),
    }
}

#[cfg(test)]
mod tests {
    typed_id!(ThingId);

    #[test]
    fn ids_are_time_ordered_and_parse_back() {
        let a = ThingId::new();
        let b = ThingId::new();
        assert!(a < b);
        assert_eq!(ThingId::parse(a.as_str()).unwrap(), a);
        assert!(ThingId::parse("1 OR 1=1").is_err());
    }
}
