//! The gRPC face of the registry: each RPC converts its request to domain
//! values (`convert`), calls [`Registry`], and converts the answer back.

use std::sync::Arc;

use locksmith_auth::{Access, Principal};
use locksmith_domain::{MemberKind, Scope};
use locksmith_errors::ApiError;
use locksmith_proto::registry::v1::{
    self as pb, tenant_registry_service_server::TenantRegistryService,
};
use locksmith_store::DocumentStore;
use tonic::{Request, Response, Status};

use crate::{
    convert::{self, child_scope, org_scope, tenant_id},
    error::{RegistryError, invalid},
    pagination::PageRequest,
    registry::{Registry, describe, listing},
    store::RecordKind,
};

/// The tonic service.
pub struct RegistryApi<S> {
    registry: Arc<Registry<S>>,
}

impl<S> RegistryApi<S> {
    /// Serves `registry` over gRPC.
    pub fn new(registry: Arc<Registry<S>>) -> Self {
        Self { registry }
    }
}

type Rpc<T> = Result<Response<T>, Status>;

/// Confines the call to `scope`'s tenant (defence in depth: the edge checked
/// too). Another tenant answers exactly as if it did not exist.
fn confine(principal: &Principal, scope: &Scope, access: Access) -> Result<(), RegistryError> {
    let Some(tenant) = scope.tenant() else {
        return require_operator(principal);
    };
    principal.authorize(tenant, access).map_err(|denied| {
        RegistryError::Denied(denied.into_api_error(|| {
            RegistryError::NotFound {
                what: describe(&Scope::Tenant(tenant.clone())),
            }
            .into()
        }))
    })
}

/// Deployment-wide calls: operators and suite services acting for themselves.
fn require_operator(principal: &Principal) -> Result<(), RegistryError> {
    principal
        .require_operator()
        .map_err(|denied| RegistryError::Denied(denied.into_api_error(ApiError::internal)))
}

fn required<T>(field: &str, value: Option<T>) -> Result<T, RegistryError> {
    value.ok_or_else(|| invalid(field, "is required"))
}

/// Updates must say which version they are based on (check-and-set).
/// Versions start at 1; on the wire 0 is also how an unset field reads, so
/// the message covers both.
fn based_on(version: u64) -> Result<u64, RegistryError> {
    if version == 0 {
        Err(invalid(
            "version",
            "is required and must be at least 1: the version this change is based on",
        ))
    } else {
        Ok(version)
    }
}

/// Deletes are conditional only when a version is given: the proto documents
/// `version` 0 (unset) as "delete whatever the current version is". A caller
/// of the HTTP API cannot send 0 (the edge refuses it), since a version
/// written there is meant as a condition.
fn delete_condition(version: u64) -> Option<u64> {
    (version != 0).then_some(version)
}

fn page(
    parent: &Scope,
    kind: RecordKind,
    size: i32,
    token: &str,
) -> Result<PageRequest, RegistryError> {
    PageRequest::parse(size, token, &listing(parent, kind))
}

#[tonic::async_trait]
impl<S: DocumentStore> TenantRegistryService for RegistryApi<S> {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Rpc<pb::CreateTenantResponse> {
        let principal = Principal::of(&request)?.clone();
        require_operator(&principal)?;
        let tenant = required("tenant", request.into_inner().tenant)?;
        let (id, spec) = convert::new_tenant(tenant)?;
        let tenant = self.registry.create_tenant(&principal, id, spec).await?;
        Ok(Response::new(pb::CreateTenantResponse {
            tenant: Some(convert::tenant_to_pb(tenant)),
        }))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Rpc<pb::GetTenantResponse> {
        let principal = Principal::of(&request)?.clone();
        let id = tenant_id("tenant_id", &request.into_inner().tenant_id)?;
        confine(&principal, &Scope::Tenant(id.clone()), Access::Read)?;
        let tenant = self.registry.get_tenant(&id).await?;
        Ok(Response::new(pb::GetTenantResponse {
            tenant: Some(convert::tenant_to_pb(tenant)),
        }))
    }

