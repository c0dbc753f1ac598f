#!/usr/bin/env bash
# The README's quick start, run for real: `make run`'s script starts the suite
# as separate processes (fresh PKI and data in a temporary directory, ports
# the kernel reports free at start, not fixed ones a developer's own `make run`
# or a parallel job may hold), then curl creates a tenant, an org and a bot,
# reads them back, and lists tenants page by page, with the operator key the
# script prints once; a Python client generated from proto/ calls the registry
# over mTLS; schemathesis checks the published contract with all of its checks
# (tests/contract). Finally SIGTERM must stop every process.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
log="$work/run.log"
# Distinct free ports: every socket is held open until all are known.
read -r registry_port edge_port credstore_port broker_port proxy_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
export STATE_DIR="$work/state" REGISTRY_ADDR=127.0.0.1:$registry_port EDGE_ADDR=127.0.0.1:$edge_port \
  CREDSTORE_ADDR=127.0.0.1:$credstore_port BROKER_ADDR=127.0.0.1:$broker_port \
  PROXY_ADDR=127.0.0.1:$proxy_port
edge="http://$EDGE_ADDR"

deploy/dev/run.sh >"$log" 2>&1 &
runner=$!
cleanup() {
  kill -TERM "$runner" 2>/dev/null || true
  wait "$runner" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "smoke: $*" >&2; echo "--- run.sh output ---" >&2; cat "$log" >&2; exit 1; }

for _ in $(seq 1 600); do
  grep -q "Locksmith is running" "$log" && break
  kill -0 "$runner" 2>/dev/null || fail "run.sh exited early"
  sleep 0.5
done
grep -q "Locksmith is running" "$log" || fail "suite not ready in time"
key=$(grep -o 'LOCKSMITH_KEY=lsk_[A-Za-z0-9_-]*' "$log" | head -n1 | cut -d= -f2)
[ -n "$key" ] || fail "no operator key was printed on first start"
auth="authorization: Bearer $key"

json() { curl -sS -X "$1" "$edge$2" -H "$auth" -H 'content-type: application/json' ${3:+-d "$3"} -w '\n%{http_code}'; }
expect() { # expect STATUS METHOD PATH [BODY]
  local want=$1; shift
  local out; out=$(json "$@")
  local code=${out##*$'\n'}
  [ "$code" = "$want" ] || fail "$1 $2 answered $code, expected $want: ${out%$'\n'*}"
  printf '%s' "${out%$'\n'*}"
}

# Without the key: 401 problem+json, and nothing is created.
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$edge/tenants" -H 'content-type: application/json' \
  -d '{"id":"acme","display_name":"Acme"}')
[ "$code" = 401 ] || fail "an unauthenticated create answered $code"
expect 201 POST /tenants '{"id":"acme","display_name":"Acme"}' >/dev/null
expect 201 POST /tenants/acme/orgs '{"id":"sales","display_name":"Sales"}' >/dev/null
expect 201 POST /tenants/acme/orgs/sales/bots '{"id":"helper","display_name":"Helper bot"}' >/dev/null
expect 200 GET /tenants/acme/orgs/sales/bots/helper | grep -q '"display_name":"Helper bot"' || fail "bot not read back"
expect 409 POST /tenants '{"id":"acme","display_name":"Again"}' | grep -q 'urn:locksmith:error:ALREADY_EXISTS' \
  || fail "duplicate create not a problem"
for t in beta gamma delta; do expect 201 POST /tenants "{\"id\":\"$t\",\"display_name\":\"$t\"}" >/dev/null; done

# Page through all tenants two at a time.
seen=() token=""
while :; do
  page=$(expect 200 GET "/admin/tenants?page_size=2${token:+&page_token=$token}")
  mapfile -t ids < <(python3 -c 'import json,sys; print("\n".join(t["id"] for t in json.load(sys.stdin)["tenants"]))' <<<"$page")
  seen+=("${ids[@]}")
  token=$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("next_page_token",""))' <<<"$page")
  [ -n "$token" ] || break
