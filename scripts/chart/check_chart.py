#!/usr/bin/env python3
"""Offline checks of the quire Helm chart: lint, render, Kubernetes schema validation and
the chart's invariants. No cluster, no helm binary, no network.

Helm itself comes from helm-python-sdk (Helm v4's Go SDK as a C library: the same lint,
values-schema validation and template engine as the helm CLI); every rendered object is
validated against the Kubernetes OpenAPI schemas shipped by kubernetes-validate, in strict
mode (unknown fields are errors). Run by scripts/lib/chart.sh (`chart_check`), which makes
the virtualenv; by hand: `python scripts/chart/check_chart.py` inside that virtualenv.

The Grafana dashboard the chart ships (charts/quire/dashboards/quire.json) is checked against
the code: every metric its queries use must be registered by the Rust sources, which name
each metric in full as a string literal ("quire_http_requests").

Prints one line per check and exits non-zero if any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "quire"
RELEASE = "quire"
NAMESPACE = "quire"
# The chart's floor (Chart.yaml kubeVersion) and the version the operator is built against
# (k8s-openapi's v1_33 feature).
KUBE_VERSIONS = ("1.27", "1.33")

# Kinds backed by CRDs that kubernetes-validate has no schema for. They are checked
# structurally (apiVersion, kind, metadata, spec) and by the chart-specific checks below.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}

COMPONENTS = ("api-server", "worker", "controller")

# The binaries' configuration contract: every variable the chart may set.
COMMON_ENV = {
    "DATABASE_URL",
    "QUIRE_QUEUE",
    "QUIRE_STORAGE",
    "RUST_LOG",
    "QUIRE_LOG_FORMAT",
    "QUIRE_DB_ACQUIRE_TIMEOUT",
    "QUIRE_MAX_ATTEMPTS",
    "QUIRE_MAX_REPORT_AGE",
}
OPTIONAL_COMMON_ENV = {
    "QUIRE_SQS_QUEUE_URL",
    "QUIRE_SQS_DEAD_LETTER_QUEUE_URL",
    "QUIRE_DATA_DIR",
    "QUIRE_S3_BUCKET",
    "QUIRE_S3_PREFIX",
    "QUIRE_S3_FORCE_PATH_STYLE",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "QUIRE_DB_MAX_CONNECTIONS",
    "QUIRE_AWS_CONNECT_TIMEOUT",
    "QUIRE_AWS_READ_TIMEOUT",
    "QUIRE_AWS_OPERATION_TIMEOUT",
    # Set together, only with tracing.otlpEndpoint.
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
}
COMPONENT_ENV = {
    "api-server": {
        "QUIRE_LISTEN",
        "QUIRE_JWT_SECRET",
        "QUIRE_DOWNLOAD_URL_TTL",
        "QUIRE_ORCHESTRATOR",
        "QUIRE_NAMESPACE",
        "QUIRE_MIGRATE",
        "QUIRE_RESCUE_AFTER",
        "QUIRE_RESCUE_INTERVAL",
        "QUIRE_OUTPUT_RETENTION",
        "QUIRE_RECORD_RETENTION",
        "QUIRE_RETENTION_INTERVAL",
        "QUIRE_QUOTA_UNFINISHED",
        "QUIRE_QUOTA_PER_HOUR",
        "QUIRE_MAX_WAIT",
        "QUIRE_WEBHOOK_RETRY_FOR",
    },
    "worker": {
        "QUIRE_HEALTH_LISTEN",
        "QUIRE_VISIBILITY_TIMEOUT",
        "QUIRE_SHUTDOWN_GRACE",
    },
    "controller": {
        "QUIRE_HEALTH_LISTEN",
        "QUIRE_NAMESPACE",
        "POD_NAME",
        "QUIRE_LEADER_ELECTION",
        "QUIRE_RESCUE_AFTER",
        "QUIRE_RESCUE_INTERVAL",
    },
}
OPTIONAL_COMPONENT_ENV = {
    "api-server": {
        "QUIRE_PUBLIC_URL",
        "QUIRE_TRUSTED_PROXIES",
        "QUIRE_REPORT_REQUEST_TTL",
        "QUIRE_DATA_SOURCES_FILE",
    },
    "worker": {"QUIRE_WORKER_CONCURRENCY", "QUIRE_DATA_SOURCES_FILE"},
    "controller": {"QUIRE_LEASE_NAME", "QUIRE_CONTROLLER_CONCURRENCY"},
}
SECRET_ENV = {"DATABASE_URL", "QUIRE_JWT_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
# The components that read the operator's data sources (worker.dataSources or
# worker.dataSourcesSecret), and where: the worker fetches them, the api-server lists them and
# refuses dataset reports naming an unknown one.
DATA_SOURCES_COMPONENTS = ("api-server", "worker")
DATA_SOURCES_DIR = "/etc/quire"
DATA_SOURCES_FILE = f"{DATA_SOURCES_DIR}/data-sources.toml"

# Where each component serves GET /metrics: the container port (by name) and the Service port
# (by name) Prometheus scrapes it through. The api-server serves it on its API port.
METRICS_CONTAINER_PORT = {"api-server": "http", "worker": "health", "controller": "health"}
METRICS_SERVICE_PORT = {"api-server": "http", "worker": "http-metrics", "controller": "http-metrics"}
VALUES_KEY = {"api-server": "apiServer", "worker": "worker", "controller": "controller"}

# The dashboard ConfigMap, its file in the chart, and what names a metric in its queries.
DASHBOARD_FILE = CHART / "dashboards" / "quire.json"
DASHBOARD_PANEL_TYPES = {"timeseries", "stat"}
METRIC_IN_QUERY = re.compile(r"(?<![A-Za-z0-9_:])quire_[a-z0-9_]+")
# Exposition suffixes: counters get _total, histograms _bucket, _sum and _count.
EXPOSITION_SUFFIX = re.compile(r"_(total|bucket|sum|count)$")
METRIC_IN_CODE = re.compile(r'"(quire_[a-z0-9_]+)"')


# ---- reporting ---------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.current = ""

    def section(self, title: str) -> None:
        self.current = title
        print(f"\n== {title}", flush=True)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok    {name}", flush=True)
        else:
            self.failed.append(f"{self.current}: {name}")
            detail = detail.strip().replace("\n", "\n      ")
            print(f"FAIL  {name}" + (f"\n      {detail}" if detail else ""), flush=True)
        return ok


# ---- values and rendering ----------------------------------------------------------------


def load_values(*names: str) -> dict[str, Any]:
    """Values files from the chart's ci/ (or paths), merged like repeated `-f`."""
    merged: dict[str, Any] = {}
    for name in names:
        path = Path(name) if "/" in name else CHART / "ci" / name
        merged = deep_merge(merged, yaml.safe_load(path.read_text()) or {})
    return merged


