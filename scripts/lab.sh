#!/usr/bin/env bash
# The 3-host lab on one machine: a cluster "lab" of three Docker Swarm hosts, each a dockerd in
# its own network + UTS namespace (hostnames lab1..lab3), joined by veth pairs to a bridge in a
# switch namespace on 10.251.$LAB_ID.0/24, which the root namespace routes nowhere (an
# `unreachable` route). lab1 is the Swarm manager and runs the lab's ZooKeeper and registry.
#
#   scripts/lab.sh up [--no-platform]   bring it up (idempotent); also an agent per host + deployd
#   scripts/lab.sh down                 remove all of it: daemons, namespaces, routes, mounts, folders
#   scripts/lab.sh env                  the lab's facts as shell variables (eval "$(scripts/lab.sh env)")
#   scripts/lab.sh exec HOST -- CMD...  run CMD on HOST (its namespaces, PAASPORT_CONFIG, DOCKER_HOST)
#   scripts/lab.sh fail HOST docker|network|zookeeper    inject a fault;  heal HOST   undo it
#   scripts/lab.sh status               what runs
# LAB_ID (default 0) lets several labs coexist; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LAB_ID=${LAB_ID:-0}
NET=10.251.$LAB_ID
PFX=pplab$LAB_ID
RUN=/run/paasport-lab/$LAB_ID
DIR=${PAASPORT_LAB_DIR:-/var/lib/paasport-lab/$LAB_ID}
HOSTS=(lab1 lab2 lab3)
ADDR_POOL=10.252.0.0/16
WAIT=${LAB_WAIT_SECONDS:-60}

log() { printf '[lab %s] %s\n' "$LAB_ID" "$*" >&2; }
die() { log "$*"; exit 1; }

num() { echo "${1#lab}"; }                      # lab2 -> 2
addr() { echo "$NET.1$(num "$1")"; }            # lab2 -> 10.251.0.12
ns() { echo "$PFX-$1"; }                        # the host's network namespace
sock() { echo "$RUN/$1/docker.sock"; }
dk() { local h=$1; shift; timeout 30 docker -H "unix://$(sock "$h")" "$@"; }
in_ns() { local h=$1; shift; nsenter --net="/run/netns/$(ns "$h")" "$@"; }
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
check_host() { [[ " ${HOSTS[*]} " == *" $1 "* ]] || die "unknown host '$1' (expected one of: ${HOSTS[*]})"; }

# wait_until WHAT SECONDS CMD...: retry CMD every 0.2 s until it succeeds or the deadline
wait_until() {
    local what=$1 secs=$2; shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || { log "$what: not ready after ${secs}s"; return 1; }
        sleep 0.2
    done
}

# -- network -------------------------------------------------------------------------------
net_up() {
    ip route show type unreachable | grep -q "^unreachable $NET.0/24" \
        || ip route add unreachable "$NET.0/24"
    [[ -e /run/netns/$PFX-sw ]] || ip netns add "$PFX-sw"
    ip -n "$PFX-sw" link show br0 >/dev/null 2>&1 || ip -n "$PFX-sw" link add br0 type bridge
    ip -n "$PFX-sw" link set br0 up
    ip -n "$PFX-sw" link set lo up
    local h i
    for h in "${HOSTS[@]}"; do
        i=$(num "$h")
        [[ -e /run/netns/$(ns "$h") ]] || ip netns add "$(ns "$h")"
        ip -n "$(ns "$h")" link set lo up
        if ! ip -n "$(ns "$h")" link show eth0 >/dev/null 2>&1; then
            ip link add "${PFX}h$i" type veth peer name "${PFX}s$i"
            ip link set "${PFX}h$i" netns "$(ns "$h")"
            ip link set "${PFX}s$i" netns "$PFX-sw"
            ip -n "$(ns "$h")" link set "${PFX}h$i" name eth0
            ip -n "$(ns "$h")" addr add "$(addr "$h")/24" dev eth0
            ip -n "$PFX-sw" link set "${PFX}s$i" master br0
        fi
        ip -n "$PFX-sw" link set "${PFX}s$i" up
        ip -n "$(ns "$h")" link set eth0 up
    done
}

