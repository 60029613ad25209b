//! One table of error codes for the whole platform.
//!
//! Every error a client can see has a stable snake_case `code`, an HTTP status and a message a
//! person can act on. Internal causes are logged, never returned.

use std::fmt;

macro_rules! error_codes {
    ($( $variant:ident = ($code:literal, $status:literal, $doc:literal), )*) => {
        /// The stable error codes. Clients match on [`ErrorCode::as_str`]; never rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $( #[doc = $doc] $variant, )* }

        impl ErrorCode {
            /// Every code, in table order (used by docs and tests).
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The stable snake_case code.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }

            /// The HTTP status this code is answered with.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            /// What the code means, for the docs.
            pub fn description(self) -> &'static str {
                match self { $( ErrorCode::$variant => $doc, )* }
            }
        }
    };
}

error_codes! {
    // 400
    BadRequest = ("bad_request", 400, "the request is malformed"),
    InvalidJson = ("invalid_json", 400, "the body is not valid JSON or does not match the expected shape"),
    InvalidQuery = ("invalid_query", 400, "a query-string parameter is missing or malformed"),
    ValidationFailed = ("validation_failed", 422, "a field failed validation; the message names it"),
    InvalidPage = ("invalid_page", 400, "page or page_size is out of range"),
    InvalidSort = ("invalid_sort", 400, "the sort field is not one of the sortable fields"),
    WeakPassword = ("weak_password", 422, "the new password does not meet the password policy"),
    PasswordReused = ("password_reused", 422, "the new password is one of the recently used ones"),
    // 401
    Unauthenticated = ("unauthenticated", 401, "no valid session or credentials were presented"),
    InvalidCredentials = ("invalid_credentials", 401, "username or password is wrong"),
    SessionExpired = ("session_expired", 401, "the session timed out or was revoked; log in again"),
    InvalidTotp = ("invalid_totp", 401, "the one-time code is wrong, expired or already used"),
    InvalidSignature = ("invalid_signature", 401, "the request signature does not verify"),
    StaleTimestamp = ("stale_timestamp", 401, "the signed request's timestamp is outside the allowed clock window"),
    ReplayedNonce = ("replayed_nonce", 401, "the signed request's nonce was already used"),
    // 403
    Forbidden = ("forbidden", 403, "the caller lacks the permission for this action"),
    OutOfScope = ("out_of_scope", 403, "the object lies outside the caller's data scope"),
    AccountLocked = ("account_locked", 403, "too many failed logins; the account is locked for a while"),
    AccountDisabled = ("account_disabled", 403, "the account is disabled"),
    AccountExpired = ("account_expired", 403, "the account has passed its end date"),
    IntegrityViolation = ("integrity_violation", 403, "the stored data (an account, a case) fails its integrity check; the security administrator was alerted"),
    PasswordChangeRequired = ("password_change_required", 403, "the password must be changed before anything else"),
    MfaRequired = ("mfa_required", 403, "a second factor must be verified before anything else"),
    MfaEnrollmentRequired = ("mfa_enrollment_required", 403, "this account must set up two-factor authentication first"),
    CsrfFailed = ("csrf_failed", 403, "the CSRF token is missing or wrong"),
    SeparationOfDuties = ("separation_of_duties", 409, "the change would give one account two of the three administrator roles"),
    GrantExceedsGrantor = ("grant_exceeds_grantor", 403, "a grant may not exceed the grantor's own permissions or data scope"),
    // 404 / 405 / 409 / 413 / 415
    NotFound = ("not_found", 404, "the object does not exist or is not visible to the caller"),
    RouteNotFound = ("route_not_found", 404, "no such API route"),
    MethodNotAllowed = ("method_not_allowed", 405, "the route exists but not with this HTTP method"),
    Conflict = ("conflict", 409, "the change conflicts with the current state"),
    AlreadyExists = ("already_exists", 409, "an object with the same natural key already exists"),
    PayloadTooLarge = ("payload_too_large", 413, "the request body is larger than allowed"),
    UnsupportedMediaType = ("unsupported_media_type", 415, "the request body must be application/json"),
    // 429
    RateLimited = ("rate_limited", 429, "too many requests; retry after the number of seconds in Retry-After"),
    // 5xx
    Internal = ("internal", 500, "an unexpected error; the request id identifies it in the logs"),
    Unavailable = ("unavailable", 503, "a dependency (such as the database) is not reachable"),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error a client may see: a code from the table and a message for a person.
///
/// `source` keeps the internal cause for the logs; it is never sent to clients.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds a client should wait before retrying (rate limiting).
    pub retry_after: Option<u64>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The result type of every service in the platform.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), retry_after: None, source: None }
    }

    /// An internal error: the cause is logged, the client sees a generic message.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error {
            code: ErrorCode::Internal,
            message: "internal error".into(),
            retry_after: None,
            source: Some(cause.into()),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(ErrorCode::RateLimited, format!("too many requests; retry in {retry_after_secs} s"));
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    pub fn with_source(mut self, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.source = Some(cause.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn error_codes_are_unique_snake_case_with_sane_statuses() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s} is not snake_case");
            assert!((400..600).contains(&code.http_status()), "{s} has status {}", code.http_status());
            assert!(!code.description().is_empty());
        }
    }

    #[test]
    fn internal_errors_hide_their_cause_from_the_message() {
        let e = Error::internal(std::io::Error::other("disk on fire at /secret/path"));
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(!e.message.contains("secret"));
    }
}
