#!/usr/bin/env bash
# Checks the alert rules without a Prometheus server: `promtool check rules` on the plain rules
# file and on the Helm chart's copy, then the unit tests in deploy/alerts/tests (each alert
# fires on a synthetic failing series and stays quiet on a healthy one), and parse every query
# of the Grafana dashboard (deploy/grafana/kappa.json) with promtool, as recording rules.
# promtool comes from Debian's prometheus package (dev/services.sh install-promtool, also part of
# install), or KAPPA_PROMTOOL.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")

"$HERE/services.sh" install-promtool
PROMTOOL=${KAPPA_PROMTOOL:-$(command -v promtool || true)}
if [ -z "$PROMTOOL" ]; then
  echo "alerts-check: promtool not found (apt-get install prometheus, or set KAPPA_PROMTOOL)" >&2
  exit 1
fi
"$PROMTOOL" check rules "$ROOT/deploy/alerts/kappa-rules.yml" "$ROOT/helm/kappa/files/kappa-rules.yml"
"$PROMTOOL" test rules "$ROOT"/deploy/alerts/tests/*.yml
DASH_RULES=$(mktemp --suffix=.yml)
trap 'rm -f "$DASH_RULES"' EXIT
python3 - "$ROOT/deploy/grafana/kappa.json" > "$DASH_RULES" <<'PY'
import json, sys
def targets(panels):
    for p in panels:
        yield from p.get("targets", [])
        yield from targets(p.get("panels", []))
dash = json.load(open(sys.argv[1]))
exprs = [t["expr"] for t in targets(dash["panels"])]
assert exprs, "the dashboard has no queries"
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    e = e.replace("$__rate_interval", "5m").replace("$table", ".*").replace("$topic", ".*")
    print(f"      - record: dashboard:query{i}\n        expr: {json.dumps(e)}")
PY
"$PROMTOOL" check rules "$DASH_RULES"
echo "alerts-check: ok"
