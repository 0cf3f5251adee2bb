#!/usr/bin/env bash
# Run a single-node Kafka broker (KRaft, broker and controller in one JVM) on loopback, from the
# jars that scripts/kafka_deps.sh put in .kafka/lib.
#   kafka_broker.sh start  DATA_DIR PORT  write DATA_DIR/server.properties, format DATA_DIR/logs on
#                                         first start only, start the broker in the background
#                                         (DATA_DIR/broker.pid, log in DATA_DIR/broker.log) and wait
#                                         until it serves on 127.0.0.1:PORT (controller on PORT+1)
#   kafka_broker.sh stop   DATA_DIR [PORT]  SIGTERM, then SIGKILL after 30 s
#   kafka_broker.sh status DATA_DIR [PORT]  print whether it runs; exit 0 if it does, 1 if not
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CP="$ROOT/.kafka/lib/*"
usage() { echo "usage: $0 start|stop|status DATA_DIR PORT" >&2; exit 2; }
(($# >= 2)) || usage
cmd=$1; DIR=$(realpath -m "$2"); PORT=${3:-}
PIDFILE=$DIR/broker.pid; LOG=$DIR/broker.log

# pid of the broker of DATA_DIR if it is alive (the pid is checked to be that java process)
running_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  ps -o args= -p "$pid" 2>/dev/null | grep -qF "kafka.Kafka $DIR/server.properties" || return 1
  echo "$pid"
}

write_config() {
  cat >"$DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$((PORT + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:$((PORT + 1))
log.dirs=$DIR/logs
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
EOF
}

start() {
  [[ $PORT =~ ^[0-9]+$ ]] || usage
  [[ -f $ROOT/.kafka/lib/kafka_2.13-4.4.0.jar ]] || bash "$ROOT/scripts/kafka_deps.sh"
  if pid=$(running_pid); then echo "kafka broker already running (pid $pid)"; return 0; fi
  mkdir -p "$DIR"
  write_config
  if [[ ! -f $DIR/logs/meta.properties ]]; then  # first start: format the storage
    local id
    id=$(java -cp "$CP" kafka.tools.StorageTool random-uuid)
    java -cp "$CP" kafka.tools.StorageTool format --standalone -t "$id" \
      -c "$DIR/server.properties" >"$DIR/format.log" 2>&1 || { cat "$DIR/format.log" >&2; exit 1; }
  fi
  [[ -f $LOG ]] && mv "$LOG" "$LOG.1"  # keep the previous run's log
  nohup java -Xmx512m -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$CP" kafka.Kafka "$DIR/server.properties" </dev/null >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 120); do  # up to 60 s
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break  # (not running_pid: exec may not have run yet)
    if grep -q 'Kafka Server started' "$LOG" && (: </dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then
      echo "kafka broker running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), data $DIR)"
      return 0
    fi
    sleep 0.5
  done
  echo "kafka broker did not come up on 127.0.0.1:$PORT; last lines of $LOG:" >&2
  tail -n 30 "$LOG" >&2
  grep -m1 -E ' (ERROR|FATAL) ' "$LOG" >&2 || true
  stop >/dev/null
  exit 1
}

stop() {
  local pid
  if ! pid=$(running_pid); then echo "kafka broker not running"; rm -f "$PIDFILE"; return 0; fi
  kill -TERM "$pid"
  for _ in $(seq 60); do  # up to 30 s
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; echo "kafka broker stopped"; return 0; }
    sleep 0.5
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  echo "kafka broker killed (no exit 30 s after SIGTERM)"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  status)
    if pid=$(running_pid); then echo "kafka broker running (pid $pid, data $DIR)"
    else echo "kafka broker not running (data $DIR)"; exit 1; fi ;;
  *) usage ;;
esac
