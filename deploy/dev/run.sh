#!/usr/bin/env bash
# `make run`: build the suite, create the dev PKI if missing, start every
# service as its own process on loopback, wait until the edge is ready, print
# how to use it, and stop everything on Ctrl-C (or when any process dies).
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=${PROFILE:-debug}
cargo_flags=()
[ "$profile" = release ] && cargo_flags+=(--release)
cargo build --locked "${cargo_flags[@]}" --bins -p locksmith-cli -p locksmith-registry -p locksmith-credstore -p locksmith-broker -p locksmith-proxy -p locksmith-edge
bin="target/$profile"

# Where state lives and where the processes listen (not LOCKSMITH_* names:
# those are config keys, and the services refuse unknown keys). The defaults match
# deploy/config/*.toml; the variables below override the files' keys, which is
# also how a deployment overrides them (LOCKSMITH_<KEY>, "__" between levels).
home=${STATE_DIR:-var}
registry_addr=${REGISTRY_ADDR:-127.0.0.1:7101}
credstore_addr=${CREDSTORE_ADDR:-127.0.0.1:7102}
broker_addr=${BROKER_ADDR:-127.0.0.1:7103}
proxy_addr=${PROXY_ADDR:-127.0.0.1:7104}
edge_addr=${EDGE_ADDR:-127.0.0.1:8080}
edge_url="http://$edge_addr"
# Another configuration file for the broker or the proxy (the benchmarks use
# their own catalog and egress allow-list); the defaults are the shipped ones.
broker_config=${BROKER_CONFIG:-deploy/config/broker.toml}
proxy_config=${PROXY_CONFIG:-deploy/config/proxy.toml}

mkdir -p "$home/data"
"$bin/locksmith" pki init --dir "$home/pki"
tls() { # the TLS overrides of service $1
  echo "LOCKSMITH_TLS__CA=$home/pki/ca.pem LOCKSMITH_TLS__CERT=$home/pki/$1.pem LOCKSMITH_TLS__KEY=$home/pki/$1-key.pem"
}
pids=()
stop() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo "stopping ${#pids[@]} processes…"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

env $(tls credstore) LOCKSMITH_CONFIG=deploy/config/credstore.toml \
  LOCKSMITH_LISTEN="$credstore_addr" LOCKSMITH_STORAGE__PATH="$home/data/credstore.db" \
  LOCKSMITH_KEYS__MASTER_KEY_FILE="$home/data/credstore-master-key" \
  LOCKSMITH_AUDIT__PATH="$home/data/credstore-audit.jsonl" \
  "$bin/locksmith-credstore" & pids+=($!)
# The credential store first: the registry has it provision and shred tenant
# keys, so it should be listening before the registry takes its first call
# (the registry would answer UNAVAILABLE to tenant creates until then, and it
# finishes interrupted tenant deletes through it as it starts).
port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
for _ in $(seq 1 100); do
  if port_open "$credstore_addr"; then break; fi
  sleep 0.2
done
if ! port_open "$credstore_addr"; then
  echo "the credential store did not start; see the logs above" >&2
  exit 1
fi
env $(tls registry) LOCKSMITH_CONFIG=deploy/config/registry.toml \
  LOCKSMITH_LISTEN="$registry_addr" LOCKSMITH_STORAGE__PATH="$home/data/registry.db" \
  LOCKSMITH_API_KEYS__PEPPER_FILE="$home/data/api-key-pepper" \
  LOCKSMITH_SERVICES__CREDSTORE__URL="https://$credstore_addr" \
  LOCKSMITH_SERVICES__BROKER__URL="https://$broker_addr" \
  "$bin/locksmith-registry" & pids+=($!)
