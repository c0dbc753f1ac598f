# The credential store's OpenBao identity: its KV v2 mount and its tenants'
# Transit keys, nothing else (no sys/, no auth/, no other mount).
# Load with: bao policy write locksmith-credstore deploy/openbao/credstore-policy.hcl
# The mount is `gbo` (seed 000); change the paths if you configure another.

# Secrets, key rings and connection records: every KV v2 operation.
path "gbo/data/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "gbo/metadata/*" {
  capabilities = ["read", "list", "delete"]
}
path "gbo/metadata" {
  capabilities = ["list"]
}
path "gbo/delete/*" {
  capabilities = ["update"]
}
path "gbo/undelete/*" {
  capabilities = ["update"]
}
path "gbo/destroy/*" {
  capabilities = ["update"]
}

# One Transit key per tenant (seed 001: transit/keys/{tenant}): create, read,
# rotate, allow its deletion (shredding) and delete it.
path "transit/keys/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "transit/keys/+/config" {
  capabilities = ["update"]
}
path "transit/keys/+/rotate" {
  capabilities = ["update"]
}
# Wrapping and unwrapping data keys with a tenant's key.
path "transit/encrypt/*" {
  capabilities = ["update"]
}
path "transit/decrypt/*" {
  capabilities = ["update"]
}
path "transit/rewrap/*" {
  capabilities = ["update"]
}
path "transit/datakey/*" {
  capabilities = ["update"]
}

# Renew and look up its own token.
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
