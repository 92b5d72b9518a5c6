#!/usr/bin/env bash
# Start (idempotently) the real services the integration tests use, all on 127.0.0.1:
#   registry      docker-registry        127.0.0.1:${PAASPORT_TEST_REGISTRY_PORT:-5000}
#   zookeeper     ZooKeeper              127.0.0.1:${PAASPORT_TEST_ZK_PORT:-2181}
#   alertmanager  prometheus-alertmanager 127.0.0.1:${PAASPORT_TEST_ALERTMANAGER_PORT:-9093}
#   postgres      PostgreSQL 15          127.0.0.1:${PAASPORT_TEST_POSTGRES_PORT:-55432}
# Usage: services.sh start|stop|status [SERVICE...] (default: all). PIDs are kept in .run/; stop
# ends only those PIDs.
#
# postgres is a cluster of our own (never Debian's 15/main): data in .run/postgres (owned by the
# postgres user, initdb refuses root), socket in .run/postgres-socket, log .run/postgres.log
# (under /var/lib/paasport-test/ instead when the postgres user cannot enter .run).
# The platform's superuser connection is role `postgres` over TCP with a password (scram-sha-256,
# the only rule for 127.0.0.1 in pg_hba.conf; over the socket only the OS user postgres, by peer).
# The password is generated once into .run/postgres.password (0600) and set again at each start;
# the full URL, postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres, is written to
# .run/postgres.url (0600), which tests read (or PAASPORT_TEST_POSTGRES_URL when set).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${PAASPORT_RUN_DIR:-$(pwd)/.run}
mkdir -p "$RUN_DIR"
REG_PORT=${PAASPORT_TEST_REGISTRY_PORT:-5000}
ZK_PORT=${PAASPORT_TEST_ZK_PORT:-2181}
AM_PORT=${PAASPORT_TEST_ALERTMANAGER_PORT:-9093}
PG_PORT=${PAASPORT_TEST_POSTGRES_PORT:-55432}
PG_BIN=${PAASPORT_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
# the postgres user must reach its data dir: a checkout under a closed home (/root is 0700)
# keeps it outside, in a folder named after this run dir
if runuser -u postgres -- test -x "$RUN_DIR" 2>/dev/null; then
    PG_HOME=$RUN_DIR
else
    PG_HOME=/var/lib/paasport-test/postgres-$(printf '%s' "$RUN_DIR" | sha1sum | cut -c1-10)
fi
PG_DATA=$PG_HOME/postgres
PG_SOCK=$PG_HOME/postgres-socket
PG_LOG=$PG_HOME/postgres.log
SERVICES=(registry zookeeper alertmanager postgres)

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

as_postgres() { runuser -u postgres -- "$@"; }
pg_ready() { "$PG_BIN/pg_isready" -q -t 1 -h 127.0.0.1 -p "$PG_PORT"; }
pg_keep_pid() { head -1 "$PG_DATA/postmaster.pid" >"$RUN_DIR/postgres.pid"; }

start_postgres() {
    if ! alive postgres; then
        id postgres >/dev/null 2>&1 && [ -x "$PG_BIN/initdb" ] \
            || { log "postgres: no $PG_BIN/initdb or no postgres user: run scripts/bootstrap.sh"; return 1; }
        mkdir -p "$PG_DATA" "$PG_SOCK"
        chown postgres:postgres "$PG_DATA" "$PG_SOCK"
        chmod 700 "$PG_DATA" "$PG_SOCK"
        touch "$PG_LOG"
        chown postgres:postgres "$PG_LOG"
        if [ ! -s "$PG_DATA/PG_VERSION" ]; then
            log "postgres: initdb $PG_DATA"
            as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
                --auth-local=peer --auth-host=reject >>"$PG_LOG" 2>&1 \
                || { tail -20 "$PG_LOG" >&2; return 1; }
        fi
        # ours, rewritten at each start: nothing but peer on the socket and scram on 127.0.0.1
        printf '%s\n' "local all postgres peer" "local all all reject" \
            "host all all 127.0.0.1/32 scram-sha-256" >"$PG_DATA/pg_hba.conf"
        chown postgres:postgres "$PG_DATA/pg_hba.conf"
        if as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
            log "postgres: adopting the server already running on $PG_DATA"
            as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" reload >/dev/null
        else
            # pg_ctl detaches the postmaster into its own session (it outlives this shell)
            as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 20 \
                -o "-k $PG_SOCK -c listen_addresses=127.0.0.1 -p $PG_PORT" start >/dev/null </dev/null \
                || { tail -20 "$PG_LOG" >&2; return 1; }
        fi
        pg_keep_pid
        wait_for postgres pg_ready || return 1
    fi
    local pw_file=$RUN_DIR/postgres.password
    if [ ! -s "$pw_file" ]; then
        (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$pw_file")
    fi
    # set at each start (a re-initialised cluster, a rewritten file); over stdin, never argv
    printf "ALTER ROLE postgres PASSWORD '%s';\n" "$(cat "$pw_file")" \
        | as_postgres timeout 15 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" \
            -d postgres -f - >/dev/null
    (umask 077; printf 'postgresql://postgres:%s@127.0.0.1:%s/postgres\n' "$(cat "$pw_file")" \
        "$PG_PORT" >"$RUN_DIR/postgres.url")
}

stop_postgres() {
    if alive postgres; then
        # fast: roll back open transactions and close sessions (SIGTERM would wait for clients)
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast -w -t 20 >/dev/null \
            && log "stopped postgres"
    fi
    rm -f "$RUN_DIR/postgres.pid"
}

stop_one() {
    if alive "$1"; then kill "$(cat "$RUN_DIR/$1.pid")" && log "stopped $1"; fi
    rm -f "$RUN_DIR/$1.pid"
}

cmd=${1:-start}
shift $(($# > 0 ? 1 : 0))
names=("$@")
((${#names[@]})) || names=("${SERVICES[@]}")
for s in "${names[@]}"; do
    [[ " ${SERVICES[*]} " == *" $s "* ]] || { echo "unknown service $s (${SERVICES[*]})" >&2; exit 2; }
done
case "$cmd" in
    start) for s in "${names[@]}"; do "start_$s"; done; log "${names[*]} ready" ;;
    stop) for s in "${names[@]}"; do if [ "$s" = postgres ]; then stop_postgres; else stop_one "$s"; fi; done ;;
    status) for s in "${names[@]}"; do alive "$s" && echo "$s running" || echo "$s stopped"; done ;;
    *) echo "usage: $0 start|stop|status [SERVICE...] (services: ${SERVICES[*]})" >&2; exit 2 ;;
esac
