//! `ApiError`: the one error type of every handler, answered as `application/problem+json`
//! (RFC 9457). Also the extractor wrappers that turn axum's rejections (bad JSON, wrong
//! content type, bad path or query, body too large) into the same problems.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use certfleet_shared::db::DbError;
use certfleet_shared::db::assets::RowError;
use serde::Serialize;
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served (set by the request-id middleware).
    pub static REQUEST_ID: String;
}

/// The current request's id, if inside a request.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// One invalid field of one row.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldProblem {
    /// 1-based row of a multi-asset body (absent for a single object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    /// The field's name.
    pub field: String,
    /// The rule it breaks.
    pub reason: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// The request id (also in the server log and the `x-request-id` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Invalid fields, for 400 and 422.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

/// Every error a handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request (syntax, types, path or query).
    #[error("{detail}")]
    BadRequest {
        /// What is wrong.
        detail: String,
        /// The field, when one is to blame.
        errors: Vec<FieldProblem>,
    },
    /// Well-formed but invalid input.
    #[error("{detail}")]
    Invalid {
        /// Summary.
        detail: String,
        /// Each invalid field.
        errors: Vec<FieldProblem>,
    },
    /// No, bad or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// The role is too low.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// A conflict with the current state (duplicate name, job in flight).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than `max_body_bytes`.
    #[error("{0}")]
    TooLarge(String),
    /// The body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The method is not served on this path.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Throttled; retry after this many seconds.
    #[error("{detail}")]
    TooManyRequests {
        /// What is throttled.
        detail: String,
        /// Seconds until the next attempt may succeed.
        retry_after: u64,
    },
    /// A dependency (database, broker) is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// A real internal fault. The cause is logged with the request id, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// An internal fault from any displayable cause.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    /// A 422 naming one field.
    pub fn field(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::Invalid {
            detail: format!("field `{field}`: {reason}"),
            errors: vec![FieldProblem { row: None, field: field.to_owned(), reason }],
        }
    }

    /// A 400 naming one query or path parameter.
    pub fn bad_param(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::BadRequest {
            detail: format!("parameter `{field}`: {reason}"),
            errors: vec![FieldProblem { row: None, field: field.to_owned(), reason }],
        }
    }

    /// A 422 listing bad rows of an asset body.
    pub fn rows(rows: &[RowError], single: bool) -> Self {
        let errors: Vec<FieldProblem> = rows
            .iter()
            .map(|r| FieldProblem {
                row: (!single).then_some(r.row),
                field: r.error.field.to_owned(),
                reason: r.error.reason.clone(),
            })
            .collect();
        let detail = if single {
            rows.first().map_or_else(|| "invalid asset".to_owned(), |r| r.error.to_string())
        } else {
            format!(
                "{} invalid asset(s), nothing written: {}",
                rows.len(),
                rows.first().map(ToString::to_string).unwrap_or_default()
            )
        };
        Self::Invalid { detail, errors }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let request_id = request_id();
        let detail = match &self {
            Self::Internal(cause) => {
                tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), error = %cause, "internal error");
                "an internal error occurred; the request id is in the server log".to_owned()
            }
            other => other.to_string(),
        };
        let (errors, retry_after) = match self {
            Self::BadRequest { errors, .. } | Self::Invalid { errors, .. } => (errors, None),
            Self::TooManyRequests { retry_after, .. } => (Vec::new(), Some(retry_after)),
            _ => (Vec::new(), None),
        };
        let problem = Problem {
            kind: format!("https://certfleet.dev/problems/{}", slug(status)),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            request_id,
            errors,
        };
        let mut res = (status, axum::Json(problem)).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// The problem type of a status (stable per status).
fn slug(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad-request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not-found",
        405 => "method-not-allowed",
        409 => "conflict",
        413 => "body-too-large",
        415 => "unsupported-media-type",
        422 => "invalid-input",
        429 => "too-many-requests",
        503 => "unavailable",
        _ => "internal",
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            DbError::Conflict(what) => Self::Conflict(what),
            DbError::Invalid(what) => Self::BadRequest { detail: what, errors: Vec::new() },
            DbError::Connect { .. } | DbError::Unreachable { .. } | DbError::ConnectTimeout { .. } => {
                Self::Unavailable("the inventory database is unavailable".to_owned())
            }
            other => Self::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match &r {
            JsonRejection::JsonDataError(e) => {
                // serde's message names the field ("missing field `x`", "unknown field `y`",
                // "invalid type ... at line").
                let text = e.body_text();
                let reason = text.trim_start_matches("Failed to deserialize the JSON body into the target type: ");
                let field = field_of(reason);
                Self::Invalid {
                    detail: format!("the JSON body does not fit: {reason}"),
                    errors: vec![FieldProblem { row: None, field, reason: reason.to_owned() }],
                }
            }
            JsonRejection::JsonSyntaxError(_) => Self::BadRequest {
                detail: format!("the body is not valid JSON: {}", r.body_text()),
                errors: Vec::new(),
            },
            JsonRejection::MissingJsonContentType(_) => {
                Self::UnsupportedMediaType("send the body as JSON with `Content-Type: application/json`".to_owned())
            }
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::TooLarge("the request body is larger than the configured max_body_bytes".to_owned())
            }
            _ => Self::BadRequest { detail: r.body_text(), errors: Vec::new() },
        }
    }
}

/// The field a serde message names: "`name`" in back-quotes, or the path before ": ".
fn field_of(reason: &str) -> String {
    if let Some(start) = reason.find('`')
        && let Some(len) = reason[start + 1..].find('`')
    {
        return reason[start + 1..start + 1 + len].to_owned();
    }
    reason.split(':').next().filter(|p| !p.contains(' ')).unwrap_or("(body)").to_owned()
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::BadRequest { detail: format!("bad path parameter: {}", r.body_text()), errors: Vec::new() }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        let text = r.body_text();
        let reason = text.trim_start_matches("Failed to deserialize query string: ");
        Self::BadRequest {
            detail: format!("bad query parameter: {reason}"),
            errors: vec![FieldProblem { row: None, field: field_of(reason), reason: reason.to_owned() }],
        }
    }
}

/// `axum::Json` whose rejection is an [`ApiError`].
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` whose rejection is an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` whose rejection is an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(field_of("missing field `common_name` at line 1 column 2"), "common_name");
        assert_eq!(field_of("unknown field `colour`, expected one of ..."), "colour");
        assert_eq!(field_of("port: invalid type: string \"x\", expected i64"), "port");
    }
}
