"""Assertions on the rendered Helm chart (dev/helm-check.sh): what the manifests must say."""
import json
import sys
import tomllib

import yaml


def load(path):
    with open(path) as f:
        return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(f) if d}


def job(docs):
    jobs = [d for (kind, _), d in docs.items() if kind == "Job"]
    assert len(jobs) == 1, f"one replay Job expected, got {len(jobs)}"
    return jobs[0]


default, variant = load(sys.argv[1]), load(sys.argv[2])

# Default: the live pipeline only.
assert not any(kind == "Job" for kind, _ in default), "replay is off by default"
# Live pods are a StatefulSet by default: pod N reads shard N/replicas, without a group.
assert not any(kind == "Deployment" for kind, _ in default), list(default)
(d,) = [d for (kind, _), d in default.items() if kind == "StatefulSet"]
spec = d["spec"]
assert spec["replicas"] == 2, spec
assert spec["podManagementPolicy"] == "Parallel", spec
pod = spec["template"]["spec"]
assert pod["terminationGracePeriodSeconds"] == 60
(c,) = pod["containers"]
args = c["args"]
assert args[2:5] == ["run", "-c", "/etc/kappa/pipeline.toml"], args
mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
assert mounts["/etc/kappa/pipeline.toml"]["subPath"] == "pipeline.toml"
assert "/etc/kappa/contracts" not in mounts, "the image's contracts are used by default"
assert c["securityContext"]["readOnlyRootFilesystem"] is True
env = {e["name"]: e for e in c["env"]}
assert env["KAPPA__METRICS__LISTEN"]["value"] == "0.0.0.0:9464", env
assert env["KAPPA_POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']", env
assert env["KAPPA__SOURCE__KAFKA__ASSIGNMENT"]["value"] == "shard", env
assert env["KAPPA__SOURCE__KAFKA__SHARD"]["value"] == "$(KAPPA_POD_INDEX)/2", env
names = [e["name"] for e in c["env"]]
assert names.index("KAPPA_POD_INDEX") < names.index("KAPPA__SOURCE__KAFKA__SHARD"), "$(VAR) needs VAR first"
assert c["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}], c["ports"]
assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, c["readinessProbe"]
assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, c["livenessProbe"]
assert pod["securityContext"]["runAsNonRoot"] is True
labels = spec["template"]["metadata"]["labels"]
assert all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()), labels
# The metrics Service: every live pod's metrics port, ready or not (a blocked or stalled pod
# must stay scraped), and nothing else.
svc = default[("Service", "kappa-kappa-metrics")]
assert svc["spec"]["selector"] == spec["selector"]["matchLabels"], svc["spec"]["selector"]
assert svc["spec"]["ports"] == [
    {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}
], svc["spec"]["ports"]
assert svc["spec"]["publishNotReadyAddresses"] is True, svc["spec"]
assert [kind for kind, _ in default].count("Service") == 1, list(default)
cm = default[("ConfigMap", "kappa-kappa-pipeline")]
assert "[source.kafka]" in cm["data"]["pipeline.toml"]
assert ("ServiceAccount", "kappa-kappa") in default

# Variant: a backfill Job only; no live pods, so no metrics Service and no ServiceMonitor even
# with metrics.serviceMonitor.enabled.
assert not any(kind in ("Deployment", "StatefulSet") for kind, _ in variant)
assert not any(kind in ("Service", "ServiceMonitor") for kind, _ in variant), list(variant)
j = job(variant)
spec = j["spec"]
assert spec["completionMode"] == "Indexed", spec
assert spec["completions"] == spec["parallelism"] == 6, spec
pod = spec["template"]["spec"]
(c,) = pod["containers"]
args = c["args"]
assert args[2:5] == ["replay", "-c", "/etc/kappa/pipeline.toml"], args
assert "--shard=$(JOB_COMPLETION_INDEX)/6" in args, args
assert pod["restartPolicy"] == "Never"
# Exit 2 (configuration), 3 (a gate blocked) and 4 (schema) fail the shard without a retry; a
# pod the cluster disrupts is retried without counting.
rules = spec["podFailurePolicy"]["rules"]
assert [r for r in rules if "onExitCodes" in r] == [{
    "action": "FailIndex",
    "onExitCodes": {"containerName": "replay", "operator": "In", "values": [2, 3, 4]},
}], rules
assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in rules, rules
env = {e["name"]: e for e in c["env"]}
assert env["KAPPA__METRICS__LISTEN"]["value"] == "0.0.0.0:9464", env
assert c["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}], c["ports"]
assert "readinessProbe" not in c and "livenessProbe" not in c, "a Job's pods are not probed"
assert (
    env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
)
assert "--start=2026-11-01T00:00:00Z" in args and "--end=2026-11-08T00:00:00Z" in args, args
assert "--set=commit.rows=500000" in args, args
assert pod["serviceAccountName"] == "lake-writer"
assert not any(kind == "ServiceAccount" for kind, _ in variant)
mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
assert "/etc/kappa/contracts" in mounts
vols = {v["name"]: v for v in pod["volumes"]}
assert vols["contracts"]["configMap"]["name"] == "orders-contracts"
assert vols["contracts"]["configMap"]["items"] == [{"key": "v1", "path": "orders-value/1.avsc"}]

# Alert rules: off by default; when on, a PrometheusRule with exactly the plain rules file.
assert not any(kind == "PrometheusRule" for kind, _ in default), "the PrometheusRule is off by default"
rules_doc, plain_rules = load(sys.argv[3]), sys.argv[4]
(rule,) = [d for (kind, _), d in rules_doc.items() if kind == "PrometheusRule"]
assert rule["apiVersion"] == "monitoring.coreos.com/v1", rule["apiVersion"]
assert rule["metadata"]["labels"]["release"] == "prometheus", rule["metadata"]["labels"]
with open(plain_rules) as f:
    assert rule["spec"] == yaml.safe_load(f), "the chart's rules differ from deploy/alerts/kappa-rules.yml"
alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
assert len(alerts) == 7 and {"KappaPartitionStopped", "KappaSmallFilesBuildUp"} <= set(alerts), alerts

# ServiceMonitor: off by default; when on, it scrapes /metrics on the metrics Service's port,
# at the configured interval, in the release's namespace, with the extra labels.
assert not any(kind == "ServiceMonitor" for kind, _ in default), "the ServiceMonitor is off by default"
monitor_doc = load(sys.argv[5])
(monitor,) = [d for (kind, _), d in monitor_doc.items() if kind == "ServiceMonitor"]
assert monitor["apiVersion"] == "monitoring.coreos.com/v1", monitor["apiVersion"]
assert monitor["metadata"]["labels"]["release"] == "prometheus", monitor["metadata"]["labels"]
svc = monitor_doc[("Service", "kappa-kappa-metrics")]
selected = monitor["spec"]["selector"]["matchLabels"]
assert all(svc["metadata"]["labels"].get(k) == v for k, v in selected.items()), (selected, svc["metadata"]["labels"])
assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["lake"]}, monitor["spec"]
assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}], monitor["spec"]
assert svc["spec"]["ports"][0]["port"] == 9500, svc["spec"]["ports"]
(d,) = [d for (kind, _), d in monitor_doc.items() if kind == "StatefulSet"]
(c,) = d["spec"]["template"]["spec"]["containers"]
assert c["ports"] == [{"name": "metrics", "containerPort": 9500, "protocol": "TCP"}], c["ports"]
assert {e["name"]: e["value"] for e in c["env"] if "value" in e}["KAPPA__METRICS__LISTEN"] == "0.0.0.0:9500"
pod_labels = d["spec"]["template"]["metadata"]["labels"]
assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), (svc["spec"]["selector"], pod_labels)
# live.assignment=group: a Deployment sharing the partitions through the consumer group.
group = load(sys.argv[6])
assert not any(kind == "StatefulSet" for kind, _ in group), list(group)
(d,) = [d for (kind, _), d in group.items() if kind == "Deployment"]
(c,) = d["spec"]["template"]["spec"]["containers"]
env = {e["name"]: e for e in c["env"]}
assert env["KAPPA__SOURCE__KAFKA__ASSIGNMENT"]["value"] == "group", env
assert "KAPPA__SOURCE__KAFKA__SHARD" not in env, env
# backfill.enabled: the plan Job, the indexed Job of shards and the publish Job, one id; exit 2, 3
# and 4 fail a shard index (or the plan, the publish) without a retry.
backfill = load(sys.argv[7])
jobs = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for (kind, _), d in backfill.items() if kind == "Job"}
assert set(jobs) == {"backfill-plan", "backfill", "backfill-publish"}, list(jobs)
assert jobs["backfill"]["metadata"]["name"] == "lake-kappa-backfill-r1", jobs["backfill"]["metadata"]
args = {}
for component, d in jobs.items():
    spec = d["spec"]
    (c,) = spec["template"]["spec"]["containers"]
    args[component] = c["args"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert "--from=2026-01-02" in c["args"] and "--to=2026-01-03" in c["args"], c["args"]
    assert "--id=lake-r1" in c["args"], c["args"]
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in c["env"], c["env"]
    rules = spec["podFailurePolicy"]["rules"]
    exits = [r for r in rules if "onExitCodes" in r]
    assert exits == [{
        "action": "FailIndex" if component == "backfill" else "FailJob",
        "onExitCodes": {"containerName": "backfill", "operator": "In", "values": [2, 3, 4]},
    }], rules
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in rules, rules
shards = jobs["backfill"]["spec"]
assert shards["completionMode"] == "Indexed" and shards["completions"] == 4 == shards["parallelism"], shards
assert shards["backoffLimitPerIndex"] == 3 and shards["maxFailedIndexes"] == 0, shards
assert args["backfill-plan"][2:5] == ["backfill", "plan", "--shards=4"], args["backfill-plan"]
assert "--shard=$(JOB_COMPLETION_INDEX)/4" in args["backfill"] and "--wait=10m" in args["backfill"], args["backfill"]
assert args["backfill-publish"][2:4] == ["backfill", "publish"], args["backfill-publish"]
assert "--wait=6h" in args["backfill-publish"] and "--dry-run" in args["backfill-publish"], args["backfill-publish"]
(c,) = jobs["backfill"]["spec"]["template"]["spec"]["containers"]
env = {e["name"]: e for e in c["env"]}
assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
# A REST catalog (deploy/examples/orders-rest.toml as the pipeline): the ConfigMap carries the file
# as it is, with no catalog secret; the credential reaches the live, replay and backfill pods
# alike through `env`, from the Secret.
rest, rest_example = load(sys.argv[8]), sys.argv[9]
pipeline = tomllib.loads(rest[("ConfigMap", "rest-kappa-pipeline")]["data"]["pipeline.toml"])
with open(rest_example, "rb") as f:
    assert pipeline == tomllib.load(f), "the ConfigMap differs from deploy/examples/orders-rest.toml"
catalog = pipeline["catalog"]
assert catalog["type"] == "rest", catalog
assert not {"credential", "token", "secret_access_key"} & set(catalog), "a catalog secret in the ConfigMap"
containers = {
    d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["spec"]["containers"]
    for (kind, _), d in rest.items() if kind in ("StatefulSet", "Deployment", "Job")
}
assert set(containers) == {"live", "replay", "backfill-plan", "backfill", "backfill-publish"}, list(containers)
for component, (c,) in containers.items():
    env = {e["name"]: e for e in c["env"]}
    assert env["KAPPA__CATALOG__CREDENTIAL"] == {
        "name": "KAPPA__CATALOG__CREDENTIAL",
        "valueFrom": {"secretKeyRef": {"name": "kappa-catalog", "key": "credential"}},
    }, (component, env)
# maintenance.enabled: a CronJob running `kappa maintain all`, never two at once; the thresholds
# set in values as --set overrides of [maintenance], the unset ones left to the pipeline; exit 2
# fails the Job at once.
assert not any(kind == "CronJob" for kind, _ in default), "the maintenance CronJob is off by default"
maintenance = load(sys.argv[10])
cronjobs = [d for (kind, _), d in maintenance.items() if kind == "CronJob"]
assert len(cronjobs) == 1, f"one maintenance CronJob expected, got {len(cronjobs)}"
(cron,) = cronjobs
assert cron["metadata"]["name"] == "kappa-kappa-maintenance", cron["metadata"]
assert cron["metadata"]["labels"]["app.kubernetes.io/component"] == "maintenance", cron["metadata"]["labels"]
spec = cron["spec"]
assert spec["concurrencyPolicy"] == "Forbid", spec
assert spec["schedule"] == "17 3 * * *", spec
assert spec["timeZone"] == "Etc/UTC", spec
assert spec["startingDeadlineSeconds"] == 3600 and spec["suspend"] is False, spec
assert spec["successfulJobsHistoryLimit"] == 3 == spec["failedJobsHistoryLimit"], spec
job_spec = spec["jobTemplate"]["spec"]
assert job_spec["backoffLimit"] == 2 and job_spec["ttlSecondsAfterFinished"] == 86400, job_spec
assert "activeDeadlineSeconds" not in job_spec, job_spec
rules = job_spec["podFailurePolicy"]["rules"]
assert {
    "action": "FailJob",
    "onExitCodes": {"containerName": "maintenance", "operator": "In", "values": [2]},
} in rules, rules
assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in rules, rules
template = job_spec["template"]
assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "maintenance", template["metadata"]
assert "checksum/pipeline" in template["metadata"]["annotations"], template["metadata"]
pod = template["spec"]
assert pod["restartPolicy"] == "Never", pod
(c,) = pod["containers"]
assert c["name"] == "maintenance", c["name"]
args = c["args"]
assert args[2:6] == ["maintain", "all", "-c", "/etc/kappa/pipeline.toml"], args
for arg in ("--set=maintenance.retain_last=5", "--set=maintenance.orphan_older_than=7d", "--set=metrics.linger=60s"):
    assert arg in args, (arg, args)
assert args[-1] == "--json", args
assert not any(a.startswith("--set=maintenance.expire_older_than=") for a in args), args
assert "--dry-run" not in args, args
env = {e["name"]: e for e in c["env"]}
assert env["KAPPA__METRICS__LISTEN"]["value"] == "0.0.0.0:9464", env
assert c["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}], c["ports"]
mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
assert mounts["/etc/kappa/pipeline.toml"]["subPath"] == "pipeline.toml", mounts
vols = {v["name"]: v for v in pod["volumes"]}
assert vols[mounts["/etc/kappa/pipeline.toml"]["name"]]["configMap"]["name"] == "kappa-kappa-pipeline", vols
assert c["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}, c["resources"]


def templates(docs):
    """(kind, component, pod template) of every workload: StatefulSet, Deployment, Job, CronJob."""
    for (kind, _), d in docs.items():
        if kind in ("StatefulSet", "Deployment", "Job"):
            t = d["spec"]["template"]
        elif kind == "CronJob":
            t = d["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        yield kind, t["metadata"]["labels"]["app.kubernetes.io/component"], t


def kinds(docs):
    return [kind for kind, _ in docs]


DEFAULT_RESOURCES = {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
REPLAY_RESOURCES = {"requests": {"cpu": "4", "memory": "4Gi"}, "limits": {"memory": "6Gi"}}

# The image: <repository>:<appVersion> by default; the top-level `resources` for every container
# while live.resources and replay.resources are empty (values written before them still work).
for _, component, t in templates(default):
    (c,) = t["spec"]["containers"]
    assert c["image"] == "ghcr.io/kappa-data/kappa:0.1.0", c["image"]
    assert c["resources"] == DEFAULT_RESOURCES, (component, c["resources"])
    assert "priorityClassName" not in t["spec"] and "topologySpreadConstraints" not in t["spec"], t["spec"]
for _, component, t in templates(load(sys.argv[7])):
    (c,) = t["spec"]["containers"]
    assert c["resources"] == DEFAULT_RESOURCES, (component, c["resources"])

# PodDisruptionBudget: with live.replicas 2 (the default), maxUnavailable 1 over the live pods;
# none with one replica, none when disabled; minAvailable instead when set; a Deployment's too.
(sts,) = [d for (kind, _), d in default.items() if kind == "StatefulSet"]
pdb = default[("PodDisruptionBudget", "kappa-kappa-live")]
assert pdb["apiVersion"] == "policy/v1", pdb["apiVersion"]
assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"], pdb["spec"]
assert "unhealthyPodEvictionPolicy" not in pdb["spec"], pdb["spec"]
assert pdb["spec"]["selector"] == sts["spec"]["selector"], (pdb["spec"]["selector"], sts["spec"]["selector"])
minimal, batch, full = load(sys.argv[11]), load(sys.argv[12]), load(sys.argv[13])
(sts,) = [d for (kind, _), d in minimal.items() if kind == "StatefulSet"]
assert sts["spec"]["replicas"] == 1, sts["spec"]
assert "PodDisruptionBudget" not in kinds(minimal), kinds(minimal)
pdb = load(sys.argv[15])[("PodDisruptionBudget", "kappa-kappa-live")]
assert pdb["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in pdb["spec"], pdb["spec"]
assert "PodDisruptionBudget" not in kinds(load(sys.argv[16])), "podDisruptionBudget.enabled=false"
(deployment,) = [d for (kind, _), d in group.items() if kind == "Deployment"]
pdb = group[("PodDisruptionBudget", "kappa-kappa-live")]
pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
assert all(pod_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()), pdb["spec"]
assert "PodDisruptionBudget" not in kinds(variant) and "PodDisruptionBudget" not in kinds(batch), "no live pods"

# The connection test: a hook Pod fetching /healthz through the metrics Service, only with live
# pods; no PodMonitor and no dashboard unless asked for.
test = default[("Pod", "kappa-kappa-test-connection")]
assert test["metadata"]["annotations"]["helm.sh/hook"] == "test", test["metadata"]
assert test["metadata"]["labels"]["app.kubernetes.io/component"] == "test", test["metadata"]["labels"]
(c,) = test["spec"]["containers"]
assert c["image"] == "busybox:1.37", c["image"]
assert "wget -q -T 5 -O - http://kappa-kappa-metrics:9464/healthz" in c["args"][0], c["args"]
assert test["spec"]["restartPolicy"] == "Never" and test["spec"]["securityContext"]["runAsNonRoot"] is True
svc = default[("Service", "kappa-kappa-metrics")]
assert svc["spec"]["ports"][0]["port"] == 9464 and svc["spec"]["ports"][0]["name"] == "metrics", svc["spec"]
assert "Pod" not in kinds(variant) and "Pod" not in kinds(batch), "a test without live pods"
assert "PodMonitor" not in kinds(default) and "PodMonitor" not in kinds(batch), "the PodMonitor is off by default"
assert not any(name.endswith("-dashboard") for _, name in default), "the dashboard is off by default"

# ci/replay-backfill: no live pods; the replay and the backfill pods with replay.resources.
assert not {"StatefulSet", "Deployment", "Service"} & set(kinds(batch)), kinds(batch)
components = {component: t for _, component, t in templates(batch)}
assert set(components) == {"replay", "backfill-plan", "backfill", "backfill-publish"}, list(components)
for component, t in components.items():
    (c,) = t["spec"]["containers"]
    assert c["resources"] == REPLAY_RESOURCES, (component, c["resources"])

# ci/full: everything on.
LABELS = {"team": "data-platform", "cost-center": "lake"}
DIGEST = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
assert set(kinds(full)) == {
    "ServiceAccount", "ConfigMap", "Service", "StatefulSet", "Deployment", "Job", "CronJob",
    "PodDisruptionBudget", "ServiceMonitor", "PodMonitor", "PrometheusRule", "Pod",
}, sorted(set(kinds(full)))
# commonLabels on every object and every pod, never in a selector.
for (kind, name), d in full.items():
    labels = d["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in LABELS.items()), (kind, name, labels)
    assert labels["app.kubernetes.io/instance"] == "kappa", (kind, name, labels)
    spec = d.get("spec") if isinstance(d.get("spec"), dict) else {}
    selector = spec.get("selector") or {}
    selector = selector.get("matchLabels", selector)
    assert not set(LABELS) & set(selector), (kind, name, selector)
kappa_pods = list(templates(full))
assert {component for _, component, _ in kappa_pods} == {
    "live", "replay", "backfill-plan", "backfill", "backfill-publish", "maintenance", "admin"
}, kappa_pods
for kind, component, t in kappa_pods:
    labels = t["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in LABELS.items()), (component, labels)
    assert labels["tier"] == "ingestion", (component, labels)
    spec = t["spec"]
    (c,) = spec["containers"]
    # The digest wins over the tag.
    assert c["image"] == "registry.example.com/kappa@" + DIGEST, (component, c["image"])
    assert spec["priorityClassName"] == "lake-ingestion", (component, spec)
    zone, host = spec["topologySpreadConstraints"]
    assert zone["topologyKey"] == "topology.kubernetes.io/zone" and zone["whenUnsatisfiable"] == "ScheduleAnyway", zone
    assert zone["labelSelector"] == {"matchLabels": {
        "app.kubernetes.io/name": "kappa", "app.kubernetes.io/instance": "kappa", "app.kubernetes.io/component": component,
    }}, (component, zone)
    assert host["labelSelector"] == {"matchLabels": {"app.kubernetes.io/name": "kappa"}}, (component, host)
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["kafka-tls"] == {"name": "kafka-tls", "secret": {"secretName": "kafka-client-tls"}}, vols
    assert vols["scratch"] == {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}, vols
    assert {"pipeline", "tmp"} <= set(vols), vols
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/kafka-tls"] == {"name": "kafka-tls", "mountPath": "/etc/kafka-tls", "readOnly": True}, mounts
    assert mounts["/scratch"]["name"] == "scratch" and "/etc/kappa/pipeline.toml" in mounts, mounts
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}], spec
    # live.resources for the live pods, replay.resources for the replay and backfill pods, the
    # top-level resources for the maintenance CronJob (maintenance.resources empty).
    expected = {
        "live": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1536Mi"}},
        "maintenance": DEFAULT_RESOURCES,
        "admin": {"requests": {"cpu": "100m", "memory": "256Mi"}},
    }.get(component, REPLAY_RESOURCES)
    assert c["resources"] == expected, (component, c["resources"])
# The admin pod: one idle pod with the pipeline file, `env` and volumes of the others (checked
# above), running no pipeline and serving nothing; the default renders none.
admin = full[("Deployment", "kappa-kappa-admin")]
assert admin["spec"]["replicas"] == 1, admin["spec"]
(c,) = admin["spec"]["template"]["spec"]["containers"]
assert c["command"] == ["sleep", "infinity"] and "args" not in c and "ports" not in c, c
# `env` as the live pods get it, without what the chart adds for a running pipeline.
(live,) = full[("StatefulSet", "kappa-kappa-live")]["spec"]["template"]["spec"]["containers"]
added = {"KAPPA_POD_INDEX", "KAPPA__SOURCE__KAFKA__ASSIGNMENT", "KAPPA__SOURCE__KAFKA__SHARD", "KAPPA__METRICS__LISTEN"}
values_env = [e for e in live["env"] if e["name"] not in added]
assert values_env and c["env"] == values_env, (c["env"], values_env)
assert not any(d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "admin"
               for (kind, _), d in default.items() if kind == "Deployment"), "no admin pod by default"
# The live pods' budget.
pdb = full[("PodDisruptionBudget", "kappa-kappa-live")]
assert pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", pdb["spec"]
# The test pod's own image, by digest.
(c,) = full[("Pod", "kappa-kappa-test-connection")]["spec"]["containers"]
assert c["image"] == "registry.example.com/mirror/busybox@sha256:" + "fedcba9876543210" * 4, c["image"]
# The PodMonitor: the replay, backfill and maintenance pods of this release, on their metrics port.
monitor = full[("PodMonitor", "kappa-kappa-replay")]
assert monitor["apiVersion"] == "monitoring.coreos.com/v1", monitor["apiVersion"]
assert monitor["metadata"]["labels"]["release"] == "prometheus", monitor["metadata"]["labels"]
spec = monitor["spec"]
assert spec["namespaceSelector"] == {"matchNames": ["lake"]}, spec
assert spec["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}], spec
assert spec["selector"]["matchExpressions"] == [
    {"key": "app.kubernetes.io/component", "operator": "In",
     "values": ["replay", "maintenance", "backfill-plan", "backfill", "backfill-publish"]}
], spec["selector"]
batch_components = {"replay", "maintenance", "backfill-plan", "backfill", "backfill-publish"}
scraped = set()
for _, component, t in kappa_pods:
    labels = t["metadata"]["labels"]
    if all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()) and component in batch_components:
        (c,) = t["spec"]["containers"]
        assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in c["ports"], (component, c.get("ports"))
        env = {e["name"]: e for e in c["env"]}
        assert env["KAPPA__METRICS__LISTEN"]["value"] == "0.0.0.0:9464", (component, env)
        scraped.add(component)
assert scraped == batch_components, scraped
assert full[("ServiceMonitor", "kappa-kappa")]["metadata"]["labels"]["release"] == "prometheus"
assert full[("PrometheusRule", "kappa-kappa")]["metadata"]["labels"]["release"] == "prometheus"
# The dashboard ConfigMap: the sidecar's label, the folder annotation, exactly deploy/grafana/kappa.json.
dashboard = full[("ConfigMap", "kappa-kappa-dashboard")]
assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1", dashboard["metadata"]["labels"]
assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Kappa"}, dashboard["metadata"]
with open(sys.argv[14]) as f:
    assert json.loads(dashboard["data"]["kappa.json"]) == json.load(f), "the dashboard differs from deploy/grafana/kappa.json"
# The pipeline with its policies, as given.
pipeline = tomllib.loads(full[("ConfigMap", "kappa-kappa-pipeline")]["data"]["pipeline.toml"])
assert pipeline["quality"]["gates"]["null_rate"]["policy"] == "quarantine", pipeline["quality"]
assert pipeline["event_time"]["late_policy"] == "late_table", pipeline["event_time"]
print("helm_assert: ok")
