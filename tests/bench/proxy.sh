#!/usr/bin/env bash
# `make bench` (token proxy part), side by side in one run on release builds:
# - nginx `proxy_pass` (Debian's nginx-light, worker_processes auto,
#   upstream keep-alive) to the upstream API, injecting a bearer token;
# - the edge → token proxy → the same upstream (`GET /proxy/bench/ok` with a
#   tenant API key: authentication, rate limits at both hops, mTLS gRPC
#   StreamCall, the credential cache, the SSRF guard, the audit trail);
# - our own gRPC client calling the proxy's unary Call directly with a
#   workload certificate (the typed callers' path).
# The upstream API is nginx itself answering a small JSON body over https
# (the catalog admits https APIs only) on its own port. wrk -t2 -c50 for the
# HTTP rows, 50 callers for the gRPC row. Then the refresh storm (1,000 calls
# on an expired token across 3 proxy replicas, against oidc-provider).
# Figures go to tests/bench/results/proxy.md and proxy-storm.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx-light
duration=${BENCH_SECONDS:-10}
connections=${BENCH_CONNECTIONS:-50}
out=tests/bench/results/proxy.md

work=$(mktemp -d)
read -r registry_port edge_port credstore_port broker_port proxy_port api_port nginx_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
state="$work/state"

# The broker's catalog: the shipped one plus the bench API; the proxy's
# egress guard admits 127.0.0.1 and trusts the suite's CA (nginx's upstream
# certificate is a suite service certificate).
cp deploy/catalog/providers.toml "$work/catalog.toml"
cat >>"$work/catalog.toml" <<TOML

[providers.bench]
display_name = "Bench API (nginx)"
auth_mode = "api_key"
[providers.bench.api]
base_url = "https://127.0.0.1:$api_port"
credential = { location = "bearer" }
TOML
sed "s|^path = \"deploy/catalog/providers.toml\"|path = \"$work/catalog.toml\"|" deploy/config/broker.toml >"$work/broker.toml"
sed "s|^# allow_cidrs = \\[\"10.1.0.0/16\"\\]|allow_cidrs = [\"127.0.0.1/32\"]\nca_files = [\"$state/pki/ca.pem\"]|" \
  deploy/config/proxy.toml >"$work/proxy.toml"
grep -q '^allow_cidrs' "$work/proxy.toml" || { echo "bench: could not set the proxy's allow-list" >&2; exit 1; }

export STATE_DIR="$state" PROFILE=release \
  REGISTRY_ADDR=127.0.0.1:$registry_port EDGE_ADDR=127.0.0.1:$edge_port \
  CREDSTORE_ADDR=127.0.0.1:$credstore_port BROKER_ADDR=127.0.0.1:$broker_port \
  PROXY_ADDR=127.0.0.1:$proxy_port BROKER_CONFIG="$work/broker.toml" PROXY_CONFIG="$work/proxy.toml"
edge="http://$EDGE_ADDR"
cargo build -q --release --locked -p locksmith-bench --bin proxy
LOCKSMITH_LOG=warn deploy/dev/run.sh >"$work/run.log" 2>&1 &
runner=$!
nginx_pid=
cleanup() {
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  kill -TERM $runner 2>/dev/null || true
  wait $runner 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 1200); do
  grep -q "Locksmith is running" "$work/run.log" && break
  kill -0 "$runner" 2>/dev/null || { cat "$work/run.log" >&2; exit 1; }
  sleep 0.5
done

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  # The upstream API both paths call.
  server {
    listen 127.0.0.1:$api_port ssl;
    ssl_certificate $state/pki/registry.pem;
    ssl_certificate_key $state/pki/registry-key.pem;
    location / { default_type application/json; return 200 '{"ok":true}'; }
  }
  upstream api { server 127.0.0.1:$api_port; keepalive 64; }
  # The reference: nginx proxy_pass with keep-alive, injecting a token.
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass https://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer bench-token";
      proxy_ssl_session_reuse on;
    }
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$nginx_port/ok" >/dev/null 2>&1 && break; sleep 0.1; done

