#!/usr/bin/env bash
# `make bench` (edge part): the edge's requests/s for an authenticated
# `GET /tenants/{t}` (API key check, rate limit, one mTLS gRPC hop to the
# registry) against an anonymous `/health` (the edge's own middleware only),
# side by side in one run on release builds, with wrk (Debian's package).
# Figures go to tests/bench/results/edge.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
duration=${BENCH_SECONDS:-10}
connections=${BENCH_CONNECTIONS:-50}
out=tests/bench/results/edge.md

work=$(mktemp -d)
read -r registry_port edge_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
export STATE_DIR="$work/state" REGISTRY_ADDR=127.0.0.1:$registry_port EDGE_ADDR=127.0.0.1:$edge_port PROFILE=release
edge="http://$EDGE_ADDR"
LOCKSMITH_LOG=warn deploy/dev/run.sh >"$work/run.log" 2>&1 &
runner=$!
trap 'kill -TERM $runner 2>/dev/null || true; wait $runner 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 1200); do
  grep -q "Locksmith is running" "$work/run.log" && break
  kill -0 "$runner" 2>/dev/null || { cat "$work/run.log" >&2; exit 1; }
  sleep 0.5
done
admin=$(grep -o 'LOCKSMITH_KEY=lsk_[A-Za-z0-9_-]*' "$work/run.log" | head -n1 | cut -d= -f2)
post() { curl -fsS -X POST "$edge$1" -H "authorization: Bearer $admin" -H 'content-type: application/json' -d "$2"; }
# The largest quota, so the benchmark measures the path, not the limiter's refusals.
post /tenants '{"id":"bench","display_name":"Bench","quotas":{"requests_per_minute":10000000}}' >/dev/null
key=$(post /tenants/bench/api-keys '{"display_name":"bench","roles":["read"]}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

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

curl -fsS "$edge/tenants/bench" -H "authorization: Bearer $key" >/dev/null
read -r h_rps h_p50 h_p99 < <(measure "$edge/health")
read -r a_rps a_p50 a_p99 < <(measure -H "authorization: Bearer $key" "$edge/tenants/bench")
ratio=$(python3 -c "print(f'{$a_rps / $h_rps:.2f}')")

mkdir -p "$(dirname "$out")"
cat >"$out" <<MD
# Edge benchmark

$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, release builds, \`wrk -t2 -c$connections -d${duration}s\` on the same machine
(wrk shares the cores with the edge and the registry). Compare figures only within one run.

| request | requests/s | p50 ms | p99 ms |
| --- | ---: | ---: | ---: |
| \`GET /health\` (anonymous: the edge's middleware only) | $h_rps | $h_p50 | $h_p99 |
| \`GET /tenants/bench\` (API key, rate limit, mTLS gRPC to the registry) | $a_rps | $a_p50 | $a_p99 |

Authenticated over anonymous: **$ratio×** the requests/s.
MD
cat "$out"
echo "bench: 1 passed, 0 failed"
