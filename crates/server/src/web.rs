//! The web UI, built by `npm run build` into `web/dist` and embedded in the binary.

use apikit::ApiError;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use kernel::ErrorCode;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Assets;

const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
     script-src 'self'; connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Serves a built asset, or the single-page app's `index.html` for its client-side routes.
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.starts_with("api/") || path == "api" {
        return ApiError(kernel::Error::new(ErrorCode::RouteNotFound, format!("no API route {}", uri.path())))
            .into_response();
    }
    if !path.is_empty()
        && let Some(file) = Assets::get(path)
    {
        let mime = mime_guess::from_path(path).first_or_octet_stream();
        let mut resp = (StatusCode::OK, file.data.into_owned()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(mime.as_ref()).unwrap_or(HeaderValue::from_static("application/octet-stream")),
        );
        let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        return resp;
    }
    match Assets::get("index.html") {
        Some(index) => {
            let mut resp = Html(index.data.into_owned()).into_response();
            let h = resp.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("content-security-policy", HeaderValue::from_static(CSP));
            resp
        }
        None => (
            StatusCode::OK,
            Html(
                "<!doctype html><meta charset=utf-8><title>中枢</title><h1>中枢</h1>\
                 <p>网页界面尚未构建。请运行 <code>make web</code> 后重新编译；API 文档见 <a href=\"/api/docs/\">/api/docs/</a>。</p>",
            ),
        )
            .into_response(),
    }
}
