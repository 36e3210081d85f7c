//! `/v1/adapters/isee/...`: a CSI asks for the ISEE attestation of a person.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::problem::Problem;
use super::{AppState, Auth};
use crate::audit::{Action, Entry};
use crate::config::Role;
use crate::isee::{Esito, IseeFailure, Richiesta};

/// Ask INPS for the ISEE attestation of a person (`ConsultazioneAttestazione`). An attestation
/// becomes an `isee.acquisito` event of the tenant, routed like any other, and is cached until its
/// validity ends. `DATI_NON_TROVATI` (no valid attestation) is an answer, not an error.
#[utoipa::path(post, path = "/v1/adapters/isee/consultazioni", tag = "isee",
    request_body = Richiesta,
    responses((status = 200, body = Esito), (status = 400, body = Problem), (status = 403, body = Problem),
              (status = 422, description = "INPS refused the request", body = Problem),
              (status = 503, description = "INPS or PDND unavailable: try again (Retry-After)", body = Problem)),
    security(("bearer" = [])))]
pub async fn consulta(
    State(app): State<AppState>,
    Auth(caller): Auth,
    Json(r): Json<Richiesta>,
) -> Result<Json<Esito>, Response> {
    let Some(isee) = app.isee.as_deref() else {
        return Err(Problem::not_found("the ISEE adapter is not configured ([isee])").into_response());
    };
    let tenant = super::coop::tenant_of(&caller, r.tenant.clone()).map_err(IntoResponse::into_response)?;
    if caller.cooperativa.is_some() || !caller.has(Role::Publisher) || !caller.may_access(&tenant) {
        let why = format!("client '{}' may not ask ISEE attestations for tenant '{tenant}'", caller.name);
        let e = Entry::new(Action::Denied, caller.name.as_str()).tenant(&tenant).detail(&why);
        app.store.audit(vec![e]).await.map_err(|e| Problem::from(e).into_response())?;
        return Err(Problem::forbidden(why).into_response());
    }
    match isee.consulta(&app.pipeline, &caller, tenant, r).await {
        Ok(esito) => {
            app.metrics.isee_consultation(esito.esito);
            Ok(Json(esito))
        }
        Err(e) => {
            app.metrics.isee_consultation(failure_label(&e));
            Err(problem(e))
        }
    }
}

fn failure_label(e: &IseeFailure) -> &'static str {
    match e {
        IseeFailure::Invalid(_) => "invalid_request",
        IseeFailure::Inps(e) if e.is_transient() => "unavailable",
        IseeFailure::Inps(_) | IseeFailure::Attestation(_) => "refused",
        IseeFailure::Event(_) | IseeFailure::Ingest(_) => "error",
    }
}

fn problem(e: IseeFailure) -> Response {
    match e {
        IseeFailure::Invalid(errors) => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid ISEE request",
            "the request breaks the rules listed in errors; nothing was sent to INPS",
        )
        .with_errors(None, errors)
        .into_response(),
        IseeFailure::Inps(e) if e.is_transient() => {
            let retry = match &e {
                csi_gateway_isee::IseeError::Http { retry_after: Some(d), .. } => d.as_secs().max(1),
                _ => 30,
            };
            let mut r = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "inps-unavailable",
                "INPS unavailable",
                e.to_string(),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        IseeFailure::Inps(e) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "inps-refused",
            "INPS refused the request",
            e.to_string(),
        )
        .into_response(),
        IseeFailure::Attestation(why) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "inps-attestation",
            "INPS sent an attestation that cannot be read",
            why,
        )
        .into_response(),
        IseeFailure::Event(why) => {
            Problem::internal(format!("the attestation cannot become an event: {why}")).into_response()
        }
        IseeFailure::Ingest(e) => Problem::from(e).into_response(),
    }
}
