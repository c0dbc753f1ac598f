//! The route table and the OpenAPI 3.1 document, built together: every
//! route is registered here through `utoipa_axum::routes!`, so the router
//! and the published contract cannot drift apart.
//!
//! The statuses every route shares (authentication, authorization, limits,
//! backends, bad input) are added to each operation by [`complete`] from
//! what the route is: anonymous or not, with a body or not, with path
//! parameters or not.

use std::sync::OnceLock;

use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, Components, ContentBuilder, RefOr, Response, ResponseBuilder,
        path::Operation,
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};
use utoipa_axum::{
    router::{OpenApiRouter, UtoipaMethodRouter},
    routes,
};

use crate::{
    AppState,
    routes::{
        admin_health, api_keys, connections, integrations, members, ops, providers, proxy, secrets,
        tenants,
    },
};

/// Paths served without credentials by default (seed 000's anonymous paths).
/// The OAuth callback is a provider's redirect of a browser: it carries no
/// credentials and is trusted only through its single-use state.
pub const ANONYMOUS: &[&str] = &[
    "/health",
    "/ready",
    "/openapi.json",
    "/oauth/callback/{integration}",
];

/// Name of the bearer security scheme.
const BEARER: &str = "bearer";

/// The document's fixed parts; paths come from [`routes`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Locksmith",
        description = "Multi-tenant credential platform: the HTTP edge. \
            Authenticate with `Authorization: Bearer <API key or JWT>`. \
            Errors are RFC 9457 problem+json whose `type` is `urn:locksmith:error:<REASON>`."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(locksmith_errors::Problem, locksmith_errors::FieldViolation))
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Components::new);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A Locksmith API key (`lsk_…`) or a JWT access token from a configured OIDC issuer",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every route of the edge with its documentation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::openapi))
        .with_slashes(routes!(proxy::call))
        .routes(routes!(tenants::create))
        .routes(routes!(tenants::list))
        .routes(routes!(admin_health::list))
        .routes(routes!(tenants::get, tenants::patch, tenants::delete))
        .routes(routes!(tenants::status))
        .routes(routes!(members::list_orgs, members::create_org))
        .routes(routes!(
            members::get_org,
            members::patch_org,
            members::delete_org
        ))
        .routes(routes!(members::list_bots, members::create_bot))
        .routes(routes!(
            members::get_bot,
            members::patch_bot,
            members::delete_bot
        ))
        .routes(routes!(members::list_users, members::create_user))
        .routes(routes!(
            members::get_user,
            members::patch_user,
            members::delete_user
        ))
        .routes(routes!(
            api_keys::list_tenant_keys,
            api_keys::create_tenant_key
        ))
        .routes(routes!(api_keys::revoke_tenant_key))
        .routes(routes!(
            api_keys::list_operator_keys,
            api_keys::create_operator_key
        ))
        .routes(routes!(api_keys::revoke_operator_key))
        .routes(routes!(secrets::system::list))
        .routes(routes!(secrets::tenant::list))
        .routes(routes!(secrets::org::list))
        .routes(routes!(secrets::bot::list))
        .routes(routes!(secrets::user::list))
        .with_slashes(routes!(
            secrets::system::get,
            secrets::system::put,
            secrets::system::delete
        ))
        .with_slashes(routes!(
            secrets::tenant::get,
            secrets::tenant::put,
            secrets::tenant::delete
        ))
        .with_slashes(routes!(
            secrets::org::get,
            secrets::org::put,
            secrets::org::delete
        ))
        .with_slashes(routes!(
            secrets::bot::get,
            secrets::bot::put,
            secrets::bot::delete
        ))
        .with_slashes(routes!(
            secrets::user::get,
            secrets::user::put,
            secrets::user::delete
        ))
        .with_slashes(routes!(secrets::resolve_tenant))
        .with_slashes(routes!(secrets::resolve_org))
        .with_slashes(routes!(secrets::resolve_bot))
        .with_slashes(routes!(secrets::resolve_user))
        .routes(routes!(integrations::authorize))
        .routes(routes!(integrations::callback))
        .routes(routes!(connections::tenant::list))
        .routes(routes!(
            connections::tenant::store_credentials,
            connections::tenant::get_credentials,
            connections::tenant::delete_credentials
        ))
        .routes(routes!(connections::tenant::refresh))
        .routes(routes!(connections::org::list))
        .routes(routes!(
            connections::org::store_credentials,
            connections::org::get_credentials,
            connections::org::delete_credentials
        ))
        .routes(routes!(connections::org::refresh))
        .routes(routes!(connections::bot::list))
        .routes(routes!(
            connections::bot::store_credentials,
            connections::bot::get_credentials,
            connections::bot::delete_credentials
        ))
        .routes(routes!(connections::bot::refresh))
        .routes(routes!(connections::user::list))
        .routes(routes!(
            connections::user::store_credentials,
            connections::user::get_credentials,
            connections::user::delete_credentials
        ))
        .routes(routes!(connections::user::refresh))
        .routes(routes!(providers::create, providers::list))
        .routes(routes!(
            providers::get,
            providers::update,
            providers::delete
        ))
}