# -- dockerd per host ----------------------------------------------------------------------
dockerd_start() {
    local h=$1 hd=$DIR/$1 rd=$RUN/$1
    alive "$rd/dockerd.pid" && return 0
    mkdir -p "$hd/docker" "$hd/state" "$rd/exec"
    cat >"$hd/daemon.json" <<JSON
{"insecure-registries": ["$NET.11:5000"], "log-driver": "json-file", "log-opts": {"max-size": "5m"}}
JSON
    rm -f "$rd/docker.sock" "$rd/dockerd.pidfile"  # ours is not alive: a stale file would stop it
    # its own UTS namespace (hostname = the host's name: Swarm names the node after it)
    setsid nsenter --net="/run/netns/$(ns "$h")" unshare --uts sh -c "hostname $h; exec dockerd \
        --config-file $hd/daemon.json --data-root $hd/docker --exec-root $rd/exec \
        -H unix://$rd/docker.sock -p $rd/dockerd.pidfile" \
        >>"$hd/dockerd.log" 2>&1 </dev/null &
    echo $! >"$rd/dockerd.pid"  # the same process: nsenter, unshare and sh exec dockerd
}

dockerd_wait() {
    local h=$1 rd=$RUN/$1
    if ! wait_until "dockerd on $h" "$WAIT" dk "$h" info; then
        tail -20 "$DIR/$h/dockerd.log" >&2 || true
        return 1
    fi
    # keep a handle on its UTS namespace, so `exec` runs as that host
    [[ -e $rd/uts ]] || touch "$rd/uts"
    mountpoint -q "$rd/uts" || mount --bind "/proc/$(cat "$rd/dockerd.pid")/ns/uts" "$rd/uts"
}

# the PIDs of one host's docker stack: dockerd, its containerd, shims and container processes
stack_pids() {
    local h=$1 rd=$RUN/$1 pid
    alive "$rd/dockerd.pid" && cat "$rd/dockerd.pid"
    for pid in $(pgrep -f -- "$rd/exec/containerd" 2>/dev/null || true); do
        echo "$pid"
        pgrep -P "$pid" 2>/dev/null || true  # a shim's children: the containers' init processes
    done
}

kill_stack() {
    local h=$1 pids
    pids=$(dk "$h" ps -q 2>/dev/null | xargs -r timeout 30 docker -H "unix://$(sock "$h")" \
        inspect -f '{{.State.Pid}}' 2>/dev/null || true)
    pids="$pids $(stack_pids "$h" | sort -u | tr '\n' ' ')"
    for p in $pids; do [[ $p =~ ^[0-9]+$ ]] && ((p > 1)) && kill -9 "$p" 2>/dev/null || true; done
    # SIGKILL is not instant: a dockerd still dying would refuse a new one its pid file
    local until=$((SECONDS + 10)) alive_one
    while ((SECONDS < until)); do
        alive_one=0
        for p in $pids; do [[ $p =~ ^[0-9]+$ ]] && kill -0 "$p" 2>/dev/null && alive_one=1 && break; done
        ((alive_one)) || break
        sleep 0.1
    done
    rm -f "$RUN/$h/dockerd.pid"
}

# -- swarm ---------------------------------------------------------------------------------
swarm_up() {
    local state
    state=$(dk lab1 info -f '{{.Swarm.LocalNodeState}}')
    if [[ $state != active ]]; then
        dk lab1 swarm init --advertise-addr "$NET.11" --listen-addr "$NET.11:2377" \
            --default-addr-pool "$ADDR_POOL" --dispatcher-heartbeat 2s >/dev/null
    fi
    local token h
    token=$(dk lab1 swarm join-token -q worker)
    for h in lab2 lab3; do
        state=$(dk "$h" info -f '{{.Swarm.LocalNodeState}}')
        [[ $state == active ]] && continue
        dk "$h" swarm join --token "$token" --advertise-addr "$(addr "$h")" \
            --listen-addr "$(addr "$h"):2377" "$NET.11:2377" >/dev/null
    done
    wait_until "3 Ready swarm nodes" "$WAIT" nodes_ready 3
    local id
    for id in $(dk lab1 node ls -q); do
        dk lab1 node update --label-add pool=default "$id" >/dev/null
    done
}

