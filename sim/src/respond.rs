//! Response building blocks every simulated API shares.

use axum::http::header::{HeaderName, HeaderValue, HOST};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = Json(body).into_response();
    *resp.status_mut() = status;
    resp
}

pub(crate) fn insert_header(resp: &mut Response, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

pub(crate) fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"errorMessages": ["Not found (simulator)"], "errors": {}, "status": 404}),
    )
}

/// `http://{Host}` of the request (`localhost` without a usable `Host`).
pub(crate) fn base_url_from(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A Unix time in a `chrono` format string, UTC (`""` when out of range).
pub(crate) fn utc(unix: i64, format: &str) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format(format).to_string())
        .unwrap_or_default()
}
