#!/usr/bin/env bash
# Start (idempotently) the real services the integration tests use, all on 127.0.0.1:
#   registry      docker-registry        127.0.0.1:${PAASPORT_TEST_REGISTRY_PORT:-5000}
#   zookeeper     ZooKeeper              127.0.0.1:${PAASPORT_TEST_ZK_PORT:-2181}
#   alertmanager  prometheus-alertmanager 127.0.0.1:${PAASPORT_TEST_ALERTMANAGER_PORT:-9093}
# Usage: services.sh start|stop|status. PIDs are kept in .run/; stop ends only those PIDs.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${PAASPORT_RUN_DIR:-$(pwd)/.run}
mkdir -p "$RUN_DIR"
REG_PORT=${PAASPORT_TEST_REGISTRY_PORT:-5000}
ZK_PORT=${PAASPORT_TEST_ZK_PORT:-2181}
AM_PORT=${PAASPORT_TEST_ALERTMANAGER_PORT:-9093}

log() { printf '[services] %s\n' "$*" >&2; }
alive() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }
wait_for() {  # name, command...
    local name=$1; shift
    for _ in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    log "$name did not become ready; last log lines:"; tail -20 "$RUN_DIR/$name.log" >&2 || true
    return 1
}
zk_ready() { printf srvr | timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$ZK_PORT; cat >&3; cat <&3" | grep -q '^Mode:'; }

start_registry() {
    alive registry && return 0
    mkdir -p "$RUN_DIR/registry-data"
    cat >"$RUN_DIR/registry.yml" <<CFG
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $RUN_DIR/registry-data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$REG_PORT}
CFG
    setsid docker-registry serve "$RUN_DIR/registry.yml" >"$RUN_DIR/registry.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/registry.pid"
    wait_for registry curl -fsS "http://127.0.0.1:$REG_PORT/v2/"
}

start_zookeeper() {
    alive zookeeper && return 0
    local conf=$RUN_DIR/zookeeper
    mkdir -p "$conf/data"
    cat >"$conf/zoo.cfg" <<CFG
tickTime=2000
dataDir=$conf/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr,stat,envi,conf,isro
maxSessionTimeout=60000
minSessionTimeout=1000
CFG
    cp /etc/zookeeper/conf/log4j.properties "$conf/" 2>/dev/null || true
    setsid java -Xmx256m -Dzookeeper.log.dir="$conf" \
        -cp "$conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar" \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$conf/zoo.cfg" \
        >"$RUN_DIR/zookeeper.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/zookeeper.pid"
    wait_for zookeeper zk_ready
}

start_alertmanager() {
    alive alertmanager && return 0
    mkdir -p "$RUN_DIR/alertmanager-data"
    cat >"$RUN_DIR/alertmanager.yml" <<CFG
route:
  receiver: default
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: default
CFG
    setsid prometheus-alertmanager --config.file="$RUN_DIR/alertmanager.yml" \
        --storage.path="$RUN_DIR/alertmanager-data" --web.listen-address="127.0.0.1:$AM_PORT" \
        --cluster.listen-address= >"$RUN_DIR/alertmanager.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/alertmanager.pid"
    wait_for alertmanager curl -fsS "http://127.0.0.1:$AM_PORT/-/ready"
}

stop_one() {
    if alive "$1"; then kill "$(cat "$RUN_DIR/$1.pid")" && log "stopped $1"; fi
    rm -f "$RUN_DIR/$1.pid"
}

case "${1:-start}" in
    start) start_registry; start_zookeeper; start_alertmanager; log "registry, zookeeper, alertmanager ready" ;;
    stop) for s in registry zookeeper alertmanager; do stop_one "$s"; done ;;
    status) for s in registry zookeeper alertmanager; do alive "$s" && echo "$s running" || echo "$s stopped"; done ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