nodes_ready() { [[ $(dk lab1 node ls --format '{{.Status}}' | grep -c '^Ready$') -ge $1 ]]; }
node_ready() { dk lab1 node ls --format '{{.Hostname}} {{.Status}}' | grep -q "^$1 Ready$"; }

# -- ZooKeeper and the registry on lab1 ----------------------------------------------------
zk_ready() {
    in_ns lab1 timeout 2 bash -c "exec 3<>/dev/tcp/$NET.11/2181; printf srvr >&3; cat <&3" \
        | grep -q '^Mode:'
}

zk_start() {
    local conf=$DIR/zookeeper
    alive "$RUN/zookeeper.pid" && return 0
    mkdir -p "$conf/data"
    cat >"$conf/zoo.cfg" <<CFG
tickTime=1000
dataDir=$conf/data
clientPort=2181
clientPortAddress=$NET.11
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr,stat,envi,conf,isro
minSessionTimeout=2000
maxSessionTimeout=60000
CFG
    cp /etc/zookeeper/conf/log4j.properties "$conf/" 2>/dev/null || true
    setsid nsenter --net="/run/netns/$(ns lab1)" java -Xmx256m -Dzookeeper.log.dir="$conf" \
        -cp "$conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar" \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$conf/zoo.cfg" \
        >>"$conf/zookeeper.log" 2>&1 </dev/null &
    echo $! >"$RUN/zookeeper.pid"
    wait_until "ZooKeeper on $NET.11:2181" "$WAIT" zk_ready \
        || { tail -20 "$conf/zookeeper.log" >&2; return 1; }
}

registry_start() {
    alive "$RUN/registry.pid" && return 0
    mkdir -p "$DIR/registry/data"
    cat >"$DIR/registry/config.yml" <<CFG
version: 0.1
storage: {filesystem: {rootdirectory: $DIR/registry/data}, delete: {enabled: true}}
http: {addr: "$NET.11:5000"}
log: {level: warn}
CFG
    setsid nsenter --net="/run/netns/$(ns lab1)" docker-registry serve "$DIR/registry/config.yml" \
        >>"$DIR/registry/registry.log" 2>&1 </dev/null &
    echo $! >"$RUN/registry.pid"
    wait_until "the registry on $NET.11:5000" "$WAIT" \
        in_ns lab1 curl -fsS -m 2 "http://$NET.11:5000/v2/" \
        || { tail -20 "$DIR/registry/registry.log" >&2; return 1; }
}

BASE_IMAGE_NAME=paasport-lab/busybox:latest
base_image() { echo "$NET.11:5000/$BASE_IMAGE_NAME"; }

base_image_up() {
    local img
    img=$(base_image)
    in_ns lab1 curl -fsS -m 2 "http://$NET.11:5000/v2/paasport-lab/busybox/manifests/latest" \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' >/dev/null 2>&1 \
        && dk lab1 image inspect "$img" >/dev/null 2>&1 && return 0
    local ctx
    ctx=$(mktemp -d)
    cp "$(command -v busybox || echo /bin/busybox)" "$ctx/busybox"
    printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/bin\n' \
        >"$ctx/Dockerfile"
    timeout 120 docker -H "unix://$(sock lab1)" build -q -t "$img" "$ctx" >/dev/null
    rm -rf "$ctx"
    timeout 120 docker -H "unix://$(sock lab1)" push "$img" >/dev/null
}

# -- files ---------------------------------------------------------------------------------
write_config() {
    mkdir -p "$DIR/soa-configs"
    cat >"$DIR/paasport.yaml" <<YAML
# the 3-host lab (scripts/lab.sh, LAB_ID=$LAB_ID): one Swarm cluster "lab"
local_cluster: lab
clusters:
  lab:
    engine: swarm
    docker_host: "unix://$(sock lab1)"
soa_dir: "$DIR/soa-configs"
state_dir: "$DIR/lab1/state"
docker_registry: "$NET.11:5000"
discovery:
  registry: zookeeper
  zookeeper_hosts: "$NET.11:2181"
  zookeeper_path: /paasport
  zookeeper_session_timeout_seconds: 4
YAML
}

