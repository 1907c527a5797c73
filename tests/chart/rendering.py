"""Render the Helm chart with Helm's own engine (helm-python-sdk) and look at the result.

Used by the chart tests: `render(values)` gives the parsed manifests, `Release` finds
objects in them. Nothing here interprets templates itself.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "gameball-connector"
CI_VALUES = CHART / "ci"
RELEASE, NAMESPACE = "gb", "loyalty"
KUBE_VERSION = "1.33.0"

# Kinds from CRDs: kubernetes-validate has no schemas for them, the tests check fields.
CRD_GROUPS = ("monitoring.coreos.com/", "keda.sh/")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def values_file(name: str) -> dict[str, Any]:
    """A values file from the chart's ci/ folder."""
    data = yaml.safe_load((CI_VALUES / name).read_text())
    assert isinstance(data, dict)
    return data


@lru_cache(maxsize=64)
def _render_text(values_json: str, name: str, namespace: str) -> tuple[tuple[str, str], ...]:
    with helm_python.Chart.load(str(CHART)) as chart:
        out = chart.render(json.loads(values_json), name=name, namespace=namespace)
    return tuple(sorted(out.items()))


def render_files(
    values: dict[str, Any] | None = None, name: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text. Raises HelmValuesError / HelmRenderError."""
    return dict(_render_text(json.dumps(values or {}, sort_keys=True), name, namespace))


@dataclass
class Release:
    """The rendered manifests of one release, plus NOTES.txt."""

    docs: list[dict[str, Any]]
    notes: str
    files: dict[str, str]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def kinds(self) -> set[str]:
        return {d["kind"] for d in self.docs}

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        found: list[dict[str, Any]] = [
            c for c in self.pod_spec["containers"] if c["name"] == "connector"
        ]
        assert len(found) == 1
        return found[0]

    def config_map(self, name: str | None = None) -> dict[str, Any]:
        maps = [m for m in self.all("ConfigMap") if "config.yaml" in m.get("data", {})]
        if name is not None:
            maps = [m for m in maps if m["metadata"]["name"] == name]
        assert len(maps) == 1
        return maps[0]

    @property
    def config_text(self) -> str:
        text: str = self.config_map()["data"]["config.yaml"]
        return text

    def secret_data(self, name: str) -> dict[str, str]:
        """Decoded data of a Secret the chart renders."""
        secret = self.one("Secret", name)
        return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def render(
    values: dict[str, Any] | None = None, name: str = RELEASE, namespace: str = NAMESPACE
) -> Release:
    """Render and parse every manifest (empty templates dropped)."""
    files = render_files(values, name, namespace)
    docs: list[dict[str, Any]] = []
    notes = ""
    for path, text in files.items():
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return Release(docs=copy.deepcopy(docs), notes=notes, files=files)


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def referenced_vars(config_text: str) -> tuple[set[str], set[str]]:
    """(variables without default, with a default) in the config's string values.

    Like the connector, only parsed values count: comments are not expanded.
    """
    required: set[str] = set()
    optional: set[str] = set()
    for text in _strings(yaml.safe_load(config_text)):
        for match in _VAR.finditer(text):
            (optional if match.group(2) else required).add(match.group(1))
    return required, optional


def container_env(release: Release, placeholder: str = "from-an-existing-secret") -> dict[str, str]:
    """The environment the connector container would get, as far as the chart decides it.

    Literal values as written; secretKeyRef values from the Secret the chart renders, or
    `placeholder` for Secrets that exist outside the chart; fieldRef as a pod-like value.
    """
    env: dict[str, str] = {}
    for item in release.container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        source = item["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            chart_secrets = {s["metadata"]["name"] for s in release.all("Secret")}
            if ref["name"] in chart_secrets:
                env[item["name"]] = release.secret_data(ref["name"])[ref["key"]]
            else:
                env[item["name"]] = placeholder
        elif "fieldRef" in source:
            env[item["name"]] = f"{release.deployment['metadata']['name']}-7d9f8-abcde"
        else:
            env[item["name"]] = placeholder
    return env


def restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    """What a pod spec breaks of the `restricted` Pod Security Standard (policy 1.33).

    Mirrors the checks Pod Security Admission runs for `restricted`; an empty list means
    a namespace labelled pod-security.kubernetes.io/enforce=restricted admits the pod.
    """
    problems: list[str] = []
    pod_sc = pod_spec.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            problems.append(f"{flag} is set")
    allowed_volumes = {
        "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
        "persistentVolumeClaim", "projected", "secret",
    }
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes:
            problems.append(f"volume {volume['name']} uses {kinds - allowed_volumes}")
    containers = (
        pod_spec.get("containers", [])
        + pod_spec.get("initContainers", [])
        + pod_spec.get("ephemeralContainers", [])
    )
    for c in containers:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is not RuntimeDefault or Localhost")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
    return problems
