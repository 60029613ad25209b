//! JSON and query extractors that answer bad input with the platform's error body.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use kernel::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, err};

/// A JSON body; malformed or mistyped input becomes `invalid_json` naming the field.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => {
            err(ErrorCode::UnsupportedMediaType, "send the body as JSON with Content-Type: application/json")
        }
        JsonRejection::JsonDataError(e) => {
            err(ErrorCode::InvalidJson, format!("the body does not fit: {}", e.body_text()))
        }
        JsonRejection::JsonSyntaxError(e) => {
            err(ErrorCode::InvalidJson, format!("the body is not valid JSON: {}", e.body_text()))
        }
        JsonRejection::BytesRejection(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            err(ErrorCode::PayloadTooLarge, "the request body is larger than allowed")
        }
        other => err(ErrorCode::BadRequest, other.body_text()),
    }
}

/// Query parameters; bad values become `invalid_query` naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(err(ErrorCode::InvalidQuery, format!("bad query string: {}", e.body_text())))
            }
            Err(other) => Err(err(ErrorCode::InvalidQuery, other.body_text())),
        }
    }
}

/// Paging parameters shared by every list (see kernel::paging for the convention).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-based page number (default 1).
    pub page: Option<i64>,
    /// Items per page (default 20, at most 200).
    pub page_size: Option<i64>,
}

impl PageParams {
    pub fn request(&self) -> Result<kernel::PageRequest, ApiError> {
        kernel::PageRequest::new(self.page, self.page_size).map_err(ApiError)
    }
}

/// Declares the OpenAPI-visible page type of a list endpoint (`{items, total, page, page_size}`)
/// with a conversion from [`kernel::Page`].
#[macro_export]
macro_rules! page_type {
    ($name:ident, $item:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(serde::Serialize, utoipa::ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            pub total: i64,
            pub page: u32,
            pub page_size: u32,
        }

        impl From<kernel::Page<$item>> for $name {
            fn from(p: kernel::Page<$item>) -> Self {
                $name { items: p.items, total: p.total, page: p.page, page_size: p.page_size }
            }
        }
    };
}
