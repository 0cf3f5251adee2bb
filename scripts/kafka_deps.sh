#!/usr/bin/env bash
# Install the jars of the local Kafka broker (scripts/kafka/pom.xml) into .kafka/lib with Maven,
# only when missing or when the pom changed (stamp keyed by the pom's checksum). Installs
# Debian's maven package first when `mvn` is missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
POM=$ROOT/scripts/kafka/pom.xml
LIB=$ROOT/.kafka/lib
STAMP=$ROOT/.kafka/lib.stamp
sum=$(sha256sum "$POM" | cut -d' ' -f1)
[[ -f $STAMP && $(cat "$STAMP") == "$sum" ]] && exit 0

if ! command -v mvn >/dev/null; then
  echo "installing Debian package: maven"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends maven >/dev/null
fi

echo "installing the Kafka broker jars into .kafka/lib (Maven)"
rm -rf "$LIB" "$STAMP"
mkdir -p "$LIB"
if ! out=$(mvn -q -B -U -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIB" 2>&1); then
  grep -m1 -o '\[ERROR\].*' <<<"$out" >&2 || echo "$out" | tail -n 20 >&2
  bad=$(grep -oE '[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:(jar|pom):[A-Za-z0-9_.-]+' <<<"$out" \
        | grep -v '^recpipe:' | sort -u | paste -sd' ')
  echo "kafka_deps: Maven refused the Kafka broker's artifacts ${bad:-(see the error above)}," \
       "pinned in scripts/kafka/pom.xml" >&2
  rm -rf "$LIB"
  exit 1
fi
echo "$sum" >"$STAMP"
