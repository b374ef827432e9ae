//! `application/problem+json` (RFC 9457) errors: the one place where a
//! service error becomes an HTTP status and a body naming field and reason.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One thing wrong with a request: which field (a path such as
/// `events[3].user_id`), the batch index if any, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// Path of the offending field, `body` for the request as a whole.
    pub field: String,
    /// Index of the event in the batch, when the request was a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// What is wrong, in words a client developer can act on.
    pub reason: String,
}

impl FieldError {
    /// A field error for `field` (at batch `index`) with `reason`.
    pub fn new(field: &str, index: Option<usize>, reason: String) -> Self {
        Self {
            field: field.to_string(),
            index,
            reason,
        }
    }
}

/// A problem response. `errors` lists every field at fault.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem (relative, documented in the OpenAPI).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Short human summary of the kind.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The fields at fault, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds after which a retry may succeed (429, 503); sent as `Retry-After` too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// On a 503 for a batch the broker may have taken in part: the ids of
    /// its events in request order (the generated ones too), for a retry
    /// that the stores then deduplicate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_ids: Vec<uuid::Uuid>,
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            kind,
            title,
            status: status.as_u16(),
            detail,
            errors: Vec::new(),
            event_ids: Vec::new(),
            retry_after_secs: None,
        }
    }

    /// 400: the body could not be read as JSON.
    pub fn bad_request(detail: &str, errors: Vec<FieldError>) -> Self {
        let detail = first_reason(&errors).unwrap_or_else(|| detail.to_string());
        Self {
            errors,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "/problems/malformed",
                "Malformed request",
                detail,
            )
        }
    }

    /// 401: no usable credentials.
    pub fn unauthorized(detail: String) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "/problems/unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// 413: a body, batch or event over its limit.
    pub fn too_large(errors: Vec<FieldError>) -> Self {
        let detail = first_reason(&errors).unwrap_or_else(|| "request too large".into());
        Self {
            errors,
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "/problems/too-large",
                "Payload too large",
                detail,
            )
        }
    }

    /// 415: a content type or encoding this endpoint does not read.
    pub fn unsupported_media_type(detail: String) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "/problems/unsupported-media-type",
            "Unsupported media type",
            detail,
        )
    }

    /// 422: valid JSON, invalid events.
    pub fn unprocessable(errors: Vec<FieldError>) -> Self {
        let detail = format!("{} invalid field(s); nothing was accepted", errors.len());
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "/problems/invalid-event",
                "Invalid event",
                detail,
            )
        }
    }

    /// 429: over the subject's rate limit.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "/problems/rate-limited",
                "Too many requests",
                "over the rate limit for this subject; nothing was accepted".into(),
            )
        }
    }

    /// 503: a dependency is unavailable; nothing was accepted, retry later.
    pub fn unavailable(detail: String, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "/problems/unavailable",
                "Service unavailable",
                detail,
            )
        }
    }

    /// The same problem naming the request's event ids (see `event_ids`).
    pub fn with_event_ids(mut self, event_ids: Vec<uuid::Uuid>) -> Self {
        self.event_ids = event_ids;
        self
    }

    /// 404 for unknown paths, so even those answer in the same format.
    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "/problems/not-found",
            "Not found",
            format!("no route for {path}"),
        )
    }
}

fn first_reason(errors: &[FieldError]) -> Option<String> {
    errors.first().map(|e| format!("{}: {}", e.field, e.reason))
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