admin=$(grep -o 'LOCKSMITH_KEY=lsk_[A-Za-z0-9_-]*' "$work/run.log" | head -n1 | cut -d= -f2)
post() { curl -sS --fail-with-body -X POST "$edge$1" -H "authorization: Bearer $admin" -H 'content-type: application/json' -d "$2"; }
# The largest quota, so the benchmark measures the path, not the limiter's refusals.
post /tenants '{"id":"bench","display_name":"Bench","quotas":{"requests_per_minute":10000000}}' >/dev/null
key=$(post /tenants/bench/api-keys '{"display_name":"bench","roles":["read"]}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
post /tenants/bench/integrations/bench/credentials '{"credentials":{"api_key":{"key":"bench-token"}}}' >/dev/null
curl -fsS "$edge/proxy/bench/ok" -H "authorization: Bearer $key" | grep -q '"ok":true' \
  || { echo "bench: the proxied call failed" >&2; exit 1; }

if [ -n "${BENCH_HOLD:-}" ]; then
  # For profiling: keep everything up and say how to reach it.
  echo "edge=$edge key=$key nginx=http://127.0.0.1:$nginx_port proxy=https://$PROXY_ADDR pki=$state/pki"
  wait "$runner"
fi

# One wrk run: "requests/s p50 p99" (latencies in ms).
measure() {
  local report
  report=$(wrk -t2 -c"$connections" -d"${duration}s" --latency "$@")
  python3 - "$report" <<'PY'
import re, sys
text = sys.argv[1]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
def ms(label):
    m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
if non2xx:
    sys.exit(f"wrk saw {non2xx.group(1)} non-2xx answers:\n{text}")
print(f"{rps:.0f} {ms('50'):.2f} {ms('99'):.2f}")
PY
}

read -r n_rps n_p50 n_p99 < <(measure "http://127.0.0.1:$nginx_port/ok")
read -r e_rps e_p50 e_p99 < <(measure -H "authorization: Bearer $key" "$edge/proxy/bench/ok")
read -r g_rps g_p50 g_p99 < <(target/release/proxy --proxy "https://$PROXY_ADDR" --pki "$state/pki" \
  --tenant bench --connection tenants/bench/integrations/bench --path /ok \
  --callers "$connections" --seconds "$duration")
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
e_ratio=$(ratio "$e_rps" "$n_rps"); e_p99_ratio=$(ratio "$e_p99" "$n_p99")
g_ratio=$(ratio "$g_rps" "$n_rps"); g_p99_ratio=$(ratio "$g_p99" "$n_p99")
verdict() { python3 -c "print('met' if $1 >= 0.5 and $2 <= 2.0 else 'not met')"; }

mkdir -p "$(dirname "$out")"
cat >"$out" <<MD
# Token proxy benchmark

$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, release builds, \`wrk -t2 -c$connections -d${duration}s\` (and
$connections gRPC callers for ${duration}s) on the same machine: wrk, nginx and every Locksmith process share the
cores. The upstream API is nginx answering \`{"ok":true}\` over https. Compare figures only within one run.

| path | requests/s | p50 ms | p99 ms | requests/s vs nginx | p99 vs nginx |
| --- | ---: | ---: | ---: | ---: | ---: |
| nginx \`proxy_pass\` (keep-alive upstream, bearer header set) | $n_rps | $n_p50 | $n_p99 | 1.00 | 1.00 |
| edge → token proxy (\`GET /proxy/bench/ok\`, API key) | $e_rps | $e_p50 | $e_p99 | $e_ratio | $e_p99_ratio |
| gRPC \`Call\` → token proxy (workload certificate) | $g_rps | $g_p50 | $g_p99 | $g_ratio | $g_p99_ratio |

Target (design brief §6): through the edge ≥ 0.5× nginx's requests/s and p99 ≤ 2× nginx's —
**$(verdict "$e_ratio" "$e_p99_ratio")** ($e_ratio×, p99 $e_p99_ratio×).
MD
cat "$out"

# The refresh storm, against the real OAuth server the test suite starts.
LOCKSMITH_STORM_RESULTS="$PWD/tests/bench/results/proxy-storm.md" \
  cargo test -q --locked -p locksmith-tests --test suite -- proxy::storm >/dev/null
cat tests/bench/results/proxy-storm.md
echo "bench: 1 passed, 0 failed"