# The broker needs an OAuth app (secret system/secrets/oauth-apps/{integration}) only when a flow
# of that integration starts, so it starts without any. Its public URL is the edge's: redirect
# URIs are {edge}/oauth/callback/{integration}.
env $(tls broker) LOCKSMITH_CONFIG="$broker_config" \
  LOCKSMITH_LISTEN="$broker_addr" LOCKSMITH_STORAGE__PATH="$home/data/broker.db" \
  LOCKSMITH_PUBLIC_URL="$edge_url" \
  LOCKSMITH_SERVICES__CREDSTORE__URL="https://$credstore_addr" \
  LOCKSMITH_SERVICES__REGISTRY__URL="https://$registry_addr" \
  "$bin/locksmith-broker" & pids+=($!)
# The token proxy: calls to integrations' APIs with the connection's credential injected.
env $(tls proxy) LOCKSMITH_CONFIG="$proxy_config" \
  LOCKSMITH_LISTEN="$proxy_addr" LOCKSMITH_AUDIT__PATH="$home/data/proxy-audit.jsonl" \
  LOCKSMITH_SERVICES__BROKER__URL="https://$broker_addr" \
  LOCKSMITH_SERVICES__REGISTRY__URL="https://$registry_addr" \
  "$bin/locksmith-proxy" & pids+=($!)
env $(tls edge) LOCKSMITH_CONFIG=deploy/config/edge.toml \
  LOCKSMITH_LISTEN="$edge_addr" LOCKSMITH_PUBLIC_URL="$edge_url" \
  LOCKSMITH_SERVICES__REGISTRY__URL="https://$registry_addr" \
  LOCKSMITH_SERVICES__CREDSTORE__URL="https://$credstore_addr" \
  LOCKSMITH_SERVICES__BROKER__URL="https://$broker_addr" \
  LOCKSMITH_SERVICES__PROXY__URL="https://$proxy_addr" \
  "$bin/locksmith-edge" & pids+=($!)

for _ in $(seq 1 100); do
  if curl -fsS "$edge_url/ready" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
if [ "${ready:-0}" != 1 ]; then
  echo "the suite did not become ready; see the logs above" >&2
  exit 1
fi

# The first operator admin key, made once per state directory and shown only
# now: the registry keeps a hash of it, nothing else can show it again.
marker="$home/data/operator-key.created"
if [ ! -f "$marker" ]; then
  key=$("$bin/locksmith" api-key create --operator --name "make run bootstrap" \
    --registry "https://$registry_addr" --pki "$home/pki")
  touch "$marker"
  key_note="Operator admin key (shown once; keep it):
  export LOCKSMITH_KEY=$key"
else
  key_note="The operator admin key was printed on the first start. Make another with:
  export LOCKSMITH_KEY=\$($bin/locksmith api-key create --operator --name NAME --registry https://$registry_addr --pki $home/pki)"
fi

cat <<MSG

Locksmith is running. Edge: $edge_url   (OpenAPI: $edge_url/openapi.json)

$key_note

  auth="authorization: Bearer \$LOCKSMITH_KEY"
  curl -sS -X POST $edge_url/tenants -H "\$auth" -H 'content-type: application/json' \\
       -d '{"id":"acme","display_name":"Acme"}'
  curl -sS -X POST $edge_url/tenants/acme/orgs -H "\$auth" -H 'content-type: application/json' \\
       -d '{"id":"sales","display_name":"Sales"}'
  curl -sS -X POST $edge_url/tenants/acme/api-keys -H "\$auth" -H 'content-type: application/json' \\
       -d '{"display_name":"acme reader","roles":["read"]}'
  curl -sS "$edge_url/admin/tenants?page_size=2" -H "\$auth"

Seed 000's environment variables (SMTP_*, JWT_SECRET, AWS_*…) into system secrets:
  $bin/locksmith migrate env --credstore https://$credstore_addr --pki $home/pki [--file .env] [--dry-run]

Ctrl-C stops every process.
MSG

# Stop the suite as soon as any one process exits.
wait -n "${pids[@]}"
echo "a process exited; stopping the rest" >&2
exit 1
