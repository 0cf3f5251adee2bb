#!/usr/bin/env bash
# The lookup service on a loopback port, a few requests, then stop it (part of `make demo`).
# Events travel on Kafka: a single-node broker (scripts/kafka_broker.sh) is started on
# loopback, the service produces the posted event to its topic, and `recpipe consume`
# ingests the topic into the lake.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
free_port() { "$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=${PORT:-$(free_port)}
KAFKA_DIR=$PWD/var/kafka
KAFKA_PORT=$(cat "$KAFKA_DIR/port" 2>/dev/null || free_port)  # the data keeps its port
export RECPIPE_SERVING__API_KEY=${RECPIPE_SERVING__API_KEY:-demo-key}
export RECPIPE_EVENTS__KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
echo "== Kafka broker (KRaft, one node) on 127.0.0.1:$KAFKA_PORT"
mkdir -p "$KAFKA_DIR"; echo "$KAFKA_PORT" >"$KAFKA_DIR/port"
bash scripts/kafka_broker.sh start "$KAFKA_DIR" "$KAFKA_PORT"
"$BIN/recpipe" consume --create-topic
echo "== recpipe serve on 127.0.0.1:$PORT (events to Kafka)"
"$BIN/recpipe" serve --host 127.0.0.1 --port "$PORT" >var/demo-serve.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; bash scripts/kafka_broker.sh stop "$KAFKA_DIR" >/dev/null' EXIT
for _ in $(seq 1 60); do
  curl -fs "127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
show() { echo "\$ curl $*"; curl -s "$@" | "$BIN/python" -c 'import json,sys; d=json.load(sys.stdin); s=json.dumps(d); print(s[:400] + (" ..." if len(s) > 400 else ""))'; }
show "127.0.0.1:$PORT/readyz"
show "127.0.0.1:$PORT/recommendations/users/1?surface=home_feed&n=5"
show "127.0.0.1:$PORT/recommendations/items/50/similar?n=5"
show -X POST "127.0.0.1:$PORT/events/interactions" -H "X-API-Key: $RECPIPE_SERVING__API_KEY" \
  -H 'content-type: application/json' \
  -d '{"events": [{"event_id": "demo-1", "user_id": "1", "item_id": "1", "event_type": "click"}]}'
show "127.0.0.1:$PORT/recommendations/users/999999?n=3"
show "127.0.0.1:$PORT/recommendations/users/1?n=5000"
echo "== recpipe consume: the topic into bronze/silver (stops after 5 s without events)"
"$BIN/recpipe" consume --until-idle 5 --instance demo 2>var/demo-consume.log | tail -1