    async fn update_tenant(
        &self,
        request: Request<pb::UpdateTenantRequest>,
    ) -> Rpc<pb::UpdateTenantResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let tenant = required("tenant", request.tenant)?;
        let id = tenant_id("id", &tenant.id)?;
        let version = based_on(tenant.version)?;
        confine(&principal, &Scope::Tenant(id.clone()), Access::Admin)?;
        let patch = convert::tenant_patch(tenant, request.update_mask)?;
        if patch.status.is_some() || patch.quotas.is_some() {
            // A tenant may not lift its own suspension or quotas.
            require_operator(&principal)?;
        }
        let tenant = self.registry.update_tenant(&id, version, patch).await?;
        Ok(Response::new(pb::UpdateTenantResponse {
            tenant: Some(convert::tenant_to_pb(tenant)),
        }))
    }

    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Rpc<pb::DeleteTenantResponse> {
        let principal = Principal::of(&request)?.clone();
        require_operator(&principal)?;
        let request = request.into_inner();
        let id = tenant_id("tenant_id", &request.tenant_id)?;
        self.registry
            .delete_tenant(&principal, &id, delete_condition(request.version))
            .await?;
        Ok(Response::new(pb::DeleteTenantResponse {}))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Rpc<pb::ListTenantsResponse> {
        let principal = Principal::of(&request)?.clone();
        require_operator(&principal)?;
        let request = request.into_inner();
        let page = page(
            &Scope::System,
            RecordKind::Tenant,
            request.page_size,
            &request.page_token,
        )?;
        let page = self.registry.list_tenants(page).await?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: page.items.into_iter().map(convert::tenant_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn create_org(
        &self,
        request: Request<pb::CreateOrgRequest>,
    ) -> Rpc<pb::CreateOrgResponse> {
        let principal = Principal::of(&request)?.clone();
        let org = required("org", request.into_inner().org)?;
        let scope = org_scope(&org.tenant_id, &org.id, "id")?;
        confine(&principal, &scope, Access::Write)?;
        let spec = convert::member_spec(org.display_name, String::new(), org.labels);
        let org = self.registry.create_member(scope, spec).await?;
        Ok(Response::new(pb::CreateOrgResponse {
            org: Some(convert::org_to_pb(org)),
        }))
    }

    async fn get_org(&self, request: Request<pb::GetOrgRequest>) -> Rpc<pb::GetOrgResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let scope = org_scope(&request.tenant_id, &request.org_id, "org_id")?;
        confine(&principal, &scope, Access::Read)?;
        let org = self.registry.get_member(&scope).await?;
        Ok(Response::new(pb::GetOrgResponse {
            org: Some(convert::org_to_pb(org)),
        }))
    }

    async fn update_org(
        &self,
        request: Request<pb::UpdateOrgRequest>,
    ) -> Rpc<pb::UpdateOrgResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let org = required("org", request.org)?;
        let scope = org_scope(&org.tenant_id, &org.id, "id")?;
        confine(&principal, &scope, Access::Write)?;
        let version = based_on(org.version)?;
        let spec = convert::member_spec(org.display_name, String::new(), org.labels);
        let patch = convert::member_patch(MemberKind::Org, spec, request.update_mask)?;
        let org = self.registry.update_member(&scope, version, patch).await?;
        Ok(Response::new(pb::UpdateOrgResponse {
            org: Some(convert::org_to_pb(org)),
        }))
    }

    async fn delete_org(
        &self,
        request: Request<pb::DeleteOrgRequest>,
    ) -> Rpc<pb::DeleteOrgResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let scope = org_scope(&request.tenant_id, &request.org_id, "org_id")?;
        confine(&principal, &scope, Access::Write)?;
        self.registry
            .delete_member(&scope, delete_condition(request.version))
            .await?;
        Ok(Response::new(pb::DeleteOrgResponse {}))
    }

