//! Request bodies that several handlers take: a form with only its CSRF token
//! ([`PlainForm`]), a form whose fields depend on the task ([`FieldsForm`]), and a JSON body
//! whose rejection is our error shape ([`ApiJson`]). Each is read after an extractor that
//! authenticates from the request's head.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::CsrfForm;
use super::Failure;

/// A form with nothing but its CSRF token (logout, regrade).
#[derive(Deserialize)]
pub struct PlainForm {
    pub(crate) csrf: String,
}

impl CsrfForm for PlainForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A form whose fields depend on the task (`level.<criterion>`, `note.<criterion>`).
#[derive(Deserialize)]
#[serde(transparent)]
pub struct FieldsForm(pub HashMap<String, String>);

impl FieldsForm {
    pub fn fields(&self) -> &HashMap<String, String> {
        &self.0
    }
}

impl CsrfForm for FieldsForm {
    fn csrf(&self) -> &str {
        self.0.get("csrf").map(String::as_str).unwrap_or("")
    }
}

/// A JSON body whose rejection is our error shape (`{"error": ...}`, 422). Used after an
/// extractor that authenticates from the head, so no body is read before its sender is known.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message: rejection.body_text() }.into_response()),
        }
    }
}
