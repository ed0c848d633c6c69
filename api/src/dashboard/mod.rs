//! The dashboard: server-rendered pages at `/` on the API's own listener, for the same
//! users, roles and audit log. Each page calls the API's handlers (so their permission
//! check, validation and audit rows), and only renders. Assets are embedded at compile
//! time; the page fetches nothing from any other host.

pub mod assets;
pub mod audit;
pub mod dead;
pub mod layout;
pub mod login;
pub mod overview;
pub mod queues;
pub mod rotations;
pub mod session;
pub mod summary;

use crate::state::AppState;
use axum::Router;
use axum::routing::{get, post};

const STYLE: &str = include_str!("static/style.css");
const SCRIPT: &str = include_str!("static/app.js");

/// The dashboard's routes (merged into the API's router).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::show))
        .route("/queues", get(queues::show))
        .route("/queues/live", get(queues::fragment))
        .route("/dead", get(dead::list))
        .route("/dead/action", post(dead::action))
        .route("/dead/{job_id}", get(dead::detail))
        .route("/assets", get(assets::list))
        .route("/assets/{name}", get(assets::detail))
        .route("/assets/{name}/rotate", post(assets::rotate))
        .route("/assets/{name}/validation", post(assets::validation))
        .route("/rotations", get(rotations::show))
        .route("/audit", get(audit::show))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/password", get(login::password_form).post(login::password_submit))
        .route("/static/style.css", get(|| async { layout::asset("text/css; charset=utf-8", STYLE) }))
        .route("/static/app.js", get(|| async { layout::asset("text/javascript; charset=utf-8", SCRIPT) }))
}
