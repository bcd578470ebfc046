#!/usr/bin/env bash
# netns.sh: the docker-compose topology (one psserver, or a coordinator plus joined servers, and N
# workers) on one Linux machine, one network namespace per host, for the test suite. Needs root and
# iproute2.
#
#   netns.sh up        create the namespaces and the links (no processes)
#   netns.sh run       up + start the server + wait until it answers + start the joined servers
#                      (SERVERS > 1) + start the workers + wait for them (kill / restart / packet
#                      loss on request) + down
#   netns.sh down      kill every process in the namespaces of $PREFIX and delete them
#   netns.sh status    list the namespaces of $PREFIX (all netns.sh-style ones without PREFIX)
#   netns.sh exec HOST CMD...   run CMD inside host HOST (srv, s2.., w1, w2...), bounded by $TIMEOUT
#
# Topology. Namespace $PREFIX-sw holds the bridge br0; hosts $PREFIX-srv (SUBNET.1, the coordinator),
# $PREFIX-s2..sM (SUBNET.232..230+M, joined servers, only when SERVERS > 1) and $PREFIX-w1..wN
# (SUBNET.2..N+1) each get one veth "eth0" whose peer v-<host> is a port of br0.
# Every link is created inside the switch namespace and its peer moved straight into the host
# namespace (ip -n $PREFIX-sw link add v-$h type veth peer name eth0 netns $PREFIX-$h), so
# nothing is created in the root namespace, and nothing here ever sends a packet from it: hosts
# are reached only from inside other namespaces (ip netns exec).
#
# Environment:
#   PREFIX       namespace name prefix (default psnet$$; pass your own to up/down separately)
#   SUBNET       first three octets, must be 10.231.X (default 10.231.7)
#   BIN_DIR      directory with psserver, psworker, psctl (required by run)
#   PORT         server port (default 7000)
#   WORKERS      number of workers (default 3)
#   SERVERS      number of servers (default 1): the coordinator on srv gets --servers M, joined
#                servers 2..M run on hosts s2..sM as psserver --join SUBNET.1:PORT --advertise
#                SUBNET.<230+j>:PORT --shards $JOINED_SHARDS, started once the coordinator answers
#   SHARDS       --shards (default 4)
#   JOINED_SHARDS  --shards of each joined server (default $SHARDS)
#   DATA         --data (default digits)
#   MODEL        --model (default softmax)
#   EPOCHS       --epochs (passed only when set)
#   CHECKPOINT_DIR  --checkpoint-dir (default $OUT/checkpoints)
#   EXTRA_SERVER_FLAGS, EXTRA_WORKER_FLAGS  more flags, split on whitespace
#   EXTRA_JOINED_FLAGS  more flags for every joined server (e.g. --server-timeout 10)
#   SHAPE_RATE   e.g. 2gbit: every host's link is rate-limited both ways (tbf on the host's eth0
#                and on its switch port v-<host>, burst $SHAPE_BURST (256kb), latency
#                $SHAPE_LATENCY (50ms))
#   TIMEOUT      bound on the whole run in seconds (default 300); also bounds `exec`
#   READY_TIMEOUT  bound on waiting for the server to answer (default 60)
#   OUT          directory for logs (default a new mktemp -d): server.log, worker<i>.log (a
#                restarted process appends to its file), events.log, exitcodes
#   LOSS_WORKER=i[,j...]|all  LOSS_PERCENT=P   drop P % of the packets those workers send
#                (nftables numgen on their output hook; needs the nft binary); a loss-count
#                event (host=wI dropped=N) reports the drops when the job has ended
#   PARTITION_WORKER=i PARTITION_AFTER=s PARTITION_FOR=s   cut worker i's host off the network s
#                seconds after the workers were started (or after KILL_WHEN matched): an nftables
#                table "partition" in its namespace drops every packet its eth0 sends or receives
#                (partition-start event); PARTITION_FOR seconds later the table is deleted and the
#                traffic flows again (partition-end event with the rule's drop count). PARTITION_FOR
#                must be 0.1..600; the partition also ends when the job does (needs the nft binary)
#   KILL_WORKER=i KILL_AFTER=s       SIGKILL worker i s seconds after the workers were started
#   RESTART_WORKER=1                 restart it with the same --name one second later
#   KILL_SERVER_AFTER=s              SIGKILL the server s seconds after the workers were started
#   KILL_JOINED_SERVER_AFTER=s       SIGKILL joined server KILL_JOINED_SERVER (default $SERVERS,
#                                    the last one) s seconds after the workers were started
#   RESTART_JOINED_SERVER=1          restart it one second later with the same flags (it registers
#                                    again and the coordinator rolls the job back to the last
#                                    checkpoint); without it the coordinator ends the job after
#                                    --server-timeout
#   KILL_WHEN=regex                  count the kill delays from the first line of server.log that
#                                    matches this extended regex (e.g. 'event=checkpoint-written')
#                                    instead of from the workers' start; no match, no kill
#   RESTART_SERVER=1                 restart it one second later with --restore latest
#   STOP_WITH_PARENT=1               end the run (status 129, cleaned up) when the process that
#                                    started netns.sh exits, e.g. a test runner that was killed
#   PS_TOKEN, PS_DATA_DIR, OPENBLAS_NUM_THREADS (default 1) pass through to the processes.
#
# Output: one line per event on stdout (also appended to $OUT/events.log), e.g.
#   netns event=server-start t=0.021 host=srv pid=4242 address=10.231.7.1:7000
# $OUT/exitcodes: one line per process that ended, in the order they ended:
#   <name> <exit status> [killed|timeout]      e.g. "worker2 137 killed", "worker2 0", "server 0"
# A process still running at the deadline is recorded as "<name> 124 timeout". Joined server j is
# named server<j> (log server<j>.log).
#
# Exit status: 0 all good (the server's and every worker's last run exited 0; an intentionally
# killed run that was not restarted is ignored); 1 a process failed or the server never came up
# cleanly; 124 something timed out; 2 usage or environment error (not root, no BIN_DIR, no nft,
# bad PREFIX or SUBNET, namespaces already exist); 130/143 interrupted; 129 parent gone
# (STOP_WITH_PARENT). Namespaces and processes are removed on every exit path of run (trap EXIT
# INT TERM).
set -euo pipefail

