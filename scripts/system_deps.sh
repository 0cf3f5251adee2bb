#!/usr/bin/env bash
# Install the Debian packages recpipe needs, only those missing: a JDK 17+ (Spark),
# redis-server (real-time store, tests), libblas3/liblapack3 (native BLAS for MLlib).
set -euo pipefail
need=()
java_major() { java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -n1; }
if ! command -v java >/dev/null || [[ "$(java_major)" -lt 17 ]]; then need+=(openjdk-17-jdk-headless); fi
command -v redis-server >/dev/null || need+=(redis-server)
command -v wrk >/dev/null || need+=(wrk)  # load generator of `recpipe bench serve`
for lib in libblas3 liblapack3; do
  dpkg -s "$lib" >/dev/null 2>&1 || need+=("$lib")
done
((${#need[@]})) || exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# redis-server's package starts a system service; the project starts its own on loopback.
$SUDO service redis-server stop >/dev/null 2>&1 || true
