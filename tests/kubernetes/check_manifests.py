#!/usr/bin/env python3
"""Checks the built Kubernetes manifests (tests/kubernetes/check.sh builds them):

  check_manifests.py BASE.yaml HA.yaml

Prints one line per check and a final "N passed, M failed"; exit 1 if anything failed.
"""

import json
import os
import sys

import kubernetes_validate
import yaml

# The e2e suites' "ok - / FAIL -" report, so every suite prints the same way.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from alerting_e2e import Report  # noqa: E402

K8S_VERSION = "1.32.0"
# Kinds with schemas in kubernetes-validate (the Prometheus Operator's CRDs are checked by
# hand below).
CORE_KINDS = {"Deployment", "Service", "ConfigMap", "Secret", "NetworkPolicy", "PodDisruptionBudget"}
NAME = "apitoken-exporter"
SECRET_EXAMPLE = "deploy/kubernetes/base/secret.example.yaml"
RULES = "alerts/apitoken.rules.yml"
DASHBOARD = "dashboards/apitoken-overview.json"


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(report, docs, kind, where):
    found = by_kind(docs, kind)
    report.check(len(found) == 1, f"{where}: one {kind}", f"found {len(found)}")
    return found[0] if found else {}


def validate(report, doc, where):
    kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        report.check(True, f"{where}: {kind} {name} is valid Kubernetes {K8S_VERSION} (strict schema)")
    except kubernetes_validate.ValidationError as err:
        report.check(False, f"{where}: {kind} {name} is valid Kubernetes {K8S_VERSION}",
                     f"{err.message} at {'.'.join(str(p) for p in err.path)}")
    except Exception as err:  # noqa: BLE001 (schema lookup problems are failures too)
        report.check(False, f"{where}: {kind} {name} validates", repr(err))


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_base(report, docs, where):
    kinds = sorted({d["kind"] for d in docs})
    for doc in docs:
        if doc["kind"] in CORE_KINDS:
            validate(report, doc, where)
    report.check({"Deployment", "Service", "ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap"} <= set(kinds),
                 f"{where}: Deployment, Service, ServiceMonitor, PrometheusRule, NetworkPolicy, ConfigMaps present",
                 f"kinds {kinds}")
    report.check(not by_kind(docs, "Secret"), f"{where}: no Secret in the build (real tokens are never overwritten)")

    dep = one(report, docs, "Deployment", where)
    pod = dep.get("spec", {}).get("template", {})
    spec = pod.get("spec", {})
    pod_labels = pod.get("metadata", {}).get("labels", {})
    containers = spec.get("containers", [])
    c = containers[0] if containers else {}
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    report.check(psc.get("runAsNonRoot") is True and isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0,
                 f"{where}: pod runs as non-root (numeric user)", str(psc))
    report.check(csc.get("readOnlyRootFilesystem") is True, f"{where}: read-only root filesystem", str(csc))
    report.check(csc.get("allowPrivilegeEscalation") is False, f"{where}: no privilege escalation", str(csc))
    report.check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: all capabilities dropped", str(csc))
    report.check(spec.get("automountServiceAccountToken") is False, f"{where}: no service account token mounted")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    for probe, path in [("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")]:
        get = c.get(probe, {}).get("httpGet", {})
        report.check(get.get("path") == path and get.get("port") in ports,
                     f"{where}: {probe} is GET {path} on a container port", str(get))
    res = c.get("resources", {})
    report.check(bool(res.get("requests", {}).get("cpu")) and bool(res.get("requests", {}).get("memory"))
                 and bool(res.get("limits", {}).get("memory")),
                 f"{where}: cpu/memory requests and a memory limit", str(res))

    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    configmaps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    args = c.get("args", [])
    config_arg = next((a.split("=", 1)[1] for a in args if a.startswith("--config.file=")), "")
    config_mount = next((m for p, m in mounts.items() if config_arg.startswith(p.rstrip("/") + "/")), None)
    config_volume = volumes.get(config_mount["name"], {}) if config_mount else {}
    config_cm = configmaps.get(config_volume.get("configMap", {}).get("name"))
    report.check(config_cm is not None and config_arg.rsplit("/", 1)[-1] in config_cm.get("data", {}),
                 f"{where}: --config.file is in the mounted config ConfigMap", f"{config_arg}, {config_volume}")
    secret_volumes = [v for v in volumes.values() if "secret" in v]
    with open(SECRET_EXAMPLE, encoding="utf-8") as f:
        example = yaml.safe_load(f)
    validate(report, example, SECRET_EXAMPLE)
    report.check(any(v["secret"].get("secretName") == example["metadata"]["name"] for v in secret_volumes),
                 f"{where}: the Secret {example['metadata']['name']} (see {SECRET_EXAMPLE}) is mounted",
                 str(secret_volumes))
    secret_mount = next((p for p, m in mounts.items()
                         if any(v["name"] == m["name"] for v in secret_volumes)), None)
    if config_cm is not None and secret_mount:
        config = yaml.safe_load(config_cm["data"][config_arg.rsplit("/", 1)[-1]])
        files = [t.get("token_file") for t in config.get("tokens", [])]
        keys = set(example.get("stringData", {})) | set(example.get("data", {}))
        bad = [f for f in files if not f or not f.startswith(secret_mount.rstrip("/") + "/")
               or f.rsplit("/", 1)[-1] not in keys]
        report.check(files and not bad, f"{where}: every token_file is a key of the example Secret under {secret_mount}",
                     f"not: {bad}")
    values = [v for v in example.get("stringData", {}).values()]
    report.check(all(v.startswith("REPLACE") for v in values), f"{SECRET_EXAMPLE}: placeholders only", str(values))

    svc = one(report, docs, "Service", where)
    report.check(matches(svc.get("spec", {}).get("selector"), pod_labels), f"{where}: the Service selects the pods")
    svc_ports = {p.get("name") for p in svc.get("spec", {}).get("ports", [])}
    sm = one(report, docs, "ServiceMonitor", where)
    report.check(sm.get("apiVersion") == "monitoring.coreos.com/v1"
                 and matches(sm.get("spec", {}).get("selector", {}).get("matchLabels"), svc.get("metadata", {}).get("labels", {})),
                 f"{where}: the ServiceMonitor (monitoring.coreos.com/v1) selects the Service")
    endpoints = sm.get("spec", {}).get("endpoints", [])
    report.check(endpoints and all(e.get("port") in svc_ports and e.get("path", "/metrics") == "/metrics" for e in endpoints),
                 f"{where}: the ServiceMonitor scrapes /metrics on a Service port", str(endpoints))
    report.check(svc.get("metadata", {}).get("name") == NAME,
                 f'{where}: the Service is named {NAME} (the job label the rules select)')

    np = one(report, docs, "NetworkPolicy", where)
    npspec = np.get("spec", {})
    allowed = [p.get("port") for rule in npspec.get("ingress", []) for p in rule.get("ports", [])]
    report.check(matches(npspec.get("podSelector", {}).get("matchLabels"), pod_labels)
                 and any(p in ports or p in ports.values() for p in allowed),
                 f"{where}: the NetworkPolicy allows scrapes of the metrics port", str(npspec))

    rule = one(report, docs, "PrometheusRule", where)
    with open(RULES, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    report.check(rule.get("apiVersion") == "monitoring.coreos.com/v1" and rule.get("spec", {}).get("groups") == rules["groups"],
                 f"{where}: the PrometheusRule's groups equal {RULES}")

    with open(DASHBOARD, encoding="utf-8") as f:
        dashboard = json.load(f)
    boards = [d for d in configmaps.values() if d.get("metadata", {}).get("labels", {}).get("grafana_dashboard") == "1"]
    held = [json.loads(v) for d in boards for k, v in d.get("data", {}).items() if k.endswith(".json")]
    report.check(len(boards) == 1 and held == [dashboard],
                 f"{where}: a ConfigMap labelled grafana_dashboard=1 holds {DASHBOARD}",
                 f"{len(boards)} ConfigMaps, {len(held)} dashboards")
    return dep


def check_ha(report, docs, where):
    for doc in docs:
        if doc["kind"] in CORE_KINDS:
            validate(report, doc, where)
    dep = one(report, docs, "Deployment", where)
    spec = dep.get("spec", {})
    report.check(spec.get("replicas") == 2, f"{where}: 2 replicas", str(spec.get("replicas")))
    anti = spec.get("template", {}).get("spec", {}).get("affinity", {}).get("podAntiAffinity", {})
    terms = [t.get("podAffinityTerm", t) for key in anti for t in anti[key]]
    labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    report.check(any(t.get("topologyKey") == "kubernetes.io/hostname"
                     and matches(t.get("labelSelector", {}).get("matchLabels"), labels) for t in terms),
                 f"{where}: pod anti-affinity spreads the replicas over nodes", str(anti))
    pdb = one(report, docs, "PodDisruptionBudget", where)
    report.check(pdb.get("spec", {}).get("minAvailable") == 1
                 and matches(pdb.get("spec", {}).get("selector", {}).get("matchLabels"), labels),
                 f"{where}: a PodDisruptionBudget keeps one replica up")
    report.check(one(report, docs, "PrometheusRule", where) != {}, f"{where}: keeps the base's PrometheusRule")


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    report = Report()
    check_base(report, load(argv[1]), "base")
    check_ha(report, load(argv[2]), "overlays/ha")
    print(f"{report.passed} passed, {report.failed} failed", flush=True)
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