host_env() {
    local h=$1
    echo "PAASPORT_CONFIG=$DIR/paasport.yaml"
    echo "PAASPORT_STATE_DIR=$DIR/$h/state"
    echo "DOCKER_HOST=unix://$(sock "$h")"
    echo "PATH=$ROOT/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

# -- platform parts (agents, deployd) ------------------------------------------------------
platform_start() {
    local h
    for h in "${HOSTS[@]}"; do start_part "$h" agent; done
    start_part lab1 deployd
    sleep 3
    for h in "${HOSTS[@]}"; do check_part "$h" agent; done
    check_part lab1 deployd
}

start_part() {
    local h=$1 what=$2 pidf=$RUN/$1/$2.pid
    alive "$pidf" && return 0
    setsid "$0" exec "$h" -- paasport "$what" >>"$DIR/$h/$what.log" 2>&1 </dev/null &
    echo $! >"$pidf"
}

check_part() {
    alive "$RUN/$1/$2.pid" && return 0
    log "paasport $2 on $1 stopped; its log ($DIR/$1/$2.log):"
    tail -15 "$DIR/$1/$2.log" >&2 || true
    return 1
}

stop_pidfile() {
    local f=$1 pid
    [[ -f $f ]] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

# -- commands ------------------------------------------------------------------------------
cmd_up() {
    local platform=1
    [[ ${1:-} == --no-platform ]] && platform=0
    [[ $(id -u) == 0 ]] || die "the lab needs root (network namespaces, dockerd)"
    local t0=$SECONDS
    mkdir -p "$RUN" "$DIR"
    net_up
    local h
    for h in "${HOSTS[@]}"; do dockerd_start "$h"; done
    for h in "${HOSTS[@]}"; do dockerd_wait "$h"; done
    zk_start
    registry_start
    swarm_up
    base_image_up
    write_config
    for h in "${HOSTS[@]}"; do mkdir -p "$DIR/$h/state"; done
    ((platform)) && platform_start
    log "up in $((SECONDS - t0))s: hosts ${HOSTS[*]} on $NET.0/24; eval \"\$(scripts/lab.sh env)\""
}

cmd_down() {
    local h
    for h in "${HOSTS[@]}"; do
        stop_pidfile "$RUN/$h/agent.pid"
        stop_pidfile "$RUN/$h/deployd.pid"
    done
    for h in "${HOSTS[@]}"; do
        [[ -f $RUN/$h/dockerd.pid ]] && kill -TERM "$(cat "$RUN/$h/dockerd.pid")" 2>/dev/null || true
    done
    for h in "${HOSTS[@]}"; do
        local f=$RUN/$h/dockerd.pid
        for _ in $(seq 1 75); do alive "$f" || break; sleep 0.2; done
        kill_stack "$h"
    done
    stop_pidfile "$RUN/zookeeper.pid"
    stop_pidfile "$RUN/registry.pid"
    # what the daemons mounted (overlays, netns handles, shm) and our UTS handles, deepest first
    local m
    for m in $(awk -v a="$RUN/" -v b="$DIR/" 'index($2, a) == 1 || index($2, b) == 1 {print $2}' \
        /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    for h in "${HOSTS[@]}" sw; do
        [[ -e /run/netns/$PFX-$h ]] && ip netns del "$PFX-$h"
    done
    ip route del unreachable "$NET.0/24" 2>/dev/null || true
    rm -rf "$RUN" "$DIR"
    rmdir /run/paasport-lab 2>/dev/null || true
    [[ -z ${PAASPORT_LAB_DIR:-} ]] && rmdir /var/lib/paasport-lab 2>/dev/null || true
    log "down"
}

cmd_env() {
    echo "LAB_ID=$LAB_ID"
    echo "LAB_CONFIG=$DIR/paasport.yaml"
    echo "LAB_SOA_DIR=$DIR/soa-configs"
    echo "LAB_DIR=$DIR"
    echo "LAB_HOSTS=\"${HOSTS[*]}\""
    local h
    for h in "${HOSTS[@]}"; do
        echo "LAB_${h}_ADDR=$(addr "$h")"
        echo "LAB_${h}_DOCKER_HOST=unix://$(sock "$h")"
        echo "LAB_${h}_STATE_DIR=$DIR/$h/state"
        echo "LAB_${h}_NETNS=/run/netns/$(ns "$h")"
    done
    echo "LAB_REGISTRY=$NET.11:5000"
    echo "LAB_ZOOKEEPER=$NET.11:2181"
    echo "LAB_BASE_IMAGE=$(base_image)"
}

cmd_exec() {
    local h=${1:-}
    [[ -n $h ]] || die "usage: lab.sh exec HOST -- CMD..."
    check_host "$h"
    shift
    [[ ${1:-} == -- ]] && shift
    (($#)) || die "usage: lab.sh exec HOST -- CMD..."
    [[ -e /run/netns/$(ns "$h") ]] || die "the lab (LAB_ID=$LAB_ID) is not up: make lab"
    local uts=()
    mountpoint -q "$RUN/$h/uts" 2>/dev/null && uts=(--uts="$RUN/$h/uts")
    local envs
    mapfile -t envs < <(host_env "$h")
    exec nsenter --net="/run/netns/$(ns "$h")" "${uts[@]}" env "${envs[@]}" "$@"
}

cmd_fail() {
    local h=${1:-} what=${2:-}
    check_host "$h"
    mkdir -p "$RUN/$h"
    case $what in
        docker) kill_stack "$h" ;;
        network) ip -n "$PFX-sw" link set "${PFX}s$(num "$h")" down ;;
        zookeeper)
            [[ $h == lab1 ]] || die "ZooKeeper runs on lab1"
            stop_pidfile "$RUN/zookeeper.pid" ;;
        *) die "usage: lab.sh fail HOST docker|network|zookeeper" ;;
    esac
    touch "$RUN/$h/failed-$what"
    log "$h: $what failed"
}

cmd_heal() {
    local h=${1:-}
    check_host "$h"
    if [[ -e $RUN/$h/failed-network ]]; then
        ip -n "$PFX-sw" link set "${PFX}s$(num "$h")" up
        rm -f "$RUN/$h/failed-network"
    fi
    if [[ -e $RUN/$h/failed-zookeeper ]]; then
        zk_start
        rm -f "$RUN/$h/failed-zookeeper"
    fi
    if [[ -e $RUN/$h/failed-docker ]] || ! alive "$RUN/$h/dockerd.pid"; then
        if mountpoint -q "$RUN/$h/uts"; then umount "$RUN/$h/uts"; fi
        dockerd_start "$h"
        dockerd_wait "$h"
        rm -f "$RUN/$h/failed-docker"
    fi
    wait_until "$h Ready in the swarm" "$WAIT" node_ready "$h"
    log "$h healed"
}

cmd_status() {
    local h
    for h in "${HOSTS[@]}"; do
        local d="stopped"
        alive "$RUN/$h/dockerd.pid" && d="dockerd $(cat "$RUN/$h/dockerd.pid")"
        local parts=""
        alive "$RUN/$h/agent.pid" && parts+=" agent"
        alive "$RUN/$h/deployd.pid" && parts+=" deployd"
        echo "$h $(addr "$h") $d${parts}"
    done
    alive "$RUN/zookeeper.pid" && echo "zookeeper $NET.11:2181" || echo "zookeeper stopped"
    alive "$RUN/registry.pid" && echo "registry $NET.11:5000" || echo "registry stopped"
    if alive "$RUN/lab1/dockerd.pid"; then dk lab1 node ls 2>/dev/null || true; fi
}

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    env) cmd_env ;;
    exec) shift; cmd_exec "$@" ;;
    fail) shift; cmd_fail "$@" ;;
    heal) shift; cmd_heal "$@" ;;
    status) cmd_status ;;
    *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
