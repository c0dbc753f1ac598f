//! Where a connection record lives: an owner scope and an integration
//! (design brief §3: connections under their owner at
//! `…/integrations/{integration}`). The resource name and the storage path
//! are the same text, `tenants/{t}/orgs/{o}/integrations/github`; secret
//! names can never start with `integrations`, so no secret reaches it.

use std::fmt;

use crate::{IntegrationId, Scope, secrets::ResourceError};

/// A connection record's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionRef {
    /// Whose connection it is.
    pub scope: Scope,
    /// To what.
    pub integration: IntegrationId,
}

impl ConnectionRef {
    /// Parses `{owner}/integrations/{integration}`.
    pub fn parse(resource: &str) -> Result<Self, ResourceError> {
        // Integration ids hold no '/', so the last separator is the one.
        let (owner, integration) = resource
            .rsplit_once("/integrations/")
            .ok_or(ResourceError::Malformed)?;
        let scope = crate::secrets::scope_of_owner(owner)?;
        let integration =
            IntegrationId::parse(integration).map_err(|_| ResourceError::BadId("integration"))?;
        Ok(Self { scope, integration })
    }

    /// The resource name, the inverse of [`ConnectionRef::parse`].
    pub fn resource_name(&self) -> String {
        format!(
            "{}/integrations/{}",
            self.scope.storage_path(),
            self.integration
        )
    }

    /// Where the record is stored (the resource name itself).
    pub fn storage_path(&self) -> String {
        self.resource_name()
    }
}

impl fmt::Display for ConnectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_owner_and_the_inverse() {
        for name in [
            "system/integrations/github",
            "tenants/acme/integrations/notion",
            "tenants/acme/orgs/sales/integrations/slack",
            "tenants/acme/orgs/sales/bots/b1/integrations/google",
            "tenants/acme/orgs/integrations/users/u1/integrations/jira",
        ] {
            assert_eq!(ConnectionRef::parse(name).unwrap().resource_name(), name);
        }
    }

    #[test]
    fn malformed_names_are_refused_by_part() {
        assert_eq!(
            ConnectionRef::parse("tenants/acme/github"),
            Err(ResourceError::Malformed)
        );
        assert_eq!(
            ConnectionRef::parse("tenants/acme/integrations/Git_Hub"),
            Err(ResourceError::BadId("integration"))
        );
        assert_eq!(
            ConnectionRef::parse("tenants/acme/integrations/a/b"),
            Err(ResourceError::BadId("integration"))
        );
        assert_eq!(
            ConnectionRef::parse("tenants/ACME/integrations/github"),
            Err(ResourceError::BadId("tenant"))
        );
        assert_eq!(
            ConnectionRef::parse("planets/x/integrations/github"),
            Err(ResourceError::Malformed)
        );
    }
}