readonly SCRIPT=${0##*/}
PREFIX_GIVEN=${PREFIX:+1}
PREFIX=${PREFIX:-psnet$$}
SUBNET=${SUBNET:-10.231.7}
PORT=${PORT:-7000}
WORKERS=${WORKERS:-3}
SERVERS=${SERVERS:-1}
SHARDS=${SHARDS:-4}
JOINED_SHARDS=${JOINED_SHARDS:-$SHARDS}
DATA=${DATA:-digits}
MODEL=${MODEL:-softmax}
EPOCHS=${EPOCHS:-}
TIMEOUT=${TIMEOUT:-300}
READY_TIMEOUT=${READY_TIMEOUT:-60}
EXTRA_SERVER_FLAGS=${EXTRA_SERVER_FLAGS:-}
EXTRA_WORKER_FLAGS=${EXTRA_WORKER_FLAGS:-}
EXTRA_JOINED_FLAGS=${EXTRA_JOINED_FLAGS:-}
SHAPE_RATE=${SHAPE_RATE:-}
SHAPE_BURST=${SHAPE_BURST:-256kb}
SHAPE_LATENCY=${SHAPE_LATENCY:-50ms}
LOSS_WORKER=${LOSS_WORKER:-}
LOSS_PERCENT=${LOSS_PERCENT:-}
PARTITION_WORKER=${PARTITION_WORKER:-}
PARTITION_AFTER=${PARTITION_AFTER:-}
PARTITION_FOR=${PARTITION_FOR:-}
KILL_WORKER=${KILL_WORKER:-}
KILL_AFTER=${KILL_AFTER:-}
RESTART_WORKER=${RESTART_WORKER:-0}
KILL_SERVER_AFTER=${KILL_SERVER_AFTER:-}
KILL_JOINED_SERVER=${KILL_JOINED_SERVER:-}
KILL_JOINED_SERVER_AFTER=${KILL_JOINED_SERVER_AFTER:-}
RESTART_JOINED_SERVER=${RESTART_JOINED_SERVER:-0}
KILL_WHEN=${KILL_WHEN:-}
STOP_WITH_PARENT=${STOP_WITH_PARENT:-0}
readonly PARENT_PID=$PPID
RESTART_SERVER=${RESTART_SERVER:-0}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

T0=${EPOCHREALTIME//[!0-9]/}
EVENTS_FILE=""

# --- small helpers -----------------------------------------------------------------------------

now_ms() {
    local t=${EPOCHREALTIME//[!0-9]/}
    echo $((t / 1000))
}

# event NAME key=value...: one line on stdout and in $OUT/events.log.
event() {
    local t=${EPOCHREALTIME//[!0-9]/} line
    t=$(((t - T0) / 1000))
    line=$(printf 'netns event=%s t=%d.%03d prefix=%s' "$1" $((t / 1000)) $((t % 1000)) "$PREFIX")
    shift
    if (($# > 0)); then line="$line $*"; fi
    if [[ -n $EVENTS_FILE ]]; then echo "$line" >>"$EVENTS_FILE"; fi
    # Whoever reads stdout may be gone (SIGPIPE is ignored in run): the run goes on and cleans up.
    echo "$line" 2>/dev/null || true
}

die() { # die STATUS MESSAGE
    echo "$SCRIPT: $2" >&2
    exit "$1"
}

# to_ms SECONDS: "2", "0.5", "1.25" -> milliseconds.
to_ms() {
    local s=$1 int frac
    [[ $s =~ ^[0-9]+(\.[0-9]+)?$ ]] || die 2 "not a number of seconds: '$s'"
    int=${s%%.*}
    frac=0
    if [[ $s == *.* ]]; then
        frac=${s#*.}000
        frac=${frac:0:3}
    fi
    echo $((10#$int * 1000 + 10#$frac))
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

host_ns() { echo "$PREFIX-$1"; }

# Namespaces that belong to $PREFIX (exact names only: sw, srv, s<N>, w<N>).
our_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}-(sw|srv|s[0-9]+|w[0-9]+)\$" || true
}

# joined_address J: the address of joined server J (2..SERVERS).
joined_address() { echo "$SUBNET.$((230 + $1))"; }

# alive PID: the process exists and is not a zombie.
alive() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

check_common() {
    [[ $PREFIX =~ ^[A-Za-z][A-Za-z0-9_]{0,19}$ ]] ||
        die 2 "PREFIX must be a letter then up to 19 letters, digits or _ (got '$PREFIX')"
    if ! { [[ $SUBNET =~ ^10\.231\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[1] <= 255)); }; then
        die 2 "SUBNET must be 10.231.X with X in 0..255 (got '$SUBNET')"
    fi
    if ! { is_uint "$WORKERS" && ((WORKERS >= 1 && WORKERS <= 200)); }; then
        die 2 "WORKERS must be 1..200"
    fi
    if ! { is_uint "$SERVERS" && ((SERVERS >= 1 && SERVERS <= 16)); }; then
        die 2 "SERVERS must be 1..16"
    fi
    if [[ -n $SHAPE_RATE && ! $SHAPE_RATE =~ ^[0-9]+(\.[0-9]+)?[kmg]?bit$ ]]; then
        die 2 "SHAPE_RATE must be a tc rate such as 500mbit or 2gbit (got '$SHAPE_RATE')"
    fi
    if ! { is_uint "$PORT" && ((PORT >= 1 && PORT <= 65535)); }; then
        die 2 "PORT must be 1..65535"
    fi
    if ! { is_uint "$TIMEOUT" && ((TIMEOUT >= 1)); }; then
        die 2 "TIMEOUT must be a positive number of seconds"
    fi
    ((EUID == 0)) || die 2 "must run as root (network namespaces)"
    command -v ip >/dev/null || die 2 "ip (iproute2) not found"
}

# Worker indexes that get packet loss, one per line.
loss_targets() {
    local i item items=()
    if [[ $LOSS_WORKER == all ]]; then
        for ((i = 1; i <= WORKERS; i++)); do echo "$i"; done
        return
    fi
    IFS=',' read -r -a items <<<"$LOSS_WORKER"
    for item in "${items[@]}"; do
        if ! { is_uint "$item" && ((item >= 1 && item <= WORKERS)); }; then
            die 2 "LOSS_WORKER: '$item' is not a worker index in 1..$WORKERS"
        fi
        echo "$item"
    done
}

check_loss() {
    [[ -z $LOSS_WORKER ]] && return 0
    if ! { is_uint "$LOSS_PERCENT" && ((LOSS_PERCENT <= 100)); }; then
        die 2 "LOSS_PERCENT must be 0..100"
    fi
    command -v nft >/dev/null ||
        die 2 "LOSS_WORKER needs nft: apt-get install -y --no-install-recommends nftables"
    loss_targets >/dev/null
}

check_partition() {
    [[ -z $PARTITION_WORKER ]] && return 0
    if ! { is_uint "$PARTITION_WORKER" && ((PARTITION_WORKER >= 1 && PARTITION_WORKER <= WORKERS)); }; then
        die 2 "PARTITION_WORKER must be a worker index in 1..$WORKERS"
    fi
    [[ -n $PARTITION_AFTER && -n $PARTITION_FOR ]] ||
        die 2 "PARTITION_WORKER needs PARTITION_AFTER and PARTITION_FOR (seconds)"
    to_ms "$PARTITION_AFTER" >/dev/null
    local span
    span=$(to_ms "$PARTITION_FOR")
    ((span >= 100 && span <= 600000)) || die 2 "PARTITION_FOR must be 0.1..600 seconds"
    command -v nft >/dev/null ||
        die 2 "PARTITION_WORKER needs nft: apt-get install -y --no-install-recommends nftables"
}

# --- up / down / status --------------------------------------------------------------------------

# Refuse (before any trap is installed) when $PREFIX's namespaces exist already: they belong to
# someone else's up, and a failure here must not delete them.
refuse_existing() {
    local existing
    existing=$(our_namespaces)
    [[ -z $existing ]] ||
        die 2 "namespaces with prefix $PREFIX already exist (run down first): $(echo "$existing" | tr '\n' ' ')"
}

do_down() {
    local namespaces ns pid pids=() deadline
    mapfile -t namespaces < <(our_namespaces)
    ((${#namespaces[@]} > 0)) || return 0
    for ns in "${namespaces[@]}"; do
        while read -r pid; do
            [[ -n $pid ]] && pids+=("$pid")
        done < <(ip netns pids "$ns" 2>/dev/null || true)
    done
    if ((${#pids[@]} > 0)); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        deadline=$(($(now_ms) + 3000))
        for pid in "${pids[@]}"; do
            while alive "$pid" && (($(now_ms) < deadline)); do sleep 0.05; done
        done
        for pid in "${pids[@]}"; do
            if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
        done
        event processes-killed "count=${#pids[@]}"
    fi
    # Hosts first, then the switch (deleting a namespace destroys its veth pairs).
    for ns in "${namespaces[@]}"; do
        [[ $ns == "$PREFIX-sw" ]] && continue
        ip netns del "$ns" 2>/dev/null || echo "$SCRIPT: could not delete namespace $ns" >&2
    done
    if [[ " ${namespaces[*]} " == *" $PREFIX-sw "* ]]; then
        ip netns del "$PREFIX-sw" 2>/dev/null || echo "$SCRIPT: could not delete namespace $PREFIX-sw" >&2
    fi
    event down "namespaces=${#namespaces[@]}"
}

add_host() { # add_host NAME ADDRESS
    local h=$1 addr=$2 ns
    ns=$(host_ns "$h")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$PREFIX-sw" link add "v-$h" type veth peer name eth0 netns "$ns"
    ip -n "$PREFIX-sw" link set "v-$h" master br0 up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    if [[ -n $SHAPE_RATE ]]; then
        # Both directions: what the host sends (its eth0) and what it receives (its switch port).
        ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$SHAPE_RATE" burst "$SHAPE_BURST" \
            latency "$SHAPE_LATENCY"
        ip netns exec "$PREFIX-sw" tc qdisc add dev "v-$h" root tbf rate "$SHAPE_RATE" \
            burst "$SHAPE_BURST" latency "$SHAPE_LATENCY"
    fi
    event host "host=$h ns=$ns address=$addr${SHAPE_RATE:+ rate=$SHAPE_RATE}"
}

add_loss() { # add_loss WORKER_INDEX
    local ns
    ns=$(host_ns "w$1")
    ip netns exec "$ns" nft add table inet chaos
    ip netns exec "$ns" nft add chain inet chaos out '{ type filter hook output priority 0; }'
    ip netns exec "$ns" nft add rule inet chaos out oifname eth0 numgen random mod 100 '<' "$LOSS_PERCENT" counter drop
    event loss "host=w$1 percent=$LOSS_PERCENT"
}

# partition_start I: drop every packet worker I's host sends or receives on eth0 (its own table, so
# LOSS_WORKER's "chaos" table is left alone; the namespace's loopback still works).
partition_start() {
    local ns
    ns=$(host_ns "w$1")
    ip netns exec "$ns" nft add table inet partition
    ip netns exec "$ns" nft add chain inet partition out '{ type filter hook output priority -10; }'
    ip netns exec "$ns" nft add chain inet partition in '{ type filter hook input priority -10; }'
    ip netns exec "$ns" nft add rule inet partition out oifname eth0 counter drop
    ip netns exec "$ns" nft add rule inet partition in iifname eth0 counter drop
    event partition-start "host=w$1 for=${PARTITION_FOR}s"
}

# partition_end I: delete the table again (a no-op when it is gone) and report its drops.
partition_end() {
    local ns dropped
    ns=$(host_ns "w$1")
    dropped=$(ip netns exec "$ns" nft list table inet partition 2>/dev/null |
        grep -o 'counter packets [0-9]*' | awk '{s += $3} END {print s + 0}')
    ip netns exec "$ns" nft delete table inet partition 2>/dev/null || true
    event partition-end "host=w$1 dropped=${dropped:-0}"
}

# One loss-count event per lossy worker: how many packets its nftables rule dropped.
report_loss() {
    local i ns dropped
    [[ -n $LOSS_WORKER ]] || return 0
    while read -r i; do
        ns=$(host_ns "w$i")
        dropped=$(ip netns exec "$ns" nft list chain inet chaos out 2>/dev/null |
            grep -o 'counter packets [0-9]*' | awk '{print $3}' | head -1)
        event loss-count "host=w$i dropped=${dropped:-unknown}"
    done < <(loss_targets)
}

do_up() {
    local i
    ip netns add "$PREFIX-sw"
    ip -n "$PREFIX-sw" link set lo up
    ip -n "$PREFIX-sw" link add br0 type bridge
    ip -n "$PREFIX-sw" link set br0 up
    add_host srv "$SUBNET.1"
    for ((i = 2; i <= SERVERS; i++)); do
        add_host "s$i" "$(joined_address "$i")"
    done
    for ((i = 1; i <= WORKERS; i++)); do
        add_host "w$i" "$SUBNET.$((i + 1))"
    done
    if [[ -n $LOSS_WORKER ]]; then
        while read -r i; do add_loss "$i"; done < <(loss_targets)
    fi
    event up "workers=$WORKERS servers=$SERVERS subnet=$SUBNET.0/24 server=$SUBNET.1:$PORT"
}

do_status() {
    local lines ns pids
    if [[ -n ${PREFIX_GIVEN:-} ]]; then
        lines=$(our_namespaces)
    else
        lines=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^[A-Za-z][A-Za-z0-9_]*-(sw|srv|s[0-9]+|w[0-9]+)$' || true)
    fi
    if [[ -z $lines ]]; then
        echo "no namespaces${PREFIX_GIVEN:+ with prefix $PREFIX}"
        return 1
    fi
    while read -r ns; do
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        printf '%s addresses=%s pids=%s\n' "$ns" \
            "$(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}' | tr '\n' ' ' | sed 's/ $//')" \
            "${pids% }"
    done <<<"$lines"
}

# --- run -----------------------------------------------------------------------------------------

# Per-process state, indexed by name (server, worker1...).
declare -A PID=() ENDED=() INTENT=() LAST_RC=()
SERVER_ARGS=()
NAMES=()
OVERALL_STATUS=0
CLEANED=0

record_exit() { # record_exit NAME RC [NOTE]
    echo "$1 $2${3:+ $3}" >>"$OUT/exitcodes"
}

start_server() { # start_server [extra args...]
    local ns
    ns=$(host_ns srv)
    ip netns exec "$ns" "$BIN_DIR/psserver" "${SERVER_ARGS[@]}" "$@" >>"$OUT/server.log" 2>&1 &
    PID[server]=$!
    ENDED[server]=0
    event server-start "host=srv pid=${PID[server]} address=$SUBNET.1:$PORT${1:+ extra=$*}"
}

start_joined_server() { # start_joined_server INDEX (2..SERVERS)
    local j=$1 ns name="server$1" address extra=()
    ns=$(host_ns "s$j")
    address=$(joined_address "$j")
    read -r -a extra <<<"$EXTRA_JOINED_FLAGS"
    ip netns exec "$ns" "$BIN_DIR/psserver" --host 0.0.0.0 --port "$PORT" --join "$SUBNET.1:$PORT" \
        --advertise "$address:$PORT" --shards "$JOINED_SHARDS" "${extra[@]}" >>"$OUT/$name.log" 2>&1 &
    PID[$name]=$!
    ENDED[$name]=0
    event server-start "host=s$j name=$name pid=${PID[$name]} address=$address:$PORT join=$SUBNET.1:$PORT"
}

start_worker() { # start_worker INDEX
    local i=$1 ns name="worker$1" extra=()
    ns=$(host_ns "w$i")
    read -r -a extra <<<"$EXTRA_WORKER_FLAGS"
    ip netns exec "$ns" "$BIN_DIR/psworker" --server "$SUBNET.1:$PORT" --name "$name" \
        "${extra[@]}" >>"$OUT/$name.log" 2>&1 &
    PID[$name]=$!
    ENDED[$name]=0
    event worker-start "host=w$i name=$name pid=${PID[$name]}"
}

# ended NAME RC: record the end of NAME's current process.
ended() {
    local name=$1 rc=$2 note=""
    ENDED[$name]=1
    LAST_RC[$name]=$rc
    if [[ ${INTENT[$name]:-} == killed ]]; then note=killed; fi
    record_exit "$name" "$rc" "$note"
    event exit "name=$name pid=${PID[$name]} rc=$rc${note:+ note=$note}"
}

# reap NAME: if the process has ended, record its status once; returns 0 when it has ended.
reap() {
    local name=$1 rc=0
    ((ENDED[$name] == 1)) && return 0
    alive "${PID[$name]}" && return 1
    { wait "${PID[$name]}"; } 2>/dev/null || rc=$?
    ended "$name" "$rc"
}

kill_process() { # kill_process NAME
    local name=$1 rc=0
    if ((ENDED[$name] == 0)) && alive "${PID[$name]}"; then
        INTENT[$name]=killed
        kill -KILL "${PID[$name]}" 2>/dev/null || true
        event kill "name=$name pid=${PID[$name]} signal=KILL"
        # Reap it at once: this also keeps bash from printing its own "Killed" job notice.
        { wait "${PID[$name]}"; } 2>/dev/null || rc=$?
        ended "$name" "$rc"
    else
        event kill-skipped "name=$name reason=already-exited"
        return 1
    fi
}

cleanup() {
    local status=$?
    ((CLEANED == 1)) && return
    CLEANED=1
    trap - EXIT INT TERM
    do_down || true
    exit "$status"
}

on_signal() { # on_signal STATUS
    event interrupted "status=$1"
    exit "$1"
}

# STOP_WITH_PARENT=1: end the run (and clean up) as soon as the process that started it is gone.
check_parent() {
    if [[ $STOP_WITH_PARENT == 1 ]] && ! alive "$PARENT_PID"; then
        event interrupted "status=129 reason=parent-exited parent=$PARENT_PID"
        exit 129
    fi
}

wait_for_server() {
    local deadline i=0 ns
    ns=$(host_ns w1)
    deadline=$(($(now_ms) + READY_TIMEOUT * 1000))
    while :; do
        i=$((i + 1))
        if timeout 5 ip netns exec "$ns" "$BIN_DIR/psctl" status --server "$SUBNET.1:$PORT" \
            >>"$OUT/psctl.log" 2>&1; then
            event server-ready "tries=$i"
            return 0
        fi
        if reap server; then
            event server-failed "reason=exited-before-ready rc=${LAST_RC[server]}"
            return 1
        fi
        if (($(now_ms) >= deadline || $(now_ms) >= RUN_DEADLINE)); then
            event timeout "phase=server-ready tries=$i"
            return 124
        fi
        check_parent
        sleep 0.3
    done
}

do_run() {
    local i name rc kill_worker_at=-1 kill_server_at=-1 restart_worker_at=-1 restart_server_at=-1
    local kill_joined_at=-1 restart_joined_at=-1 partition_at=-1 partition_end_at=-1
    local t workers_started extra=() all_done kill_armed=1
    [[ -n ${BIN_DIR:-} ]] || die 2 "BIN_DIR is required (directory with psserver, psworker, psctl)"
    for name in psserver psworker psctl; do
        [[ -x $BIN_DIR/$name ]] || die 2 "$BIN_DIR/$name is missing or not executable"
    done
    BIN_DIR=$(cd "$BIN_DIR" && pwd)
    is_uint "$READY_TIMEOUT" || die 2 "READY_TIMEOUT must be a number of seconds"
    if [[ -n $KILL_WORKER ]]; then
        if ! { is_uint "$KILL_WORKER" && ((KILL_WORKER >= 1 && KILL_WORKER <= WORKERS)); }; then
            die 2 "KILL_WORKER must be a worker index in 1..$WORKERS"
        fi
        [[ -n $KILL_AFTER ]] || die 2 "KILL_WORKER needs KILL_AFTER (seconds)"
        kill_worker_at=$(to_ms "$KILL_AFTER")
    fi
    if [[ -n $KILL_SERVER_AFTER ]]; then
        kill_server_at=$(to_ms "$KILL_SERVER_AFTER")
    fi
    check_partition
    if [[ -n $PARTITION_WORKER ]]; then partition_at=$(to_ms "$PARTITION_AFTER"); fi
    if [[ -n $KILL_JOINED_SERVER_AFTER ]]; then
        ((SERVERS >= 2)) || die 2 "KILL_JOINED_SERVER_AFTER needs SERVERS >= 2"
        KILL_JOINED_SERVER=${KILL_JOINED_SERVER:-$SERVERS}
        if ! { is_uint "$KILL_JOINED_SERVER" && ((KILL_JOINED_SERVER >= 2 && KILL_JOINED_SERVER <= SERVERS)); }; then
            die 2 "KILL_JOINED_SERVER must be a joined server index in 2..$SERVERS"
        fi
        kill_joined_at=$(to_ms "$KILL_JOINED_SERVER_AFTER")
    fi
    if ! { is_uint "$JOINED_SHARDS" && ((JOINED_SHARDS >= 1)); }; then
        die 2 "JOINED_SHARDS must be a positive number"
    fi
    OUT=${OUT:-$(mktemp -d /tmp/netns-run.XXXXXX)}
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    : >"$OUT/exitcodes"
    EVENTS_FILE=$OUT/events.log
    : >"$EVENTS_FILE"
    CHECKPOINT_DIR=${CHECKPOINT_DIR:-$OUT/checkpoints}
    mkdir -p "$CHECKPOINT_DIR"
    RUN_DEADLINE=$(($(now_ms) + TIMEOUT * 1000))

    SERVER_ARGS=(--host 0.0.0.0 --port "$PORT" --shards "$SHARDS" --workers "$WORKERS"
        --model "$MODEL" --data "$DATA" --checkpoint-dir "$CHECKPOINT_DIR")
    if [[ -n $EPOCHS ]]; then SERVER_ARGS+=(--epochs "$EPOCHS"); fi
    if ((SERVERS > 1)); then SERVER_ARGS+=(--servers "$SERVERS"); fi
    read -r -a extra <<<"$EXTRA_SERVER_FLAGS"
    SERVER_ARGS+=("${extra[@]}")

    check_loss
    refuse_existing
    trap cleanup EXIT
    trap 'on_signal 130' INT
    trap 'on_signal 143' TERM
    trap '' PIPE
    event run "out=$OUT timeout=${TIMEOUT}s workers=$WORKERS servers=$SERVERS bin=$BIN_DIR"
    do_up

    start_server
    rc=0
    wait_for_server || rc=$?
    if ((rc != 0)); then
        if ((rc == 124)); then
            ENDED[server]=1
            record_exit server 124 timeout
        fi
        event result "status=$rc"
        return "$rc"
    fi

    NAMES=(server)
    # Joined servers register with the coordinator, which answers by now; workers need not wait
    # for them (their hello is answered once every server has registered).
    for ((i = 2; i <= SERVERS; i++)); do
        NAMES+=("server$i")
        start_joined_server "$i"
    done
    for ((i = 1; i <= WORKERS; i++)); do
        NAMES+=("worker$i")
        start_worker "$i"
    done
    workers_started=$(now_ms)
    if [[ -n $KILL_WHEN ]]; then
        kill_armed=0
    else
        if ((kill_worker_at >= 0)); then kill_worker_at=$((workers_started + kill_worker_at)); fi
        if ((kill_server_at >= 0)); then kill_server_at=$((workers_started + kill_server_at)); fi
        if ((kill_joined_at >= 0)); then kill_joined_at=$((workers_started + kill_joined_at)); fi
        if ((partition_at >= 0)); then partition_at=$((workers_started + partition_at)); fi
    fi

    # Supervise until every process has ended (and no restart is pending), or the deadline.
    while :; do
        t=$(now_ms)
        # KILL_WHEN: the kill delays count from the first server.log line that matches it.
        if ((kill_armed == 0)) && grep -qE -- "$KILL_WHEN" "$OUT/server.log" 2>/dev/null; then
            kill_armed=1
            event kill-armed "when=${KILL_WHEN// /_}"
            if ((kill_worker_at >= 0)); then kill_worker_at=$((t + kill_worker_at)); fi
            if ((kill_server_at >= 0)); then kill_server_at=$((t + kill_server_at)); fi
            if ((kill_joined_at >= 0)); then kill_joined_at=$((t + kill_joined_at)); fi
            if ((partition_at >= 0)); then partition_at=$((t + partition_at)); fi
        fi
        if ((kill_armed == 1 && partition_at >= 0 && t >= partition_at)); then
            partition_at=-1
            partition_start "$PARTITION_WORKER"
            partition_end_at=$((t + $(to_ms "$PARTITION_FOR")))
        fi
        if ((partition_end_at >= 0 && t >= partition_end_at)); then
            partition_end_at=-1
            partition_end "$PARTITION_WORKER"
        fi
        if ((kill_armed == 1 && kill_worker_at >= 0 && t >= kill_worker_at)); then
            kill_worker_at=-1
            if kill_process "worker$KILL_WORKER" && [[ $RESTART_WORKER == 1 ]]; then
                restart_worker_at=$((t + 1000))
            fi
        fi
        if ((kill_armed == 1 && kill_server_at >= 0 && t >= kill_server_at)); then
            kill_server_at=-1
            if kill_process server && [[ $RESTART_SERVER == 1 ]]; then
                restart_server_at=$((t + 1000))
            fi
        fi
        if ((kill_armed == 1 && kill_joined_at >= 0 && t >= kill_joined_at)); then
            kill_joined_at=-1
            if kill_process "server$KILL_JOINED_SERVER" && [[ $RESTART_JOINED_SERVER == 1 ]]; then
                restart_joined_at=$((t + 1000))
            fi
        fi
        if ((restart_joined_at >= 0 && t >= restart_joined_at)); then
            name="server$KILL_JOINED_SERVER"
            if reap "$name"; then
                restart_joined_at=-1
                INTENT[$name]=""
                start_joined_server "$KILL_JOINED_SERVER"
            fi
        fi
        if ((restart_worker_at >= 0 && t >= restart_worker_at)); then
            name="worker$KILL_WORKER"
            if reap "$name"; then
                restart_worker_at=-1
                INTENT[$name]=""
                start_worker "$KILL_WORKER"
            fi
        fi
        if ((restart_server_at >= 0 && t >= restart_server_at)); then
            if reap server; then
                restart_server_at=-1
                INTENT[server]=""
                start_server --restore latest
            fi
        fi
        all_done=1
        for name in "${NAMES[@]}"; do reap "$name" || all_done=0; done
        if ((all_done == 1 && restart_worker_at < 0 && restart_server_at < 0 && restart_joined_at < 0 &&
            kill_worker_at < 0 && kill_server_at < 0 && kill_joined_at < 0 && partition_at < 0)); then
            if ((partition_end_at >= 0)); then
                partition_end_at=-1
                partition_end "$PARTITION_WORKER"
            fi
            break
        fi
        if ((t >= RUN_DEADLINE)); then
            for name in "${NAMES[@]}"; do
                if ((ENDED[$name] == 0)); then
                    ENDED[$name]=1
                    LAST_RC[$name]=124
                    record_exit "$name" 124 timeout
                    event timeout "name=$name pid=${PID[$name]}"
                fi
            done
            OVERALL_STATUS=124
            break
        fi
        # Everything ended but a scheduled kill never fired (the job finished first).
        if ((all_done == 1)); then
            if ((kill_worker_at >= 0 || kill_server_at >= 0 || kill_joined_at >= 0)); then
                event kill-skipped "reason=job-ended-first"
                kill_worker_at=-1
                kill_server_at=-1
                kill_joined_at=-1
            fi
            if ((partition_at >= 0)); then
                event partition-skipped "reason=job-ended-first"
                partition_at=-1
            fi
        fi
        check_parent
        sleep 0.1
    done

    if ((OVERALL_STATUS == 0)); then
        for name in "${NAMES[@]}"; do
            # The last run of each process counts; an intentional kill that was not followed by a
            # restart is not a failure.
            if [[ ${INTENT[$name]:-} == killed ]]; then continue; fi
            if ((LAST_RC[$name] != 0)); then
                event failed "name=$name rc=${LAST_RC[$name]}"
                OVERALL_STATUS=1
            fi
        done
    fi
    report_loss
    event result "status=$OVERALL_STATUS"
    return "$OVERALL_STATUS"
}

do_exec() { # do_exec HOST CMD...
    (($# >= 2)) || die 2 "usage: $SCRIPT exec HOST CMD..."
    local h=$1 ns
    shift
    [[ $h =~ ^(srv|s[0-9]+|w[0-9]+)$ ]] || die 2 "HOST must be srv, s<N> or w<N> (got '$h')"
    ns=$(host_ns "$h")
    ip netns list | awk '{print $1}' | grep -qx "$ns" || die 2 "no namespace $ns (run up first)"
    exec timeout "$TIMEOUT" ip netns exec "$ns" "$@"
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-}
    case $cmd in
    up)
        check_common
        check_loss
        refuse_existing
        trap 'status=$?; if ((status != 0)); then do_down || true; fi' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        do_up
        trap - EXIT INT TERM
        ;;
    run)
        check_common
        do_run
        ;;
    down)
        [[ -n $PREFIX_GIVEN ]] || die 2 "down needs PREFIX (the prefix given to up)"
        check_common
        do_down
        ;;
    status)
        ((EUID == 0)) || die 2 "must run as root (network namespaces)"
        do_status
        ;;
    exec)
        [[ -n $PREFIX_GIVEN ]] || die 2 "exec needs PREFIX (the prefix given to up)"
        check_common
        shift
        do_exec "$@"
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
