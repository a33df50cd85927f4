#!/usr/bin/env bash
# Checks the alert rules without a Prometheus server: `promtool check rules` on the plain rules
# file and on the Helm chart's copy, then the unit tests in deploy/alerts/tests (each alert
# fires on a synthetic failing series and stays quiet on a healthy one).
# promtool comes from Debian's prometheus package (dev/services.sh install), or KAPPA_PROMTOOL.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")

"$HERE/services.sh" install
PROMTOOL=${KAPPA_PROMTOOL:-$(command -v promtool || true)}
if [ -z "$PROMTOOL" ]; then
  echo "alerts-check: promtool not found (apt-get install prometheus, or set KAPPA_PROMTOOL)" >&2
  exit 1
fi
"$PROMTOOL" check rules "$ROOT/deploy/alerts/kappa-rules.yml" "$ROOT/helm/kappa/files/kappa-rules.yml"
"$PROMTOOL" test rules "$ROOT"/deploy/alerts/tests/*.yml
echo "alerts-check: ok"
