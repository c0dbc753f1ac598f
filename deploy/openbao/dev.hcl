# A single OpenBao node for development (not `-dev`: data survives restarts).
# Raft with one node: OpenBao 2.x has no `file` storage any more ("unknown
# storage type file"); tests/suite/credstore_openbao.rs runs this layout.
# bao server -config=deploy/openbao/dev.hcl; then `bao operator init`, unseal,
# and mount what Locksmith uses:
#   bao secrets enable -path=gbo -version=2 kv
#   bao secrets enable transit
#   bao policy write locksmith-credstore deploy/openbao/credstore-policy.hcl
storage "raft" {
  path                   = "var/openbao/data"
  node_id                = "dev"
  performance_multiplier = 1
}

listener "tcp" {
  address         = "127.0.0.1:8200"
  cluster_address = "127.0.0.1:8201"
  tls_disable     = true # loopback only; put TLS in front of anything else
}

api_addr     = "http://127.0.0.1:8200"
cluster_addr = "http://127.0.0.1:8201"
ui           = false
