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

# One Transit key per owner (seed 001: transit/keys/{tenant}, and `_system`
# for the system scope, a name no tenant id can take). `+` is one path
# segment: exactly the key, never anything below it. Exactly what the
# credential store does with them and nothing more: create a key (POST on
# transit/keys/<name>, idempotent), allow its deletion and delete it
# (shredding), wrap and unwrap data keys. No read, rotate, export, backup,
# datakey, rewrap or trim: nothing here can take a key out of OpenBao.
# encrypt has no `create`: a wrap never silently recreates a shredded key.
path "transit/keys/+" {
  capabilities = ["create", "update", "delete"]
}
path "transit/keys/+/config" {
  capabilities = ["update"]
}
path "transit/encrypt/+" {
  capabilities = ["update"]
}
path "transit/decrypt/+" {
  capabilities = ["update"]
}

# Renew and look up its own token (AppRole tokens are renewed in the
# background; logging in with AppRole needs no policy).
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
