#!/usr/bin/env bash
# The published contract against the live edge: schemathesis with all of its
# checks, bounded in time. Usage:
#   LOCKSMITH_CONTRACT_KEY=<operator key> tests/contract/run.sh EDGE_URL
# The key travels in the environment (schemathesis.toml reads it), never on a
# command line where `ps` would show it.
set -euo pipefail
cd "$(dirname "$0")"
edge=$1
: "${LOCKSMITH_CONTRACT_KEY:?set it to an operator API key}"
st=../tools/.venv/bin/schemathesis
# One worker: hypothesis's source inspection is not thread-safe on this
# CPython (a run with two workers once died with "AST constructor recursion
# depth mismatch").
# Revoking operator keys is left out: the run's own key is one of them, and a
# run that revokes it spends the rest of its time on 401s.
exec "$st" --config-file schemathesis.toml run "$edge/openapi.json" \
  --checks all \
  --exclude-operation-id revoke_operator_key \
  --max-examples "${CONTRACT_EXAMPLES:-25}" --seed "${CONTRACT_SEED:-20261123}" \
  --workers 1 --max-time "${CONTRACT_SECONDS:-180}" \
  --no-color
