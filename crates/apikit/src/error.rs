//! The one error body: `{code, message, request_id}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kernel::{Error, ErrorCode};
use serde::Serialize;

/// What every failed API call answers.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable snake_case code from the error table (docs/api.md).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Quote this when reporting a problem: it identifies the request in the logs.
    pub request_id: String,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError(pub Error);

pub type ApiResult<T> = Result<T, ApiError>;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// Marks a response as a failure with this code (read by the failure-audit middleware).
#[derive(Debug, Clone, Copy)]
pub struct FailureCode(pub ErrorCode);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let request_id = crate::context::request_id().unwrap_or_default();
        if e.code == ErrorCode::Internal || e.code == ErrorCode::Unavailable {
            tracing::error!(request_id, code = e.code.as_str(), error = ?e.source, "request failed");
        }
        let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody { code: e.code.as_str().into(), message: e.message, request_id };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(secs) = e.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp.extensions_mut().insert(FailureCode(e.code));
        resp
    }
}

/// Shorthand for an error response from a code and message.
pub fn err(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError(Error::new(code, message))
}
