//! The router: every endpoint registered through utoipa-axum, so `/openapi.json` is
//! derived from the handlers themselves; the common problem answers, the request id, the
//! body cap and the fallbacks.

pub mod admin;
pub mod assets;
pub mod dlq;
pub mod session;
pub mod system;

use crate::error::{ApiError, Problem, REQUEST_ID};
use crate::state::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use futures_util::FutureExt as _;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Doc, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Page size of list endpoints: 1 to 1000, default 100.
pub fn limit(given: Option<u64>) -> Result<u64, ApiError> {
    match given {
        None => Ok(100),
        Some(n @ 1..=1000) => Ok(n),
        Some(n) => Err(ApiError::bad_param("limit", format!("{n} is not in 1..=1000"))),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "certfleet control plane",
        description = "Inventory, rotations, dead letters, users and API keys. \
        Roles nest: ADMIN ⊃ PRIVILEGED ⊃ DEVELOPER; each operation's `security` names the lowest role it needs."
    ),
    components(schemas(Problem))
)]
struct ApiDoc;

/// Adds the bearer scheme and the problem answers every operation can give.
struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT or cfk_ API key").build(),
            ),
        );
        let problem = |desc: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(desc)
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Problem"))))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in doc.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let mut common = vec![
                    ("400", "Malformed request"),
                    ("404", "Not found"),
                    ("405", "Method not allowed"),
                    ("413", "Body too large"),
                    ("415", "Body is not JSON"),
                    ("422", "Invalid input; `errors` names each field and rule"),
                    ("429", "Too many failed logins; see Retry-After"),
                    ("500", "Internal fault; the request id is in the server log"),
                    ("503", "Database or broker unavailable"),
                ];
                if secured
                    || op
                        .operation_id
                        .as_deref()
                        .is_some_and(|id| id.contains("authenticate") || id.contains("password"))
                {
                    common.push(("401", "No, bad or expired credentials"));
                }
                if secured {
                    common.push(("403", "Role too low"));
                }
                for (code, desc) in common {
                    op.responses.responses.entry(code.to_owned()).or_insert_with(|| problem(desc));
                }
                // Every error answer is a problem document, whatever the handler declared.
                for (code, response) in op.responses.responses.iter_mut() {
                    if code.starts_with('4') || code.starts_with('5') {
                        let desc = match response {
                            RefOr::T(r) => r.description.clone(),
                            RefOr::Ref(_) => "Error".to_owned(),
                        };
                        *response = problem(&desc);
                    }
                }
            }
        }
    }
}

/// The OpenAPI document, derived from the handlers.
pub fn openapi() -> Doc {
    parts().1
}

/// Every endpoint, and the OpenAPI document derived from them.
fn parts() -> (Router<AppState>, Doc) {
    let (router, mut doc) = endpoints().split_for_parts();
    // After the routes are in: the modifier adds the problem answers to every operation.
    Common.modify(&mut doc);
    (router, doc)
}

fn endpoints() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(session::authenticate, session::change_password, session::logout))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(admin::delete_user))
        .routes(routes!(admin::list_keys, admin::create_key))
        .routes(routes!(admin::revoke_key))
        .routes(routes!(admin::validation_set))
        .routes(routes!(admin::validation_unset))
        .routes(routes!(admin::audit_log))
        .routes(routes!(assets::create, assets::update))
        .routes(routes!(assets::delete))
        .routes(routes!(assets::search_assets))
        .routes(routes!(assets::get_asset))
        .routes(routes!(assets::rotations))
        .routes(routes!(assets::rotate))
        .routes(routes!(dlq::list))
        .routes(routes!(dlq::get))
        .routes(routes!(dlq::retry_one))
        .routes(routes!(dlq::retry_many))
        .routes(routes!(dlq::discard))
        .routes(routes!(system::queues))
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
}

/// The complete app: endpoints, `/openapi.json`, fallbacks, body cap and request ids.
pub fn app(state: AppState) -> Router {
    let max_body = state.config.api.max_body_bytes;
    let (router, doc) = parts();
    // The dashboard is served by the same process at `/` (not part of the API document).
    let router = router.merge(crate::dashboard::router()).with_state(state);
    let spec = doc.to_json().unwrap_or_else(|_| "{}".to_owned());
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let spec = spec.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], spec) }
            }),
        )
        .fallback(|| async { ApiError::NotFound("no such endpoint; see /openapi.json".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this method is not served on this path; see /openapi.json".into())
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(request_id))
        .layer(middleware::from_fn(count_request))
}

/// Counts and times every request by its route template (`/api/v1/assets/{name}`, never
/// the path itself, so names and ids never become label values); a path no route
/// matches is counted as `unmatched`.
async fn count_request(req: Request, next: Next) -> Response {
    use certfleet_shared::metrics::{Metric, counter, histogram};
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    histogram!(Metric::ApiRequestDuration.name(), "route" => route.clone()).record(started.elapsed().as_secs_f64());
    counter!(Metric::ApiRequests.name(), "route" => route, "status" => res.status().as_u16().to_string()).increment(1);
    res
}

/// Gives every request an id (the caller's `x-request-id` if sane, else a new UUID),
/// visible to handlers and errors, and echoed in the response.
async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // A panic in a handler is an internal fault like any other: a 500 problem with the
    // request id, logged, instead of a dropped connection.
    let guarded = async {
        match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
            Ok(res) => res,
            Err(_) => ApiError::internal(format!("a handler panicked on {method} {path}")).into_response(),
        }
    };
    let mut res = REQUEST_ID.scope(id.clone(), guarded).await;
    tracing::debug!(request_id = %id, %method, %path, status = res.status().as_u16(), "request");
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}