    async fn list_orgs(&self, request: Request<pb::ListOrgsRequest>) -> Rpc<pb::ListOrgsResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let parent = Scope::Tenant(tenant_id("tenant_id", &request.tenant_id)?);
        let kind = MemberKind::Org;
        let page = page(
            &parent,
            RecordKind::Member(kind),
            request.page_size,
            &request.page_token,
        )?;
        confine(&principal, &parent, Access::Read)?;
        let page = self.registry.list_members(&parent, kind, page).await?;
        Ok(Response::new(pb::ListOrgsResponse {
            orgs: page.items.into_iter().map(convert::org_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn create_bot(
        &self,
        request: Request<pb::CreateBotRequest>,
    ) -> Rpc<pb::CreateBotResponse> {
        let principal = Principal::of(&request)?.clone();
        let bot = required("bot", request.into_inner().bot)?;
        let scope = child_scope(MemberKind::Bot, &bot.tenant_id, &bot.org_id, &bot.id, "id")?;
        confine(&principal, &scope, Access::Write)?;
        let spec = convert::member_spec(bot.display_name, String::new(), bot.labels);
        let bot = self.registry.create_member(scope, spec).await?;
        Ok(Response::new(pb::CreateBotResponse {
            bot: Some(convert::bot_to_pb(bot)),
        }))
    }

    async fn get_bot(&self, request: Request<pb::GetBotRequest>) -> Rpc<pb::GetBotResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.into_inner();
        let scope = child_scope(
            MemberKind::Bot,
            &r.tenant_id,
            &r.org_id,
            &r.bot_id,
            "bot_id",
        )?;
        confine(&principal, &scope, Access::Read)?;
        let bot = self.registry.get_member(&scope).await?;
        Ok(Response::new(pb::GetBotResponse {
            bot: Some(convert::bot_to_pb(bot)),
        }))
    }

    async fn update_bot(
        &self,
        request: Request<pb::UpdateBotRequest>,
    ) -> Rpc<pb::UpdateBotResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let bot = required("bot", request.bot)?;
        let scope = child_scope(MemberKind::Bot, &bot.tenant_id, &bot.org_id, &bot.id, "id")?;
        confine(&principal, &scope, Access::Write)?;
        let version = based_on(bot.version)?;
        let spec = convert::member_spec(bot.display_name, String::new(), bot.labels);
        let patch = convert::member_patch(MemberKind::Bot, spec, request.update_mask)?;
        let bot = self.registry.update_member(&scope, version, patch).await?;
        Ok(Response::new(pb::UpdateBotResponse {
            bot: Some(convert::bot_to_pb(bot)),
        }))
    }

    async fn delete_bot(
        &self,
        request: Request<pb::DeleteBotRequest>,
    ) -> Rpc<pb::DeleteBotResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.into_inner();
        let scope = child_scope(
            MemberKind::Bot,
            &r.tenant_id,
            &r.org_id,
            &r.bot_id,
            "bot_id",
        )?;
        confine(&principal, &scope, Access::Write)?;
        self.registry
            .delete_member(&scope, delete_condition(r.version))
            .await?;
        Ok(Response::new(pb::DeleteBotResponse {}))
    }

    async fn list_bots(&self, request: Request<pb::ListBotsRequest>) -> Rpc<pb::ListBotsResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.into_inner();
        let parent = org_scope(&r.tenant_id, &r.org_id, "org_id")?;
        confine(&principal, &parent, Access::Read)?;
        let kind = MemberKind::Bot;
        let page = page(
            &parent,
            RecordKind::Member(kind),
            r.page_size,
            &r.page_token,
        )?;
        let page = self.registry.list_members(&parent, kind, page).await?;
        Ok(Response::new(pb::ListBotsResponse {
            bots: page.items.into_iter().map(convert::bot_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Rpc<pb::CreateUserResponse> {
        let principal = Principal::of(&request)?.clone();
        let user = required("user", request.into_inner().user)?;
        let scope = child_scope(
            MemberKind::User,
            &user.tenant_id,
            &user.org_id,
            &user.id,
            "id",
        )?;
        confine(&principal, &scope, Access::Write)?;
        let spec = convert::member_spec(user.display_name, user.email, user.labels);
        let user = self.registry.create_member(scope, spec).await?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(convert::user_to_pb(user)),
        }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Rpc<pb::GetUserResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.into_inner();
        let scope = child_scope(
            MemberKind::User,
            &r.tenant_id,
            &r.org_id,
            &r.user_id,
            "user_id",
        )?;
        confine(&principal, &scope, Access::Read)?;
        let user = self.registry.get_member(&scope).await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(convert::user_to_pb(user)),
        }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Rpc<pb::UpdateUserResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let user = required("user", request.user)?;
        let scope = child_scope(
            MemberKind::User,
            &user.tenant_id,
            &user.org_id,
            &user.id,
            "id",
        )?;
        confine(&principal, &scope, Access::Write)?;
        let version = based_on(user.version)?;
        let spec = convert::member_spec(user.display_name, user.email, user.labels);
        let patch = convert::member_patch(MemberKind::User, spec, request.update_mask)?;
        let user = self.registry.update_member(&scope, version, patch).await?;
        Ok(Response::new(pb::UpdateUserResponse {
            user: Some(convert::user_to_pb(user)),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Rpc<pb::DeleteUserResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.into_inner();
        let scope = child_scope(
            MemberKind::User,
            &r.tenant_id,
            &r.org_id,
            &r.user_id,
            "user_id",
        )?;
        confine(&principal, &scope, Access::Write)?;
        self.registry
            .delete_member(&scope, delete_condition(r.version))
            .await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Rpc<pb::ListUsersResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.into_inner();
        let parent = org_scope(&r.tenant_id, &r.org_id, "org_id")?;
        confine(&principal, &parent, Access::Read)?;
        let kind = MemberKind::User;
        let page = page(
            &parent,
            RecordKind::Member(kind),
            r.page_size,
            &r.page_token,
        )?;
        let page = self.registry.list_members(&parent, kind, page).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: page.items.into_iter().map(convert::user_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use locksmith_domain::{FieldError, Invalid};

    use super::*;

    #[test]
    fn zero_is_no_basis_for_an_update_and_no_condition_on_a_delete() {
        let Err(RegistryError::Invalid(Invalid(errors))) = based_on(0) else {
            panic!("version 0 accepted for an update");
        };
        assert_eq!(
            errors,
            [FieldError::new(
                "version",
                "is required and must be at least 1: the version this change is based on"
            )]
        );
        assert_eq!(based_on(3).ok(), Some(3));
        assert_eq!(delete_condition(0), None);
        assert_eq!(delete_condition(2), Some(2));
    }
}