def effective_values(values: dict[str, Any] | None) -> dict[str, Any]:
    """The chart's values.yaml with `values` merged over it: what the templates see."""
    return deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), values or {})


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(chart: helm.Chart, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Renders like `helm template` (hooks included) and returns the objects, each with the
    template it came from under the key `__source`."""
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for source, text in sorted(manifests.items()):
        if source.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__source"] = source.split("/", 1)[-1]
                objects.append(doc)
    return objects


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "__source"}


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def find(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    found = find(objects, kind, name)
    return found[0] if len(found) == 1 else None


def component_name(component: str) -> str:
    return f"{RELEASE}-{component}"


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container: dict[str, Any], name: str) -> Any:
    return env_of(container).get(name, {}).get("value")


# ---- kubernetes schema validation --------------------------------------------------------


def validate_objects(report: Report, objects: list[dict[str, Any]], namespace: str = NAMESPACE) -> None:
    for kube_version in KUBE_VERSIONS:
        problems = []
        validated = crd_backed = 0
        for obj in objects:
            if (obj.get("apiVersion"), obj.get("kind")) in CRD_KINDS:
                crd_backed += 1
                problems += [f"{name_of(obj)}: {p}" for p in structural_problems(obj, namespace)]
                continue
            try:
                kubernetes_validate.validate(strip(obj), kube_version, strict=True)
                validated += 1
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"{name_of(obj)} ({obj.get('__source')}): {path}: {e.message}")
            except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
                problems.append(f"{name_of(obj)} ({obj.get('__source')}): {e.message}")
        crd_kinds = sorted({o["kind"] for o in objects if (o.get("apiVersion"), o.get("kind")) in CRD_KINDS})
        crd_note = (
            f", {crd_backed} CRD-backed ({', '.join(crd_kinds)}) structurally sound" if crd_backed else ""
        )
        report.check(
            f"{validated} objects valid against the Kubernetes {kube_version} schemas (strict){crd_note}",
            not problems,
            "\n".join(problems),
        )


def structural_problems(obj: dict[str, Any], namespace: str = NAMESPACE) -> list[str]:
    """Without the CRD's schema: the shape every Kubernetes object has."""
    problems = []
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        problems.append("metadata.name is missing")
    elif meta.get("namespace") != namespace:
        problems.append(f"metadata.namespace is {meta.get('namespace')!r}")
    if not isinstance(obj.get("spec"), dict) or not obj["spec"]:
        problems.append("spec is missing or empty")
    if isinstance(meta, dict) and not all(isinstance(v, str) for v in (meta.get("labels") or {}).values()):
        problems.append("a label value is not a string")
    return problems


# ---- invariants of every render ----------------------------------------------------------


def check_common_invariants(report: Report, objects: list[dict[str, Any]], values: dict[str, Any]) -> None:
    by_component = {c: one(objects, "Deployment", component_name(c)) for c in COMPONENTS}
    report.check(
        "one Deployment each for api-server, worker and controller",
        all(by_component.values()),
        f"found: {[name_of(o) for o in find(objects, 'Deployment')]}",
    )
    deployments = [d for d in by_component.values() if d]
    workloads = deployments + find(objects, "Job")

    # Labels and namespace.
    required_labels = {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
        "helm.sh/chart",
        "app.kubernetes.io/part-of",
    }
    missing = [
        f"{name_of(o)} lacks {sorted(required_labels - set(o['metadata'].get('labels', {})))}"
        for o in objects
        if not required_labels <= set(o["metadata"].get("labels", {}))
    ]
    report.check(
        "every object has the app.kubernetes.io/* and helm.sh/chart labels", not missing, "; ".join(missing)
    )
    dashboard_ns = effective_values(values)["dashboard"]["namespace"] or NAMESPACE
    wrong_ns = [
        name_of(o)
        for o in objects
        if o["metadata"].get("namespace")
        != (dashboard_ns if o["metadata"]["name"] == component_name("dashboard") else NAMESPACE)
    ]
    report.check(
        "every object is in the release namespace (the dashboard ConfigMap in dashboard.namespace)",
        not wrong_ns,
        f"{wrong_ns}",
    )

    # Selectors select their own pods, and only them.
    problems = []
    for workload in deployments:
        selector = workload["spec"]["selector"]["matchLabels"]
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        if not selector.items() <= pod_labels.items():
            problems.append(f"{name_of(workload)} selector {selector} misses its pods")
        others = [
            d
            for d in deployments
            if d is not workload and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        if others:
            problems.append(f"{name_of(workload)} selector also matches {[name_of(o) for o in others]}")
        for constraint in pod_spec(workload).get("topologySpreadConstraints", []):
            spread = constraint.get("labelSelector", {}).get("matchLabels", {})
            if not spread or not spread.items() <= pod_labels.items():
                problems.append(f"{name_of(workload)} spreads over {spread}, not its own pods")
    for selecting in find(objects, "Service") + find(objects, "PodDisruptionBudget"):
        selector = selecting["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matched = [
            d for d in deployments if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        if len(matched) != 1:
            problems.append(f"{name_of(selecting)} selects {[name_of(m) for m in matched]}")
    report.check(
        "Deployment, Service, PodDisruptionBudget and topology spread selectors each match "
        "exactly one component's pods",
        not problems,
        "; ".join(problems),
    )

    # Security context of every pod and container.
    problems = []
    for workload in workloads:
        spec = pod_spec(workload)
        pod_sc = spec.get("securityContext", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            sc = container.get("securityContext", {})
            where = f"{name_of(workload)}/{container['name']}"
            merged = {**pod_sc, **sc}
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if merged.get("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if merged.get("runAsUser") != 65532:
                problems.append(f"{where}: runAsUser is {merged.get('runAsUser')}")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []) or sc.get("capabilities", {}).get(
                "add"
            ):
                problems.append(f"{where}: capabilities do not drop ALL (or add some)")
            if merged.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            if "emptyDir" not in volumes.get(mounts.get("/tmp", ""), {}):
                problems.append(f"{where}: no emptyDir at /tmp")
    report.check(
        "every container runs as 65532, non-root, read-only root, no privilege "
        "escalation, no capabilities, RuntimeDefault seccomp, with an emptyDir /tmp",
        not problems,
        "; ".join(problems),
    )

    # Probes, ports and resources of the three long-running components.
    problems = []
    expected_port = {"api-server": ("http", 8080), "worker": ("health", 8081), "controller": ("health", 8081)}
    for component, deployment in by_component.items():
        if not deployment:
            continue
        container = pod_spec(deployment)["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        port_name, port_number = expected_port[component]
        if ports.get(port_name) != port_number:
            problems.append(f"{component}: no port {port_name}={port_number} ({ports})")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") not in (port_name, port_number):
                problems.append(f"{component}: {probe} is not GET {path} on {port_name} ({get})")
        if container.get("command") != [f"/usr/local/bin/{component}"]:
            problems.append(f"{component}: command is {container.get('command')}")
        if not container.get("resources", {}).get("requests"):
            problems.append(f"{component}: no resource requests")
    report.check(
        "every Deployment runs its binary with liveness (/healthz) and readiness "
        "(/readyz) probes on its named port, and resource requests",
        not problems,
        "; ".join(problems),
    )

    # The environment contract.
    problems = []
    for component, deployment in by_component.items():
        if not deployment:
            continue
        container = pod_spec(deployment)["containers"][0]
        names = [e["name"] for e in container.get("env", [])]
        env = env_of(container)
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            problems.append(f"{component}: duplicate env {sorted(duplicates)}")
        required = COMMON_ENV | COMPONENT_ENV[component]
        allowed = required | OPTIONAL_COMMON_ENV | OPTIONAL_COMPONENT_ENV[component]
        if required - env.keys():
            problems.append(f"{component}: missing env {sorted(required - env.keys())}")
        if env.keys() - allowed:
            problems.append(f"{component}: env outside the contract {sorted(env.keys() - allowed)}")
        for secret in SECRET_ENV & env.keys():
            if "secretKeyRef" not in env[secret].get("valueFrom", {}):
                problems.append(f"{component}: {secret} is not read from a Secret")
        for downward, field in (("QUIRE_NAMESPACE", "metadata.namespace"), ("POD_NAME", "metadata.name")):
            if (
                downward in env
                and env[downward].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != field
            ):
                problems.append(f"{component}: {downward} is not the downward API's {field}")
        queue, storage = env_value(container, "QUIRE_QUEUE"), env_value(container, "QUIRE_STORAGE")
        if queue not in ("sqs", "database") or storage not in ("s3", "local"):
            problems.append(f"{component}: QUIRE_QUEUE={queue} QUIRE_STORAGE={storage}")
        if queue == "sqs" and not env_value(container, "QUIRE_SQS_QUEUE_URL"):
            problems.append(f"{component}: sqs without QUIRE_SQS_QUEUE_URL")
        if storage == "s3" and not env_value(container, "QUIRE_S3_BUCKET"):
            problems.append(f"{component}: s3 without QUIRE_S3_BUCKET")
        if storage == "local":
            data_dir = env_value(container, "QUIRE_DATA_DIR")
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in pod_spec(deployment).get("volumes", [])}
            claim = volumes.get(mounts.get(data_dir, ""), {}).get("persistentVolumeClaim", {})
            if claim.get("claimName") != values.get("persistence", {}).get("existingClaim"):
                problems.append(f"{component}: QUIRE_DATA_DIR={data_dir} is not on the shared claim")
        if env_value(container, "QUIRE_LOG_FORMAT") != values.get("logging", {}).get("format", "json"):
            problems.append(f"{component}: QUIRE_LOG_FORMAT={env_value(container, 'QUIRE_LOG_FORMAT')}")
    api = by_component["api-server"]
    if api:
        container = pod_spec(api)["containers"][0]
        if env_value(container, "QUIRE_LISTEN") != "0.0.0.0:8080":
            problems.append("api-server: QUIRE_LISTEN is not 0.0.0.0:8080")
        mode = values.get("migrations", {}).get("mode", "job")
        if env_value(container, "QUIRE_MIGRATE") != ("true" if mode == "startup" else "false"):
            migrate = env_value(container, "QUIRE_MIGRATE")
            problems.append(f"api-server: QUIRE_MIGRATE={migrate} with migrations.mode={mode}")
        effective = effective_values(values)
        expected = {
            "QUIRE_OUTPUT_RETENTION": effective["retention"]["outputs"],
            "QUIRE_RECORD_RETENTION": effective["retention"]["records"],
            "QUIRE_RETENTION_INTERVAL": effective["retention"]["interval"],
            "QUIRE_QUOTA_UNFINISHED": effective["quotas"]["unfinished"],
            "QUIRE_QUOTA_PER_HOUR": effective["quotas"]["perHour"],
            "QUIRE_MAX_WAIT": effective["apiServer"]["maxWait"],
            "QUIRE_WEBHOOK_RETRY_FOR": effective["webhooks"]["retryFor"],
            # ReportRequests exist only with the kubernetes orchestrator.
            "QUIRE_REPORT_REQUEST_TTL": effective["reportRequests"]["ttlSecondsAfterFinished"]
            if effective["apiServer"]["orchestrator"] == "kubernetes"
            else None,
        }
        for name, value in expected.items():
            # Numbers as whole numbers, never 1e+06.
            want = None if value is None else str(value)
            if env_value(container, name) != want:
                problems.append(f"api-server: {name}={env_value(container, name)!r}, expected {want!r}")
    endpoint = effective_values(values)["tracing"]["otlpEndpoint"]
    for component, deployment in by_component.items():
        if not deployment:
            continue
        container = pod_spec(deployment)["containers"][0]
        tracing = tuple(env_value(container, n) for n in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"))
        want = (endpoint, f"quire-{component}") if endpoint else (None, None)
        if tracing != want:
            problems.append(
                f"{component}: OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME = {tracing}, expected {want}"
            )
    report.check(
        "the three binaries get exactly the contract's environment (secrets from "
        "Secrets, namespace and pod name from the downward API; retention, quotas, the "
        "longest wait, the ReportRequest TTL with the kubernetes orchestrator, tracing when "
        "configured)",
        not problems,
        "; ".join(problems),
    )

    check_data_sources(report, by_component, objects, values)

    # References resolve: Secrets (and their keys), ConfigMaps, ServiceAccounts.
    problems = []
    rendered_secrets = {s["metadata"]["name"]: s for s in find(objects, "Secret")}
    existing = {
        values.get("database", {}).get("existingSecret"),
        values.get("jwt", {}).get("existingSecret"),
        values.get("aws", {}).get("credentials", {}).get("existingSecret"),
        values.get("worker", {}).get("dataSourcesSecret"),
    } - {None, ""}
    accounts = {sa["metadata"]["name"] for sa in find(objects, "ServiceAccount")}
    config_maps = {c["metadata"]["name"]: c for c in find(objects, "ConfigMap")}
    for workload in workloads:
        spec = pod_spec(workload)
        if spec.get("serviceAccountName") not in accounts:
            problems.append(
                f"{name_of(workload)}: ServiceAccount {spec.get('serviceAccountName')} is not rendered"
            )
        for container in spec["containers"]:
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                if ref["name"] in rendered_secrets:
                    if ref["key"] not in rendered_secrets[ref["name"]].get("data", {}):
                        problems.append(
                            f"{name_of(workload)}: {var['name']} -> missing key {ref['name']}/{ref['key']}"
                        )
                elif ref["name"] not in existing:
                    problems.append(f"{name_of(workload)}: {var['name']} -> unknown Secret {ref['name']}")
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                cm = config_maps.get(volume["configMap"]["name"])
                keys = {i["key"] for i in volume["configMap"].get("items", [])}
                if not cm or not keys <= set(cm.get("data", {})):
                    problems.append(
                        f"{name_of(workload)}: ConfigMap {volume['configMap']['name']} {keys} not rendered"
                    )
            if "secret" in volume and volume["secret"]["secretName"] not in existing | set(rendered_secrets):
                problems.append(
                    f"{name_of(workload)}: Secret volume {volume['secret']['secretName']} unknown"
                )
    for binding in find(objects, "RoleBinding"):
        role = one(objects, "Role", binding["roleRef"]["name"])
        if not role:
            problems.append(f"{name_of(binding)}: Role {binding['roleRef']['name']} is not rendered")
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount" and subject["name"] not in accounts:
                problems.append(f"{name_of(binding)}: ServiceAccount {subject['name']} is not rendered")
    report.check(
        "every Secret (and key), ConfigMap, ServiceAccount and Role reference resolves "
        "to a rendered object or a declared existing Secret",
        not problems,
        "; ".join(problems),
    )

    # Checksums roll the pods when chart-managed configuration changes.
    problems = [
        f"{name_of(d)} has no checksum/secrets annotation"
        for d in deployments
        if "checksum/secrets" not in d["spec"]["template"]["metadata"].get("annotations", {})
    ]
    for component in DATA_SOURCES_COMPONENTS:
        deployment = by_component[component]
        if deployment and "checksum/data-sources" not in deployment["spec"]["template"]["metadata"].get(
            "annotations", {}
        ):
            problems.append(f"{component} has no checksum/data-sources annotation")
    sums = {
        by_component[c]["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/data-sources")
        for c in DATA_SOURCES_COMPONENTS
        if by_component[c]
    }
    if len(sums) > 1:
        problems.append(f"api-server and worker carry different checksum/data-sources {sorted(map(str, sums))}")
    report.check(
        "pod templates carry checksums of the chart's Secrets, and the api-server and worker "
        "the same checksum of the data sources",
        not problems,
        "; ".join(problems),
    )

    # RBAC: least privilege, and what the controller needs.
    controller_role = one(objects, "Role", component_name("controller"))
    rules = controller_role["rules"] if controller_role else []

    def grants(group: str, resource: str, *verbs: str) -> bool:
        return all(
            any(
                group in r.get("apiGroups", [])
                and resource in r.get("resources", [])
                and verb in r.get("verbs", [])
                for r in rules
            )
            for verb in verbs
        )

    needs = {
        "reportrequests get/list/watch/patch": grants(
            "quire.dev", "reportrequests", "get", "list", "watch", "patch"
        ),
        "reportrequests/status patch": grants("quire.dev", "reportrequests/status", "patch"),
        "reportrequests/finalizers update": grants("quire.dev", "reportrequests/finalizers", "update"),
        "events create (core)": grants("", "events", "create", "patch"),
        "events create (events.k8s.io)": grants("events.k8s.io", "events", "create", "patch"),
        "leases get/create/update/patch/list/watch": grants(
            "coordination.k8s.io", "leases", "get", "create", "update", "patch", "list", "watch"
        ),
    }
    wildcard = [
        name_of(r)
        for r in find(objects, "Role") + find(objects, "ClusterRole")
        if any("*" in rule.get(k, []) for rule in r["rules"] for k in ("apiGroups", "resources", "verbs"))
    ]
    cluster_scoped = [name_of(o) for o in find(objects, "ClusterRole") + find(objects, "ClusterRoleBinding")]
    secrets_access = [
        name_of(r)
        for r in find(objects, "Role")
        if any("secrets" in rule.get("resources", []) for rule in r["rules"])
    ]
    report.check(
        f"the controller Role grants {', '.join(needs)}",
        bool(controller_role) and all(needs.values()),
        f"missing: {[k for k, v in needs.items() if not v]}",
    )
    report.check(
        "RBAC is namespaced, without wildcards or access to Secrets",
        not (wildcard or cluster_scoped or secrets_access),
        f"wildcards {wildcard}, cluster-scoped {cluster_scoped}, secrets {secrets_access}",
    )
    orchestrator = values.get("apiServer", {}).get("orchestrator", "kubernetes")
    api_role = one(objects, "Role", component_name("api-server"))
    if orchestrator == "kubernetes":
        ok = (
            bool(api_role)
            and len(api_role["rules"]) == 1
            and api_role["rules"][0]["apiGroups"] == ["quire.dev"]
            and api_role["rules"][0]["resources"] == ["reportrequests"]
            and set(api_role["rules"][0]["verbs"]) == {"create", "get", "list", "watch", "delete"}
        )
        report.check(
            "the api-server Role grants exactly create/get/list/watch/delete on reportrequests",
            ok,
            f"{api_role and api_role['rules']}",
        )
    else:
        report.check(
            f"with orchestrator {orchestrator} the api-server gets no Role and no API token",
            api_role is None
            and api is not None
            and pod_spec(api).get("automountServiceAccountToken") is False,
        )

    # The API Service.
    service = one(objects, "Service", component_name("api-server"))
    service_type = values.get("service", {}).get("type", "ClusterIP")
    ok = (
        bool(service)
        and service["spec"]["type"] == service_type
        and any(
            p["port"] == values.get("service", {}).get("port", 80)
            and p["targetPort"] == "http"
            and p["name"] == "http"
            for p in service["spec"]["ports"]
        )
    )
    if ok and values.get("service", {}).get("nodePort"):
        ok = service["spec"]["ports"][0].get("nodePort") == values["service"]["nodePort"]
    report.check(
        f"Service {component_name('api-server')} ({service_type}) maps port "
        f"{values.get('service', {}).get('port', 80)} to the container port named http",
        ok,
        f"{service and service['spec']}",
    )

    # The worker's graceful shutdown and autoscaling.
    worker = by_component["worker"]
    if worker:
        container = pod_spec(worker)["containers"][0]
        grace = int(env_value(container, "QUIRE_SHUTDOWN_GRACE"))
        termination = pod_spec(worker).get("terminationGracePeriodSeconds", 30)
        report.check(
            f"worker terminationGracePeriodSeconds ({termination}) > QUIRE_SHUTDOWN_GRACE ({grace})",
            termination > grace,
        )
        hpas = find(objects, "HorizontalPodAutoscaler")
        scaled = find(objects, "ScaledObject")
        autoscaled = bool(hpas or scaled)
        report.check(
            f"at most one autoscaler owns the worker ({len(hpas)} HPA, {len(scaled)} ScaledObject), "
            "and then the Deployment sets no replicas",
            len(hpas) + len(scaled) <= 1 and (("replicas" in worker["spec"]) != autoscaled),
        )
        for hpa in hpas:
            target = hpa["spec"]["scaleTargetRef"]
            report.check(
                "the HPA scales the worker Deployment on CPU",
                target["kind"] == "Deployment"
                and target["name"] == worker["metadata"]["name"]
                and hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu",
            )
        for scaled_object in scaled:
            check_scaled_object(report, scaled_object, worker, objects)

    # The migration Job.
    jobs = find(objects, "Job")
    mode = values.get("migrations", {}).get("mode", "job")
    if mode == "job":
        job = one(objects, "Job", component_name("migrate"))
        ok = bool(job)
        detail = ""
        if job:
            hooks = set(job["metadata"].get("annotations", {}).get("helm.sh/hook", "").split(","))
            container = pod_spec(job)["containers"][0]
            ok = (
                hooks == {"pre-install", "pre-upgrade"}
                and container["command"] == ["/usr/local/bin/api-server", "migrate"]
                and "DATABASE_URL" in env_of(container)
                and pod_spec(job)["restartPolicy"] == "Never"
            )
            # Everything the hook Job needs must exist before the release's own objects do.
            account = one(objects, "ServiceAccount", pod_spec(job)["serviceAccountName"])
            secret_name = env_of(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
            secret = one(objects, "Secret", secret_name)
            for dependency in (account, secret):
                if dependency is not None and "helm.sh/hook" not in dependency["metadata"].get(
                    "annotations", {}
                ):
                    ok, detail = (
                        False,
                        f"{name_of(dependency)} is not a hook, so it does not exist yet when the Job runs",
                    )
                elif dependency is not None and int(
                    dependency["metadata"]["annotations"].get("helm.sh/hook-weight", 0)
                ) >= int(job["metadata"]["annotations"].get("helm.sh/hook-weight", 0)):
                    ok, detail = False, f"{name_of(dependency)} is not created before the Job"
            if account is None:
                ok, detail = False, "its ServiceAccount is not rendered"
            if secret is None and secret_name != values.get("database", {}).get("existingSecret"):
                ok, detail = False, f"its Secret {secret_name} is not rendered"
        report.check(
            "a pre-install/pre-upgrade hook Job runs `api-server migrate` with its own "
            "hook ServiceAccount and database Secret",
            ok,
            detail,
        )
    else:
        report.check(f"migrations.mode={mode}: no migration Job", not jobs)


def check_scaled_object(
    report: Report, scaled_object: dict[str, Any], worker: dict[str, Any], objects: list[dict[str, Any]]
) -> None:
    """KEDA's ScaledObject, checked by hand (kubernetes-validate has no KEDA schemas)."""
    spec = scaled_object["spec"]
    container = pod_spec(worker)["containers"][0]
    trigger = spec["triggers"][0] if spec.get("triggers") else {}
    meta = trigger.get("metadata", {})
    problems = []
    if spec.get("scaleTargetRef", {}).get("name") != worker["metadata"]["name"]:
        problems.append(f"scaleTargetRef {spec.get('scaleTargetRef')}")
    if len(spec.get("triggers", [])) != 1 or trigger.get("type") != "aws-sqs-queue":
        problems.append(f"triggers {spec.get('triggers')}")
    if meta.get("queueURL") != env_value(container, "QUIRE_SQS_QUEUE_URL"):
        problems.append("queueURL is not the worker's QUIRE_SQS_QUEUE_URL")
    if not meta.get("awsRegion"):
        problems.append("no awsRegion")
    if not all(isinstance(v, str) for v in meta.values()):
        problems.append(f"trigger metadata values must be strings: {meta}")
    if not isinstance(spec.get("minReplicaCount"), int) or spec["minReplicaCount"] > spec.get(
        "maxReplicaCount", 0
    ):
        problems.append("minReplicaCount/maxReplicaCount")
    auth = trigger.get("authenticationRef", {}).get("name")
    if auth:
        trigger_auth = one(objects, "TriggerAuthentication", auth)
        if trigger_auth is None and auth == component_name("worker"):
            problems.append(f"TriggerAuthentication {auth} is not rendered")
        if trigger_auth is not None:
            ta_spec = trigger_auth["spec"]
            if "podIdentity" in ta_spec:
                identity = ta_spec["podIdentity"]
                if identity.get("provider") != "aws" or (
                    "roleArn" in identity and "identityOwner" in identity
                ):
                    problems.append(f"TriggerAuthentication podIdentity {identity}")
            elif {r.get("parameter") for r in ta_spec.get("secretTargetRef", [])} != {
                "awsAccessKeyID",
                "awsSecretAccessKey",
            }:
                problems.append(f"TriggerAuthentication {ta_spec}")
        if meta.get("identityOwner"):
            problems.append("identityOwner set together with a TriggerAuthentication")
    elif meta.get("identityOwner") != "operator":
        problems.append("neither a TriggerAuthentication nor identityOwner: operator")
    report.check(
        "the KEDA ScaledObject scales the worker on its SQS queue (aws-sqs-queue, "
        f"{'authenticationRef ' + auth if auth else 'identityOwner ' + str(meta.get('identityOwner'))})",
        not problems,
        "; ".join(problems),
    )


# ---- metrics and the dashboard -----------------------------------------------------------


def service_port_target(
    service: dict[str, Any], port_name: str, deployment: dict[str, Any]
) -> str | None:
    """The name of the container port `port_name` of `service` reaches in `deployment`'s pods."""
    port = next((p for p in service["spec"]["ports"] if p.get("name") == port_name), None)
    if port is None:
        return None
    target = port.get("targetPort", port["port"])
    for container_port in pod_spec(deployment)["containers"][0].get("ports", []):
        if target in (container_port["name"], container_port["containerPort"]):
            return container_port["name"]
    return None


def check_metrics(report: Report, objects: list[dict[str, Any]], values: dict[str, Any]) -> None:
    """Each component's /metrics is behind a Service port, and each ServiceMonitor the values
    enable scrapes exactly its component's metrics port through it."""
    effective = effective_values(values)
    deployments = {c: one(objects, "Deployment", component_name(c)) for c in COMPONENTS}
    services = find(objects, "Service")

    def selects_pods(service: dict[str, Any], deployment: dict[str, Any]) -> bool:
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        return service["spec"]["selector"].items() <= pod_labels.items()

    problems = []
    for component, deployment in deployments.items():
        if deployment is None:
            continue
        reaching = [
            s
            for s in services
            if selects_pods(s, deployment)
            and service_port_target(s, METRICS_SERVICE_PORT[component], deployment)
            == METRICS_CONTAINER_PORT[component]
        ]
        if not reaching:
            problems.append(
                f"{component}: no Service port {METRICS_SERVICE_PORT[component]} to its "
                f"{METRICS_CONTAINER_PORT[component]} port"
            )
    report.check(
        "each component's /metrics port is behind a Service port (api-server: http -> http; "
        "worker, controller: http-metrics -> health)",
        not problems,
        "; ".join(problems),
    )

    problems = []
    enabled = []
    for component, deployment in deployments.items():
        wanted = effective[VALUES_KEY[component]]["metrics"]["serviceMonitor"]
        monitor = one(objects, "ServiceMonitor", component_name(component))
        if not wanted["enabled"]:
            if monitor is not None:
                problems.append(f"{component}: a ServiceMonitor although it is disabled")
            continue
        enabled.append(component)
        if monitor is None or deployment is None:
            problems.append(f"{component}: no ServiceMonitor {component_name(component)}")
            continue
        spec = monitor["spec"]
        selector = spec["selector"]["matchLabels"]
        selected = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        endpoints = spec.get("endpoints", [])
        if len(selected) != 1:
            problems.append(f"{component}: selects Services {[name_of(s) for s in selected]}")
            continue
        service = selected[0]
        if not selects_pods(service, deployment) or any(
            selects_pods(service, d) for c, d in deployments.items() if d and c != component
        ):
            problems.append(f"{component}: {name_of(service)} does not select only its pods")
        if len(endpoints) != 1:
            problems.append(f"{component}: endpoints {endpoints}")
            continue
        endpoint = endpoints[0]
        if endpoint.get("path") != "/metrics" or endpoint.get("port") != METRICS_SERVICE_PORT[component]:
            problems.append(f"{component}: scrapes {endpoint.get('port')}{endpoint.get('path')}")
        reached = service_port_target(service, endpoint.get("port", ""), deployment)
        if reached != METRICS_CONTAINER_PORT[component]:
            problems.append(
                f"{component}: {name_of(service)} port {endpoint.get('port')} does not reach the "
                f"container port {METRICS_CONTAINER_PORT[component]}"
            )
        if spec.get("namespaceSelector", {}).get("matchNames") != [NAMESPACE]:
            problems.append(f"{component}: namespaceSelector {spec.get('namespaceSelector')}")
        if not wanted["labels"].items() <= monitor["metadata"]["labels"].items():
            problems.append(f"{component}: lacks the labels {wanted['labels']}")
        if endpoint.get("interval") != (wanted["interval"] or None):
            problems.append(f"{component}: interval {endpoint.get('interval')}")
    report.check(
        f"ServiceMonitors for {', '.join(enabled) or 'no component'} (as the values ask): each "
        "selects its component's one metrics Service and scrapes /metrics on its metrics port",
        not problems,
        "; ".join(problems),
    )


def dashboard_of(objects: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The dashboard ConfigMap's JSON, parsed, or None and why."""
    config_map = one(objects, "ConfigMap", component_name("dashboard"))
    if config_map is None:
        return None, "no ConfigMap " + component_name("dashboard")
    data = config_map.get("data", {})
    if list(data) != ["quire.json"]:
        return None, f"data keys {list(data)}"
    try:
        return json.loads(data["quire.json"]), ""
    except json.JSONDecodeError as e:
        return None, f"quire.json is not JSON: {e}"


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    panels = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_structure_problems(dashboard: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("title", "uid"):
        if not isinstance(dashboard.get(key), str) or not dashboard[key]:
            problems.append(f"no {key}")
    if dashboard.get("schemaVersion") != 39:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')}, not 39")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    datasource = variables.get("datasource", {})
    if datasource.get("type") != "datasource" or datasource.get("query") != "prometheus":
        problems.append(f"no Prometheus datasource variable `datasource`: {datasource}")
    panels = dashboard_panels(dashboard)
    if not any(p.get("type") in DASHBOARD_PANEL_TYPES for p in panels):
        problems.append("no panels")
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)) or not all(isinstance(i, int) for i in ids):
        problems.append(f"panel ids not unique integers: {ids}")
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        title = panel.get("title") or f"panel {panel.get('id')}"
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")):
            problems.append(f"{title}: gridPos {grid}")
            continue
        if grid["x"] < 0 or grid["w"] < 1 or grid["x"] + grid["w"] > 24:
            problems.append(f"{title}: gridPos {grid} is outside the 24 columns")
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    problems.append(f"{title} overlaps {cells[(x, y)]}")
                    break
                cells[(x, y)] = title
            else:
                continue
            break
        if panel.get("type") == "row":
            continue
        if panel.get("type") not in DASHBOARD_PANEL_TYPES:
            problems.append(f"{title}: type {panel.get('type')}")
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{title}: datasource {panel.get('datasource')}, not ${{datasource}}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{title}: no targets")
        ref_ids = [t.get("refId") for t in targets]
        if len(ref_ids) != len(set(ref_ids)):
            problems.append(f"{title}: refIds {ref_ids}")
        for target in targets:
            if not isinstance(target.get("expr"), str) or not METRIC_IN_QUERY.search(target["expr"]):
                problems.append(f"{title}: target {target.get('refId')} queries no quire_ metric")
    return problems


def check_dashboard(report: Report, objects: list[dict[str, Any]], values: dict[str, Any]) -> None:
    wanted = effective_values(values)["dashboard"]
    config_map = one(objects, "ConfigMap", component_name("dashboard"))
    if not wanted["enabled"]:
        report.check("dashboard.enabled=false: no dashboard ConfigMap", config_map is None)
        return
    dashboard, why = dashboard_of(objects)
    problems = [why] if why else []
    if config_map is not None:
        labels = config_map["metadata"].get("labels", {})
        if labels.get(wanted["label"]) != wanted["labelValue"]:
            problems.append(f"label {wanted['label']}={labels.get(wanted['label'])!r}")
        if not wanted["annotations"].items() <= (config_map["metadata"].get("annotations") or {}).items():
            problems.append(f"annotations {config_map['metadata'].get('annotations')}")
    if dashboard is not None:
        if dashboard != json.loads(DASHBOARD_FILE.read_text()):
            problems.append(f"its JSON differs from {DASHBOARD_FILE.relative_to(REPO)}")
        problems += dashboard_structure_problems(dashboard)
    panels = [p for p in dashboard_panels(dashboard or {}) if p.get("type") != "row"]
    report.check(
        f"the dashboard ConfigMap carries the sidecar label {wanted['label']}={wanted['labelValue']!r} "
        f"and a Grafana dashboard ({(dashboard or {}).get('title')!r}, uid "
        f"{(dashboard or {}).get('uid')!r}, schemaVersion 39, ${{datasource}}): {len(panels)} "
        "panels on the grid, each with Prometheus targets",
        not problems,
        "\n".join(problems),
    )


def dashboard_metrics(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    """The base name (suffix stripped) of every metric the dashboard queries -> the panels (or
    variables) that query it."""
    used: dict[str, set[str]] = {}
    queries = [
        (panel.get("title", ""), target.get("expr", ""))
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if variable.get("type") == "query":
            queries.append((f"${variable['name']}", query or ""))
    for where, expr in queries:
        for name in METRIC_IN_QUERY.findall(expr):
            used.setdefault(EXPOSITION_SUFFIX.sub("", name), set()).add(where)
    return used


def metrics_in_code(root: Path) -> set[str]:
    """Every "quire_…" string literal in the Rust sources under root/*/src/."""
    names: set[str] = set()
    for path in sorted(root.glob("*/src/**/*.rs")):
        names.update(METRIC_IN_CODE.findall(path.read_text(errors="replace")))
    return names


def check_dashboard_metrics(report: Report, dashboard: dict[str, Any], root: Path = REPO) -> None:
    used = dashboard_metrics(dashboard)
    in_code = metrics_in_code(root)
    missing = sorted(set(used) - in_code)
    sources = len(list(root.glob("*/src/**/*.rs")))
    report.check(
        f"the {len(used)} metrics the dashboard queries are each registered in the Rust sources "
        f"(each a \"name\" literal in the {sources} .rs files under */src/)",
        bool(used) and not missing,
        "not in the code (no string literal \"<name>\" under */src/**/*.rs): "
        + ", ".join(f"{name} ({'; '.join(sorted(used[name]))})" for name in missing),
    )


def check_data_sources(
    report: Report,
    by_component: dict[str, dict[str, Any] | None],
    objects: list[dict[str, Any]],
    values: dict[str, Any],
) -> None:
    """With worker.dataSources or worker.dataSourcesSecret, the api-server and the worker both
    mount the one ConfigMap (or the Secret) at /etc/quire/data-sources.toml and are told so by
    QUIRE_DATA_SOURCES_FILE; without, neither has the variable or the volume."""
    worker_values = effective_values(values)["worker"]
    inline, secret = worker_values["dataSources"], worker_values["dataSourcesSecret"]
    configured = bool(inline or secret)
    problems = []
    sources = []
    for component in DATA_SOURCES_COMPONENTS:
        deployment = by_component[component]
        if not deployment:
            continue
        container = pod_spec(deployment)["containers"][0]
        file = env_value(container, "QUIRE_DATA_SOURCES_FILE")
        mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == DATA_SOURCES_DIR]
        volumes = {v["name"]: v for v in pod_spec(deployment).get("volumes", [])}
        if not configured:
            if file is not None or mounts:
                problems.append(f"{component}: data sources mounted or named without any configured")
            continue
        if file != DATA_SOURCES_FILE:
            problems.append(f"{component}: QUIRE_DATA_SOURCES_FILE={file!r}, expected {DATA_SOURCES_FILE!r}")
        if len(mounts) != 1 or mounts[0].get("readOnly") is not True:
            problems.append(f"{component}: no single read-only mount at {DATA_SOURCES_DIR} ({mounts})")
            continue
        volume = {k: v for k, v in volumes.get(mounts[0]["name"], {}).items() if k != "name"}
        items = (volume.get("configMap") or volume.get("secret") or {}).get("items", [])
        if items != [{"key": "data-sources.toml", "path": "data-sources.toml"}]:
            problems.append(f"{component}: the volume at {DATA_SOURCES_DIR} does not hold data-sources.toml")
        if secret and volume.get("secret", {}).get("secretName") != secret:
            problems.append(f"{component}: the data sources are not read from the Secret {secret}")
        if not secret and volume.get("configMap", {}).get("name") != component_name("worker-data-sources"):
            problems.append(f"{component}: the data sources are not read from the chart's ConfigMap")
        sources.append(volume)
    if len(sources) == 2 and sources[0] != sources[1]:
        problems.append(f"the api-server and worker mount different data sources: {sources}")
    config_maps = [c for c in find(objects, "ConfigMap") if "data-sources.toml" in c.get("data", {})]
    if len(config_maps) != (1 if inline and not secret else 0):
        problems.append(f"data sources ConfigMaps rendered: {[name_of(c) for c in config_maps]}")
    if configured:
        source = f"the Secret {secret}" if secret else "the one inline ConfigMap"
        name = (
            f"data sources in {source}: the api-server and worker both mount it at "
            f"{DATA_SOURCES_FILE} and set QUIRE_DATA_SOURCES_FILE"
        )
    else:
        name = "no data sources: neither the api-server nor the worker mounts any or sets QUIRE_DATA_SOURCES_FILE"
    report.check(name, not problems, "; ".join(problems))


# ---- scenario-specific checks ------------------------------------------------------------


def check_production(report: Report, objects: list[dict[str, Any]], values: dict[str, Any]) -> None:
    ingress = one(objects, "Ingress", component_name("api-server"))
    ok = (
        bool(ingress)
        and ingress["spec"].get("tls")
        and ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        == {"name": component_name("api-server"), "port": {"name": "http"}}
    )
    report.check("the Ingress terminates TLS and routes to the API Service's http port", bool(ok))
    api = one(objects, "Deployment", component_name("api-server"))
    if api:
        url = env_value(pod_spec(api)["containers"][0], "QUIRE_PUBLIC_URL")
        report.check(
            f"QUIRE_PUBLIC_URL is derived from the TLS ingress host ({url})",
            url == "https://" + values["ingress"]["hosts"][0]["host"],
        )
        report.check(
            f"{values['apiServer']['replicaCount']} api-server replicas",
            api["spec"].get("replicas") == values["apiServer"]["replicaCount"],
        )

    managed = {s["metadata"]["name"] for s in find(objects, "Secret")}
    report.check(
        "existing Secrets are used and the chart renders none of its own",
        not managed,
        f"rendered: {sorted(managed)}",
    )
    irsa = {
        sa["metadata"]["name"]: sa["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn")
        for sa in find(objects, "ServiceAccount")
        if sa["metadata"]["name"] in {component_name(c) for c in COMPONENTS}
    }
    report.check(
        "each component's ServiceAccount carries its own IRSA role",
        len(irsa) == 3 and all(irsa.values()) and len(set(irsa.values())) == 3,
        f"{irsa}",
    )
    no_keys = all(
        "AWS_ACCESS_KEY_ID" not in env_of(pod_spec(d)["containers"][0]) for d in find(objects, "Deployment")
    )
    report.check("no static AWS keys in any pod with IRSA", no_keys)

    report.check(
        "KEDA enabled and HPA disabled: one ScaledObject, no HorizontalPodAutoscaler",
        len(find(objects, "ScaledObject")) == 1 and not find(objects, "HorizontalPodAutoscaler"),
    )

    monitors = {m["metadata"]["name"]: m for m in find(objects, "ServiceMonitor")}
    report.check(
        "a ServiceMonitor for each of api-server, worker and controller, labelled for the "
        "kube-prometheus-stack Prometheus",
        set(monitors) == {component_name(c) for c in COMPONENTS}
        and all(m["metadata"]["labels"].get("release") == "kube-prometheus-stack" for m in monitors.values()),
        f"{sorted(monitors)}",
    )
    report.check(
        "the Grafana dashboard ConfigMap is rendered",
        one(objects, "ConfigMap", component_name("dashboard")) is not None,
    )

    pdbs = {p["metadata"]["name"] for p in find(objects, "PodDisruptionBudget")}
    report.check(
        "PodDisruptionBudgets for api-server and worker",
        pdbs == {component_name("api-server"), component_name("worker")},
        f"{pdbs}",
    )
    controller = one(objects, "Deployment", component_name("controller"))
    if controller:
        env = env_of(pod_spec(controller)["containers"][0])
        report.check(
            f"{controller['spec']['replicas']} controller replicas with leader election "
            f"on lease {env.get('QUIRE_LEASE_NAME', {}).get('value')}",
            env["QUIRE_LEADER_ELECTION"]["value"] == "true" and env.get("QUIRE_LEASE_NAME"),
        )
    for component in DATA_SOURCES_COMPONENTS:
        deployment = one(objects, "Deployment", component_name(component))
        if deployment:
            env = env_of(pod_spec(deployment)["containers"][0])
            mounted = any(
                m["mountPath"] == DATA_SOURCES_DIR for m in pod_spec(deployment)["containers"][0]["volumeMounts"]
            )
            report.check(
                f"the {component} mounts the data sources at {DATA_SOURCES_FILE}",
                env.get("QUIRE_DATA_SOURCES_FILE", {}).get("value") == DATA_SOURCES_FILE and mounted,
            )


def check_local_storage(report: Report, objects: list[dict[str, Any]], values: dict[str, Any]) -> None:
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for d in find(objects, "Deployment")
        for v in pod_spec(d)["volumes"]
        if "persistentVolumeClaim" in v
    }
    report.check(
        f"all three Deployments mount the shared claim {values['persistence']['existingClaim']}",
        claims == {values["persistence"]["existingClaim"]}
        and all(
            any("persistentVolumeClaim" in v for v in pod_spec(d)["volumes"])
            for d in find(objects, "Deployment")
        ),
    )


def check_tiltfile(report: Report, tiltfile: Path, objects: list[dict[str, Any]]) -> None:
    """The Tiltfile names resources and objects by string; a rename in the chart must not
    leave it pointing at nothing (Tilt refuses to start then)."""
    text = tiltfile.read_text()
    workloads = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    resources = set(re.findall(r"k8s_resource\(\s*'([^']+)'", text))
    selectors = set(re.findall(r"'([a-z0-9.-]+):([a-z]+)'", text))
    known = {(o["metadata"]["name"], o["kind"].lower()) for o in objects}
    # Only applied when LOCALSTACK_AUTH_TOKEN is set.
    optional = {("localstack-auth", "secret")}
    missing = sorted(resources - workloads) + sorted(f"{n}:{k}" for n, k in selectors - known - optional)
    report.check(
        f"Tiltfile: its {len(resources)} workload resources and {len(selectors)} object selectors "
        f"name objects of the dev manifests and the chart rendered with values-dev.yaml",
        bool(resources) and not missing,
        f"nothing named {missing}",
    )


# ---- renders that must fail --------------------------------------------------------------


def expect_failure(
    report: Report, chart: helm.Chart, name: str, values: dict[str, Any] | None, *expected: str
) -> None:
    try:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.HelmError as e:
        message = str(e)
        missing = [text for text in expected if text not in message]
        first = next(
            (line.strip(" -") for line in message.splitlines() if any(text in line for text in expected)),
            message.splitlines()[-1],
        )
        report.check(
            f"refused: {name} ({type(e).__name__}: {first[:110]}{'…' if len(first) > 110 else ''})",
            not missing,
            f"the message lacks {missing}:\n{message}",
        )
        return
    report.check(f"refused: {name}", False, "the chart rendered")


@contextlib.contextmanager
def captured_stderr() -> Iterator[io.StringIO]:
    """Captures file descriptor 2 (where the Go library logs) into a StringIO."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured = io.StringIO()
    with tempfile.TemporaryFile(mode="w+") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.write(sink.read())
            captured.seek(0)


# ---- main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    started = time.monotonic()
    # The library logs through Go's logger unless routed; keep only errors.
    helm.enable_logging(logging.ERROR)
    logging.basicConfig(level=logging.ERROR, format="helm: %(message)s")

    report = Report()
    print(
        f"helm-python-sdk {helm.__version__} (Helm SDK {helm.helm_sdk_version()}), "
        f"kubernetes-validate {kubernetes_validate.__version__}, "
        f"Kubernetes schemas {', '.join(KUBE_VERSIONS)}"
    )

    chart = helm.Chart.load(CHART)
    minimal = load_values("minimal-values.yaml")
    production = load_values("production-values.yaml")

    report.section("chart")
    meta = chart.metadata
    report.check(
        f"Chart.yaml: apiVersion v2, name quire, version {meta.get('version')}",
        meta.get("apiVersion") == "v2" and meta.get("name") == "quire",
    )
    schema = chart.schema or {}
    loose = [
        key
        for key, sub in schema.get("properties", {}).items()
        if sub.get("type") == "object"
        and sub.get("additionalProperties") is not False
        and key not in {"global", "podSecurityContext", "securityContext", "commonLabels"}
    ]
    report.check(
        "values.schema.json: draft-07, additionalProperties false at the top and in every section",
        schema.get("$schema", "").startswith("http://json-schema.org/draft-07/")
        and schema.get("additionalProperties") is False
        and not loose,
        f"open sections: {loose}",
    )
    problems = []
    for crd in chart.crds:
        for doc in yaml.safe_load_all(crd["data"]):
            for kube_version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, kube_version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    problems.append(f"{crd['filename']}: {'.'.join(map(str, e.path))}: {e.message}")
    report.check(
        f"crds/: {len(chart.crds)} CustomResourceDefinition(s) valid against Kubernetes "
        f"{', '.join(KUBE_VERSIONS)}",
        bool(chart.crds) and not problems,
        "; ".join(problems),
    )

    report.section("deploy/dev manifests (Tilt)")
    dev_objects = []
    for path in sorted((REPO / "deploy" / "dev").glob("*.yaml")):
        if path.name.startswith("values"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["__source"] = f"deploy/dev/{path.name}"
                dev_objects.append(doc)
    if dev_objects:
        validate_objects(report, dev_objects)

    dev_values = REPO / "deploy" / "dev" / "values-dev.yaml"
    tiltfile = REPO / "Tiltfile"
    if tiltfile.exists() and dev_values.exists():
        crds = [doc for crd in chart.crds for doc in yaml.safe_load_all(crd["data"]) if doc]
        check_tiltfile(report, tiltfile, dev_objects + crds + render(chart, load_values(str(dev_values))))

    report.section("helm lint (strict)")
    for label, values in (
        ("default values", None),
        ("ci/minimal-values.yaml", minimal),
        ("ci/production-values.yaml", production),
    ):
        # Lint renders in lint mode, where `fail` only logs (through Go's logger, to fd 2):
        # keep that out of the output unless the lint fails.
        with captured_stderr() as go_log:
            result = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v1.33.0")
        findings = [
            f"[{m['severity']}] {m['path']}: {m['error']}" for m in result["messages"] if m["severity"] >= 2
        ] + result.get("errors", [])
        if findings and go_log.read():
            findings.append(go_log.read())
        notes = [m["error"] for m in result["messages"] if m["severity"] < 2]
        report.check(
            f"lint {label}" + (f" (info: {'; '.join(notes)})" if notes else ""),
            not findings,
            "\n".join(findings),
        )

    scenarios: list[tuple[str, dict[str, Any], Callable[..., None] | None]] = [
        ("defaults + ci/minimal-values.yaml", minimal, None),
        ("ci/production-values.yaml", production, check_production),
        (
            "local storage on a shared claim, database queue, builtin orchestrator",
            deep_merge(
                minimal,
                {
                    "storage": {"type": "local"},
                    "persistence": {"existingClaim": "quire-data"},
                    "apiServer": {"orchestrator": "builtin", "publicUrl": "https://quire.internal.example"},
                    "queue": {"type": "database"},
                    "migrations": {"mode": "startup"},
                },
            ),
            check_local_storage,
        ),
        (
            "KEDA with the operator's identity, static AWS keys, NodePort",
            deep_merge(
                minimal,
                {
                    "worker": {
                        "autoscaling": {"hpa": {"enabled": False}, "keda": {"enabled": True}},
                        "dataSourcesSecret": "quire-data-sources",
                    },
                    "aws": {"credentials": {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "example"}},
                    "service": {"type": "NodePort", "nodePort": 30080},
                },
            ),
            None,
        ),
        (
            "KEDA reading the AWS keys Secret through a TriggerAuthentication",
            deep_merge(
                minimal,
                {
                    "worker": {
                        "autoscaling": {
                            "hpa": {"enabled": False},
                            "keda": {"enabled": True, "authentication": {"type": "credentials"}},
                        }
                    },
                    "aws": {"credentials": {"existingSecret": "aws-keys"}},
                },
            ),
            None,
        ),
    ]
    scenarios.append(
        (
            "the dashboard in Grafana's namespace with another sidecar label; durations and "
            "quotas as numbers",
            deep_merge(
                minimal,
                {
                    "dashboard": {
                        "enabled": True,
                        "namespace": "monitoring",
                        "label": "grafana.com/dashboard",
                        "labelValue": "quire",
                    },
                    "retention": {"outputs": 0, "records": 15552000, "interval": "15m"},
                    "quotas": {"unfinished": 5, "perHour": 1000000},
                    "reportRequests": {"ttlSecondsAfterFinished": 1209600},
                    "tracing": {"otlpEndpoint": "http://tempo.monitoring:4318"},
                    "apiServer": {"maxWait": "0"},
                },
            ),
            None,
        )
    )
    if dev_values.exists():
        scenarios.append(("deploy/dev/values-dev.yaml (Tilt on kind)", load_values(str(dev_values)), None))

    for label, values, extra in scenarios:
        report.section(f"render: {label}")
        try:
            objects = render(chart, values)
        except helm.HelmError as e:
            report.check("renders", False, str(e))
            continue
        kinds: dict[str, int] = {}
        for obj in objects:
            kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
        report.check(
            f"renders {len(objects)} objects ("
            + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
            + ")",
            bool(objects),
        )
        validate_objects(report, objects)
        check_common_invariants(report, objects, values)
        check_metrics(report, objects, values)
        check_dashboard(report, objects, values)
        if extra:
            extra(report, objects, values)

    report.section("dashboard: its metrics in the code")
    try:
        dashboard, why = dashboard_of(render(chart, production))
    except helm.HelmError as e:
        dashboard, why = None, str(e)
    if dashboard is None:
        report.check("the production render has a dashboard", False, why)
    else:
        check_dashboard_metrics(report, dashboard)

    report.section("renders that must fail")
    expect_failure(
        report,
        chart,
        "the chart's bare defaults name every missing value",
        None,
        "database.url or database.existingSecret",
        "jwt.secret or jwt.existingSecret",
        "queue.sqs.queueUrl",
        "storage.s3.bucket",
        "aws.region",
    )
    expect_failure(
        report,
        chart,
        "KEDA and the HPA together",
        deep_merge(minimal, {"worker": {"autoscaling": {"keda": {"enabled": True}}}}),
        "worker.autoscaling.hpa.enabled and worker.autoscaling.keda.enabled are mutually exclusive",
    )
    expect_failure(
        report,
        chart,
        "local storage without persistence.existingClaim",
        deep_merge(minimal, {"storage": {"type": "local"}}),
        "storage.type=local needs persistence.existingClaim",
    )
    expect_failure(
        report,
        chart,
        "local storage without a public URL for its download links",
        deep_merge(minimal, {"storage": {"type": "local"}, "persistence": {"existingClaim": "quire-data"}}),
        "set apiServer.publicUrl",
    )
    expect_failure(
        report,
        chart,
        "a misspelt top-level key",
        deep_merge(minimal, {"workr": {"replicaCount": 3}}),
        "additional properties 'workr' not allowed",
    )
    expect_failure(
        report,
        chart,
        "a misspelt nested key",
        deep_merge(minimal, {"apiServer": {"replicas": 3}}),
        "additional properties 'replicas' not allowed",
    )
    expect_failure(
        report,
        chart,
        "an unknown queue type",
        deep_merge(minimal, {"queue": {"type": "kafka"}}),
        "queue/type",
    )
    expect_failure(
        report,
        chart,
        "a download link TTL over 7 days",
        deep_merge(minimal, {"apiServer": {"downloadUrlTtl": 604801}}),
        "downloadUrlTtl",
    )
    expect_failure(
        report,
        chart,
        "a JWT secret shorter than 32 bytes",
        deep_merge(minimal, {"jwt": {"secret": "too-short"}}),
        "at least 32 bytes",
    )
    expect_failure(
        report,
        chart,
        "two controllers without leader election",
        deep_merge(minimal, {"controller": {"replicaCount": 2, "leaderElection": {"enabled": False}}}),
        "controller.replicaCount > 1 needs controller.leaderElection.enabled",
    )
    expect_failure(
        report,
        chart,
        "a termination grace shorter than the worker's shutdown grace",
        deep_merge(minimal, {"worker": {"shutdownGrace": 60, "terminationGracePeriodSeconds": 30}}),
        "must be larger than worker.shutdownGrace",
    )
    expect_failure(
        report,
        chart,
        "KEDA on the database queue",
        deep_merge(
            minimal,
            {
                "queue": {"type": "database"},
                "worker": {"autoscaling": {"hpa": {"enabled": False}, "keda": {"enabled": True}}},
            },
        ),
        "needs queue.type=sqs",
    )

    expect_failure(
        report,
        chart,
        "an output retention that is not a duration",
        deep_merge(minimal, {"retention": {"outputs": "7 days"}}),
        "retention/outputs",
    )
    expect_failure(
        report,
        chart,
        "a longest wait that is not a duration string",
        deep_merge(minimal, {"apiServer": {"maxWait": "1 minute"}}),
        "apiServer/maxWait",
    )
    expect_failure(
        report,
        chart,
        "a ServiceMonitor setting the chart does not know",
        deep_merge(minimal, {"worker": {"metrics": {"serviceMonitor": {"enable": True}}}}),
        "additional properties 'enable' not allowed",
    )

    elapsed = time.monotonic() - started
    print(f"\nchart check: {report.passed} passed, {len(report.failed)} failed ({elapsed:.1f}s)")
    for name in report.failed:
        print(f"  failed: {name}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