/// Routes whose last parameter is a secret name, which may hold slashes.
trait WithSlashes {
    /// Registers `routes` as documented (`…/{name}`: a one-segment name)
    /// and serves names of several segments (`…/{name}/{*rest}`) with the
    /// same handlers; the handlers read the name from the whole path
    /// (`extract::secret_path`).
    fn with_slashes(self, routes: UtoipaMethodRouter<AppState>) -> Self;
}

impl WithSlashes for OpenApiRouter<AppState> {
    fn with_slashes(self, (schemas, paths, handlers): UtoipaMethodRouter<AppState>) -> Self {
        let twins: Vec<String> = paths
            .paths
            .keys()
            .map(|path| format!("{path}/{{*rest}}"))
            .collect();
        let mut router = self.routes((schemas, paths, handlers.clone()));
        for twin in twins {
            router = router.route(&twin, handlers.clone());
        }
        router
    }
}

/// The published document, built once: the routes' documentation, the
/// statuses every route shares, and the limits the server enforces
/// ([`crate::contract`]).
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = routes().into_openapi();
        complete(&mut doc);
        let mut json = serde_json::to_value(&doc).unwrap_or_default();
        crate::contract::apply(&mut json);
        json
    })
}

fn problem(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                locksmith_errors::PROBLEM_CONTENT_TYPE,
                ContentBuilder::new()
                    .schema(Some(openapi::Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn add(op: &mut Operation, status: u16, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| problem(description));
}

/// Adds the statuses every route of a kind can answer, and its security.
fn complete(doc: &mut openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let anonymous = ANONYMOUS.contains(&path.as_str());
        let has_path_params = path.contains('{');
        for (method, op) in [
            ("get", item.get.as_mut()),
            ("post", item.post.as_mut()),
            ("put", item.put.as_mut()),
            ("patch", item.patch.as_mut()),
            ("delete", item.delete.as_mut()),
            ("head", item.head.as_mut()),
            ("options", item.options.as_mut()),
        ]
        .into_iter()
        .filter_map(|(m, op)| op.map(|op| (m, op)))
        {
            // Any request can carry a target or headers over the limits.
            add(
                op,
                414,
                "The request target is longer than the edge accepts",
            );
            add(
                op,
                431,
                "The request's headers are larger than the edge accepts",
            );
            if anonymous {
                op.security = Some(Vec::new());
                continue;
            }
            op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
            add(op, 400, "Bad input: the problem's `errors` name each field");
            add(op, 401, "No credentials, or credentials that are not valid");
            add(
                op,
                403,
                "Valid credentials without the role or operator rights this call needs",
            );
            if has_path_params {
                add(
                    op,
                    404,
                    "No such resource (another tenant's resources answer the same)",
                );
            }
            // A version to read is no condition; a version to change or
            // delete, or an expected version in a PUT, is.
            let conditional =
                method != "get" && op.parameters.iter().flatten().any(|p| p.name == "version");
            let creates_or_changes = (method == "post"
                && op.responses.responses.contains_key("201"))
                || method == "patch"
                || method == "put";
            if creates_or_changes || conditional {
                add(
                    op,
                    409,
                    "The id is taken, or the resource is not at the version given",
                );
            }
            if op.request_body.is_some() {
                add(op, 413, "The body is larger than the edge accepts");
                add(op, 415, "The body is not JSON, or is encoded");
            }
            add(
                op,
                429,
                "The tenant's rate limit is used up; see Retry-After and RateLimit",
            );
            add(op, 503, "A backend is unavailable; see Retry-After");
            add(op, 504, "The request took too long");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::document;

    #[test]
    fn request_schemas_say_what_the_parsers_accept() {
        let quotas = &document()["components"]["schemas"]["Quotas"];
        assert_eq!(quotas["additionalProperties"], false, "{quotas}");
        assert!(quotas.get("required").is_none(), "{quotas}");
        assert_eq!(
            quotas["properties"]["requests_per_minute"]["maximum"],
            10_000_000
        );
        let put = &document()["components"]["schemas"]["PutSecret"];
        let said = put["description"].as_str().unwrap();
        assert!(
            said.contains("- system `email`: `smtp-host` (host), `smtp-port` (port)"),
            "{said}"
        );
        assert_eq!(put["properties"]["fields"]["maxProperties"], 64, "{put}");
        let patch = &document()["components"]["schemas"]["PatchTenant"];
        assert_eq!(patch["minProperties"], 2, "{patch}");
        assert_eq!(patch["properties"]["version"]["minimum"], 1, "{patch}");
    }

    #[test]
    fn every_operation_documents_the_limits_and_authenticated_ones_the_refusals() {
        for (path, item) in document()["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                for status in ["414", "431"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
                if !super::ANONYMOUS.contains(&path.as_str()) {
                    for status in ["400", "401", "403", "429", "503", "504"] {
                        assert!(responses.contains_key(status), "{method} {path}: {status}");
                    }
                }
            }
        }
    }
}
