# Node 2 of a 3-node Raft cluster on one machine (loopback ports 8220 API,
# 8221 cluster). Start all three, `bao operator init` and unseal node 1,
# then `bao operator raft join http://127.0.0.1:8210` and unseal on nodes 2
# and 3. performance_multiplier = 1 makes a lost leader replaced in ~2-3 s
# (field notes: ~9 s with the default). During a leader change standbys
# answer 307 towards the dead leader: Locksmith's client does not follow it
# and retries instead.
storage "raft" {
  path                   = "var/openbao/raft-node2"
  node_id                = "node2"
  performance_multiplier = 1
}

listener "tcp" {
  address         = "127.0.0.1:8220"
  cluster_address = "127.0.0.1:8221"
  tls_disable     = true # loopback only
}

api_addr      = "http://127.0.0.1:8220"
cluster_addr  = "http://127.0.0.1:8221"
ui            = false
