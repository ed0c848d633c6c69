//! Login, logout and the password change. Each goes through the API's own handlers
//! (`POST`/`PUT /user/v1/authenticate`), so throttling, the password rule and the audit
//! rows are the API's. The login form, which has no session yet, is protected by a
//! double-submit token: a random value in a SameSite=Strict cookie and in the form.

use crate::dashboard::layout::{DashError, Nav, Page, bare, csrf, done, page, param};
use crate::dashboard::session::{
    COOKIE_NAME, CSRF_FIELD, LOGIN_CSRF, Posted, Session, add_cookie, cookie, read_form, same, set_cookie,
};
use crate::error::{ApiError, Json};
use crate::routes::session::{self as api, Login, Origin, PasswordChange};
use crate::state::AppState;
use axum::extract::{RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

fn login_page(s: &AppState, status: StatusCode, error: Option<&str>, notice: Option<&str>) -> Response {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let body = bare(
        "Log in",
        html! {
            main.narrow {
                h1 { "certfleet" }
                @if let Some(n) = notice { p.notice role="status" { (n) } }
                @if let Some(e) = error { p.notice.error role="alert" { (e) } }
                form.stack method="post" action="/login" {
                    input type="hidden" name=(CSRF_FIELD) value=(token);
                    label for="username" { "Username" }
                    input #username name="username" autocomplete="username" required autofocus;
                    label for="password" { "Password" }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    button type="submit" { "Log in" }
                }
            }
        },
    );
    let mut res = (status, body).into_response();
    add_cookie(res.headers_mut(), set_cookie(s, LOGIN_CSRF, &token, 3600));
    res
}

/// `GET /login`.
pub async fn form(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    login_page(&s, StatusCode::OK, None, param(q.as_deref(), "notice").as_deref())
}

/// `POST /login`: checks the double-submit token, then logs in through the API.
pub async fn submit(State(s): State<AppState>, o: Origin, req: Request) -> Page {
    let expected = cookie(req.headers(), LOGIN_CSRF).unwrap_or_default();
    let f = read_form(req).await?;
    if expected.is_empty() || !same(f.get(CSRF_FIELD).unwrap_or_default(), &expected) {
        return Err(DashError::Api(ApiError::Forbidden(
            "the login form's security token is missing or out of date; reload the page and try again".into(),
        )));
    }
    let login = Login {
        username: f.get("username").unwrap_or_default().to_owned(),
        password: f.get("password").unwrap_or_default().to_owned(),
    };
    match api::authenticate(State(s.clone()), o, Json(login)).await {
        Ok(Json(answer)) => {
            let ttl = u64::try_from((answer.expires_at - chrono::Utc::now()).num_seconds()).unwrap_or(0);
            let mut res = Redirect::to("/").into_response();
            add_cookie(res.headers_mut(), set_cookie(&s, COOKIE_NAME, &answer.token, ttl));
            add_cookie(res.headers_mut(), set_cookie(&s, LOGIN_CSRF, "", 0));
            Ok(res)
        }
        Err(e @ (ApiError::Unauthorized(_) | ApiError::TooManyRequests { .. })) => {
            let mut res = login_page(&s, e.status(), Some(&sentence(&e.to_string())), None);
            if let ApiError::TooManyRequests { retry_after, .. } = e {
                res.headers_mut().insert(axum::http::header::RETRY_AFTER, retry_after.into());
            }
            Ok(res)
        }
        Err(e) => Err(e.into()),
    }
}

/// Capitalises the first letter of an API message for a page.
pub fn sentence(text: &str) -> String {
    let mut c = text.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `POST /logout`: audited, then the cookie is removed.
pub async fn logout(State(s): State<AppState>, p: Posted) -> Page {
    api::end_session(&s, &p.session.caller).await?;
    let mut res = done("/login", "You are logged out.");
    add_cookie(res.headers_mut(), set_cookie(&s, COOKIE_NAME, "", 0));
    Ok(res)
}

/// `GET /password`.
pub async fn password_form(s: Session, RawQuery(q): RawQuery) -> Page {
    let notice = param(q.as_deref(), "notice");
    Ok(page(
        &s,
        Nav::Account,
        "Change your password",
        notice.as_deref(),
        html! {
            form.stack.narrow method="post" action="/password" {
                (csrf(&s))
                label for="password" { "Current password" }
                input #password name="password" type="password" autocomplete="current-password" required;
                label for="updated_password" { "New password (at least 12 characters, not your username)" }
                input #updated_password name="updated_password" type="password" autocomplete="new-password"
                    minlength="12" required;
                button type="submit" { "Change password" }
            }
        },
    ))
}

/// `POST /password`: through the API's password change; then the session ends (every
/// earlier token stops working) and the user logs in with the new password.
pub async fn password_submit(State(s): State<AppState>, o: Origin, p: Posted) -> Page {
    let change = PasswordChange {
        username: p.session.caller.actor.clone(),
        password: p.fields.get("password").unwrap_or_default().to_owned(),
        updated_password: p.fields.get("updated_password").unwrap_or_default().to_owned(),
    };
    match api::change_password(State(s.clone()), o, Json(change)).await {
        Ok(_) => {
            let mut res = done("/login", "Your password was changed; log in with the new one.");
            add_cookie(res.headers_mut(), set_cookie(&s, COOKIE_NAME, "", 0));
            Ok(res)
        }
        Err(e @ (ApiError::Unauthorized(_) | ApiError::Invalid { .. } | ApiError::TooManyRequests { .. })) => {
            let text = match &e {
                ApiError::Unauthorized(_) => "The current password is wrong.".to_owned(),
                other => sentence(&other.to_string()),
            };
            Ok(done("/password", &text))
        }
        Err(e) => Err(e.into()),
    }
}
