use crate::http::query::QueryParams;
use actix_web::http::header;
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::types::Name;
use crate::http::json::JsonBody;
use crate::http::paging::{List, Page};
use crate::http::principal::Principal;
use crate::http::problem::{denied, ApiError};
use crate::http::views::OrganizationView;
use crate::state::AppState;
use crate::store::organizations::{self, Organization};
use crate::store::write_transaction;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme Corp", "parent_id": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e30"}))]
pub struct CreateOrganizationRequest {
    #[schema(schema_with = crate::http::openapi::display_name_schema)]
    pub name: String,
    /// Defaults to the caller's organization. Must be one you administer, at most 15 levels below the owner organization (organizations nest 16 deep; deeper is 422).
    pub parent_id: Option<Uuid>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrganizationListQuery {
    /// Only the direct children of this organization.
    #[param(example = "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e30")]
    pub parent_id: Option<Uuid>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200, example = 50)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(example = "AQGTpcSMHn0inzprHS4_Sls")]
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationList {
    pub items: Vec<OrganizationView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Create an organization below one you administer.
///
/// Organizations form a tree under the owner organization; a new one is
/// always a descendant of it.
#[utoipa::path(
    tag = "organizations",
    security(("bearer" = [])),
    request_body(content = CreateOrganizationRequest, description = "The new organization's name and, optionally, its parent (default: the caller's organization)"),
    responses(
        (status = 201, description = "Created", body = OrganizationView, headers(("Location" = String, description = "URL of the new organization"))),
        (status = 403, description = "Not an administrator (`forbidden`)", body = crate::http::problem::Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "only administrators may manage organizations and users", "code": "forbidden"})),
        (status = 404, description = "`parent_id` names no organization you can see (`not_found`)", body = crate::http::problem::Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:not_found", "title": "Not found", "status": 404, "detail": "organization not found", "code": "not_found"})),
    )
)]
#[post("/organizations")]
pub async fn create_organization(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonBody<CreateOrganizationRequest>,
) -> Result<HttpResponse, ApiError> {
    let actor = principal.actor();
    actor.may_administer().map_err(|d| denied("organization", d))?;
    let body = body.into_inner();
    let name = Name::parse("name", &body.name)?;
    let parent_id = body.parent_id.unwrap_or(*principal.organization.id);
    let parent = state
        .db(move |conn| Ok(organizations::find(conn, parent_id)?))
        .await?
        .ok_or_else(|| ApiError::not_found("parent organization"))?;
    actor.may_create_org(&parent.org_path()).map_err(|d| denied("parent organization", d))?;
    parent.org_path().has_room_below()?;
    let now = state.clock.now();
    let org = Organization::new_child(Some(&parent), name.into_string(), now);
    let stored = org.clone();
    let (caller, clock) = (principal.standing(), state.clock.clone());
    state
        .db_write(move |conn| {
            write_transaction(conn, |conn| {
                caller.lock_with(conn, &[], &clock)?;
                Ok(organizations::insert(conn, &stored)?)
            })
        })
        .await?;
    tracing::info!(organization_id = %*org.id, by = %actor.id, "organization created");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/organizations/{}", *org.id)))
        .json(OrganizationView::from(&org)))
}

/// List the organizations you administer, newest first.
///
/// super_admin: all; admin: their organization and everything below it.
#[utoipa::path(
    tag = "organizations",
    security(("bearer" = [])),
    params(OrganizationListQuery),
    responses(
        (status = 200, description = "A page of organizations", body = OrganizationList),
        (status = 403, description = "Members see no organizations, not even their own (`forbidden`)", body = crate::http::problem::Problem, content_type = "application/problem+json", example = json!({"type": "urn:actas:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "only administrators may manage organizations and users", "code": "forbidden"})),
    ),
)]
#[get("/organizations")]
pub async fn list_organizations(
    state: web::Data<AppState>,
    principal: Principal,
    query: QueryParams<OrganizationListQuery>,
) -> Result<web::Json<OrganizationList>, ApiError> {
    let actor = principal.actor();
    actor.may_administer().map_err(|d| denied("organization", d))?;
    let query = query.into_inner();
    let page = Page::by_id(List::Organizations, query.limit, query.cursor.as_deref())?;
    let within = actor.listed_orgs().cloned();
    let (fetch, before_id) = (page.fetch_limit(), page.before_id);
    let mut rows = state
        .db(move |conn| {
            Ok(organizations::list(
                conn,
                organizations::ListFilter {
                    within: within.as_ref(),
                    parent_id: query.parent_id,
                    before_id,
                    limit: fetch,
                },
            )?)
        })
        .await?;
    let next_cursor = page.finish(&mut rows, |org| *org.id);
    Ok(web::Json(OrganizationList { items: rows.iter().map(OrganizationView::from).collect(), next_cursor }))
}

/// Read one organization you administer.
///
/// An organization outside your part of the tree answers 404.
#[utoipa::path(
    tag = "organizations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organization id", example = "0193a5c4-7b00-7c11-8e2a-5a0c1d2e3f40")),
    responses(
        (status = 200, description = "The organization", body = OrganizationView),
        (status = 403, description = "Members see no organizations, not even their own (`forbidden`)", body = crate::http::problem::Problem, content_type = "application/problem+json", example = json!({"type": "urn:actas:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "only administrators may manage organizations and users", "code": "forbidden"})),
    ),
)]
#[get("/organizations/{id}")]
pub async fn get_organization(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> Result<web::Json<OrganizationView>, ApiError> {
    let actor = principal.actor();
    actor.may_administer().map_err(|d| denied("organization", d))?;
    let id = id.into_inner();
    let org = state.db(move |conn| Ok(organizations::find(conn, id)?)).await?;
    match org {
        Some(org) if actor.sees_org(&org.org_path()) => Ok(web::Json(OrganizationView::from(&org))),
        _ => Err(ApiError::not_found("organization")),
    }
}
