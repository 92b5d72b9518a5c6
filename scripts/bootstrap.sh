#!/usr/bin/env bash
# Install what paasport needs and is missing, idempotently: Debian packages, the .venv, a running
# Docker engine. Called by `make up` and `make test`; a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN_DIR=${PAASPORT_RUN_DIR:-$ROOT/.run}
mkdir -p "$RUN_DIR"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

APT_PACKAGES=(docker.io haproxy busybox-static git wrk docker-registry zookeeper
              prometheus-alertmanager debootstrap iproute2 procps curl ca-certificates python3-venv
              chromium fonts-dejavu-core libatomic1 postgresql-15 postgresql-client-15)
# postgresql-15's postinst creates the Debian cluster 15/main and may start it on 5432 with its
# socket in /var/run/postgresql. paasport never uses or stops it: scripts/services.sh runs a
# cluster of its own (.run/postgres, 127.0.0.1:55432, socket in .run), so the two never collide.

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$RUN_DIR/apt.log" 2>&1 \
        || { tail -30 "$RUN_DIR/apt.log" >&2; exit 1; }
fi

# The virtualenv, reinstalled only when pyproject.toml changes.
PY=${PAASPORT_PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=$(command -v python3)
stamp=.venv/.pyproject.sha
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "creating .venv and installing paasport with its dev extras"
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1
    .venv/bin/pip install -q -e '.[dev]' 2>&1 | { grep -v "^WARNING: Location" || true; } >&2
    echo "$want" >"$stamp"
fi

# PaaSTA's own code, for the interop test (tests/integration/test_paasta_interop.py) only: its
# generator imports ~50 distributions (kubernetes, boto3, ...) through paasta_tools.cli.utils,
# so it gets a venv of its own instead of paasport's dev extras. dulwich<0.22: newer dulwich
# calls determine_wants(refs, depth), which paasta_tools.remote_git.list_remote_refs rejects.
PAASTA_PINS="paasta-tools==1.64.0 dulwich<0.22"
if [ ! -x .venv-paasta/bin/python ] || [ "$(cat .venv-paasta/.pins 2>/dev/null)" != "$PAASTA_PINS" ]; then
    log "creating .venv-paasta with $PAASTA_PINS (PaaSTA interop test)"
    [ -x .venv-paasta/bin/python ] || "$PY" -m venv .venv-paasta
    # shellcheck disable=SC2086  # the pins are words
    .venv-paasta/bin/pip install -q $PAASTA_PINS 2>&1 | { grep -v "^WARNING: Location" || true; } >&2
    echo "$PAASTA_PINS" >.venv-paasta/.pins
fi

# A Docker engine: use the running one, else start dockerd in the background. --live-restore
# keeps containers running while dockerd restarts (and paasport routes to the containers' own
# addresses, not to docker-proxy, which dies with dockerd): a dockerd restart is no outage.
if ! timeout 10 docker info >/dev/null 2>&1; then
    log "starting dockerd with --live-restore (log: $RUN_DIR/dockerd.log)"
    # a pidfile left by a killed dockerd makes the new one refuse to start
    pid=$(cat "$RUN_DIR/dockerd.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then rm -f "$RUN_DIR/dockerd.pid"; fi
    setsid dockerd --live-restore --pidfile "$RUN_DIR/dockerd.pid" \
        >"$RUN_DIR/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 1 150); do
        timeout 5 docker info >/dev/null 2>&1 && break
        sleep 0.2
    done
    timeout 10 docker info >/dev/null 2>&1 || { tail -30 "$RUN_DIR/dockerd.log" >&2; log "dockerd did not start"; exit 1; }
elif [ "$(timeout 10 docker info --format '{{.LiveRestoreEnabled}}' 2>/dev/null)" != "true" ]; then
    # Someone else's daemon: say so, never restart it.
    log "note: the running dockerd has live-restore off: restarting it stops every task" \
        "(start it with --live-restore or set \"live-restore\": true in /etc/docker/daemon.json)"
fi
log "ready"
