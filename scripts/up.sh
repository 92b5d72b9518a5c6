#!/usr/bin/env bash
# `make up`: turn examples/services/<name> into git repos (examples/repos/<name>), build each
# image at its commit, mark every deploy group of the local cluster, then run `paasport up` on
# examples/soa-configs in the foreground. Idempotent: an unchanged example is neither rebuilt
# nor re-marked. State (events, discovery) goes to .run/state. Ctrl-C stops paasport only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN_DIR=${PAASPORT_RUN_DIR:-$ROOT/.run}
export PAASPORT_STATE_DIR=${PAASPORT_STATE_DIR:-$RUN_DIR/state}
SOA=$ROOT/examples/soa-configs
PP=$ROOT/.venv/bin/paasport
BUSYBOX=$(command -v busybox || echo /bin/busybox)
mkdir -p "$ROOT/examples/repos" "$PAASPORT_STATE_DIR"

log() { printf '[up] %s\n' "$*" >&2; }

# Deploy groups that instances of the local cluster use, one per line.
local_groups() {
    "$ROOT/.venv/bin/python" - "$SOA" "$1" <<'PY'
import sys
from pathlib import Path
from paasport.config.tree import load_tree
tree = load_tree(Path(sys.argv[1]), [sys.argv[2]])
print("\n".join(sorted({c.deploy_group for c in tree.instances_for(service=sys.argv[2], cluster="local")})))
PY
}

for src in "$ROOT"/examples/services/*/; do
    name=$(basename "$src")
    [ -d "$SOA/$name" ] || continue
    repo=$ROOT/examples/repos/$name
    [ -d "$repo/.git" ] || git init -q -b main "$repo"
    cp -a "$src/." "$repo/"
    cp "$BUSYBOX" "$repo/busybox"
    git -C "$repo" add -A
    git -C "$repo" add -f busybox
    if ! git -C "$repo" diff --cached --quiet 2>/dev/null || ! git -C "$repo" rev-parse -q --verify HEAD >/dev/null; then
        git -C "$repo" -c user.name=paasport -c user.email=paasport@localhost \
            commit -q -m "example service $name" --allow-empty
    fi
    sha=$(git -C "$repo" rev-parse HEAD)
    if docker image inspect "services-$name:paasta-$sha" >/dev/null 2>&1; then
        log "$name: image services-$name:paasta-${sha:0:8} already built"
    else
        log "$name: building services-$name:paasta-${sha:0:8}"
        "$PP" cook-image -s "$name" -c "$sha" -d "$SOA" >"$RUN_DIR/cook-$name.log" 2>&1 \
            || { tail -20 "$RUN_DIR/cook-$name.log" >&2; exit 1; }
    fi
    for group in $(local_groups "$name"); do
        current=$("$PP" get-latest-deployment -s "$name" -l "$group" --sha-only -d "$SOA" 2>/dev/null || true)
        if [ "$current" = "$sha" ]; then
            log "$name: $group already runs ${sha:0:8}"
        else
            log "$name: marking $group at ${sha:0:8}"
            "$PP" mark-for-deployment -s "$name" -l "$group" -c "$sha" -d "$SOA" >/dev/null
        fi
    done
done

log "starting paasport (state in $PAASPORT_STATE_DIR); in another terminal: .venv/bin/paasport status"
exec "$PP" up --soa-dir "$SOA" --state-dir "$PAASPORT_STATE_DIR" "$@"
