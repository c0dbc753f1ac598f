# A single OpenBao node for development (not `-dev`: data survives restarts).
# bao server -config=deploy/openbao/dev.hcl; then `bao operator init`, unseal,
# and mount what Locksmith uses:
#   bao secrets enable -path=gbo -version=2 kv
#   bao secrets enable transit
#   bao policy write locksmith-credstore deploy/openbao/credstore-policy.hcl
storage "file" {
  path = "var/openbao/data"
}

listener "tcp" {
  address     = "127.0.0.1:8200"
  tls_disable = true # loopback only; put TLS in front of anything else
}

api_addr      = "http://127.0.0.1:8200"
disable_mlock = true
ui            = false
