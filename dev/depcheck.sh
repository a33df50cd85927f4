#!/usr/bin/env bash
# Architecture rule (CONTRIBUTING.md, "The layering rules"): business logic, quality and schema
# crates never depend on a source or a sink, kappa-core depends on no I/O crate, and kappa-metrics
# (which every stage emits through) on no source, sink or storage crate. Checked over
# `cargo metadata`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
meta = json.load(sys.stdin)
deps = {p["name"]: {d["name"] for d in p["dependencies"] if d.get("kind") in (None, "normal")} for p in meta["packages"]}
io = {"rdkafka", "object_store", "iceberg", "iceberg-catalog-sql", "iceberg-storage-opendal", "sqlx", "reqwest", "tokio"}
sources_sinks = {"kappa-source-kafka", "kappa-source-replay", "kappa-iceberg", "kappa-runtime"}
rules = {
    "kappa-core": io | sources_sinks,
    "kappa-config": io | sources_sinks,
    "kappa-logic": io | sources_sinks,
    "kappa-quality": io | sources_sinks,
    "kappa-schema": sources_sinks | {"rdkafka", "object_store", "sqlx"},
    "kappa-source-replay": {"iceberg", "rdkafka", "kappa-iceberg"},
    "kappa-source-kafka": {"iceberg", "kappa-iceberg", "object_store"},
    "kappa-iceberg": {"rdkafka", "kappa-source-kafka", "kappa-source-replay"},
    # Sources, the committer and the runtime all emit through it: it depends on none of them.
    "kappa-metrics": sources_sinks | (io - {"tokio"}),
}
bad = [f"{crate} must not depend on {d}" for crate, banned in rules.items() if crate in deps for d in sorted(deps[crate] & banned)]
for b in bad: print("depcheck:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
'
echo "depcheck: ok"