done
[ "${seen[*]}" = "acme beta delta gamma" ] || fail "pages gave '${seen[*]}'"

expect 200 GET /ready >/dev/null

# A client in another language, generated from proto/, over mTLS.
tests/tools/.venv/bin/python tests/polyglot/registry_client.py "$REGISTRY_ADDR" "$STATE_DIR/pki" \
  || fail "the Python client generated from proto/ failed"

# Seed 000's environment variables into the credential store, twice: the
# second run changes nothing. No value is printed.
printf 'SMTP_HOST=smtp.example.com\nSMTP_PASS=smoke-hunter2\n' >"$work/.env"
migrate() { target/debug/locksmith migrate env --credstore "https://$CREDSTORE_ADDR" --pki "$STATE_DIR/pki" --file "$work/.env"; }
out=$(migrate) || fail "locksmith migrate env failed: $out"
grep -q '^2 written, 0 unchanged, 0 conflicting, 0 unknown variables$' <<<"$out" || fail "first migration: $out"
out=$(migrate) || fail "locksmith migrate env failed again: $out"
grep -q '^0 written, 2 unchanged, 0 conflicting, 0 unknown variables$' <<<"$out" || fail "second migration: $out"
grep -q 'smoke-hunter2' <<<"$out" && fail "the migration printed a value"

# Secrets over HTTP: the bot's own key under a name with a slash, and the
# migrated SMTP settings answering for a bot without a mailbox of its own.
expect 201 PUT /tenants/acme/orgs/sales/bots/helper/secrets/api-keys/openai '{"fields":{"api-key":"sk-smoke"}}' >/dev/null
expect 200 GET /tenants/acme/orgs/sales/bots/helper/secrets/api-keys/openai | grep -q '"api-key":"sk-smoke"' \
  || fail "the bot's key was not read back"
resolved=$(expect 200 GET /tenants/acme/orgs/sales/bots/helper/resolve/email)
python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["scope"]=="system" and s["fields"]["smtp-host"]=="smtp.example.com", s["scope"]' \
  <<<"$resolved" || fail "the bot's email did not fall back to the migrated SMTP settings"

# A connection over the broker: an API key stored for the shipped `openai`
# entry, listed as metadata; the key is never answered.
expect 200 POST /tenants/acme/integrations/openai/credentials '{"credentials":{"api_key":{"key":"sk-smoke-conn"}}}' \
  | grep -q 'sk-smoke-conn' && fail "the stored API key was answered"
listed=$(expect 200 GET /tenants/acme/integrations)
grep -q '"name":"tenants/acme/integrations/openai"' <<<"$listed" || fail "the connection was not listed: $listed"
grep -q 'sk-smoke-conn' <<<"$listed" && fail "the listing answered the API key"

# The token proxy behind the edge, as its own process: a path that would
# leave the integration's API is refused by its SSRF guard, naming `path`.
refused=$(curl -sS "$edge/proxy/openai/v1/a%2F..%2Fadmin" -H "$auth" -H 'locksmith-owner: tenants/acme' -w '\n%{http_code}')
[ "${refused##*$'\n'}" = 400 ] && grep -q '"field":"path"' <<<"$refused" \
  || fail "the proxy's guard did not refuse the path: $refused"

# The published contract, against this live suite.
LOCKSMITH_CONTRACT_KEY=$key tests/contract/run.sh "$edge" >"$work/contract.log" 2>&1 \
  || { cat "$work/contract.log" >&2; fail "schemathesis found the contract broken"; }
grep -E '^Test cases|passed|failures?,|Seed' "$work/contract.log" | tail -n 4

kill -TERM "$runner"
wait "$runner" 2>/dev/null || true
for addr in "$EDGE_ADDR" "$REGISTRY_ADDR" "$CREDSTORE_ADDR" "$BROKER_ADDR" "$PROXY_ADDR"; do
  if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then fail "$addr still listening after SIGTERM"; fi
done
echo "make run, curl quick start, paging, secrets, the contract and shutdown all worked"
echo "smoke: 1 passed, 0 failed"
