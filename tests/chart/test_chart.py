"""The Helm chart as a platform team would check it: rendered by Helm's own engine.

Covers lint, strict Kubernetes 1.33 validation of every manifest, the CRD objects'
required fields, security, probes, config rollout, secrets, the values schema, and that
the rendered config passes `gameball-connector validate`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from connector.config import Settings
from connector.shutdown import SLACK_S
from tests.chart.rendering import (
    CHART,
    CRD_GROUPS,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    Release,
    container_env,
    referenced_vars,
    render,
    render_files,
    restricted_violations,
    values_file,
)

pytestmark = pytest.mark.chart

BIN = Path(sys.executable).parent / "gameball-connector"

# name -> values; every test over "each values set" runs on all three.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "all": values_file("all-values.yaml"),
    "existing-secrets": values_file("existing-secrets-values.yaml"),
}


def with_values(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`base` with dotted keys replaced: with_values({}, **{"config.batch.linger_ms": 5})."""
    out: dict[str, Any] = json.loads(json.dumps(base))
    for dotted, value in changes.items():
        node = out
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return out


def dotted(**kw: Any) -> dict[str, Any]:
    return with_values({}, **kw)


@pytest.fixture(params=sorted(VALUE_SETS), scope="module")
def values_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def release_all() -> Release:
    return render(VALUE_SETS["all"])


# --- lint and strict validation ---------------------------------------------------------


def test_lint_passes_strict_with_no_warnings(values_name: str) -> None:
    report = helm_python.lint(str(CHART), VALUE_SETS[values_name], strict=True)
    assert report["errors"] == []
    # Severity 1 is "info" (Helm suggests an icon); warnings (2) and errors (3) fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_every_kubernetes_manifest_validates_strictly(values_name: str) -> None:
    release = render(VALUE_SETS[values_name])
    checked = 0
    for doc in release.docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 5


def test_all_names_are_namespaced_and_labelled(values_name: str) -> None:
    release = render(VALUE_SETS[values_name])
    for doc in release.docs:
        meta = doc["metadata"]
        assert meta["namespace"] == NAMESPACE, doc["kind"]
        assert len(meta["name"]) <= 63
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_default_render_has_no_crd_objects_and_all_values_has_every_optional_one(
    release_all: Release,
) -> None:
    defaults = render({})
    assert defaults.kinds() == {
        "ConfigMap", "Deployment", "PodDisruptionBudget", "Pod", "Service", "ServiceAccount",
    }
    assert {
        "ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject",
        "TriggerAuthentication", "Secret", "PodDisruptionBudget",
    } <= release_all.kinds()
    # The dashboard ConfigMap renders from values alone (no .Capabilities gate).
    assert len(release_all.all("ConfigMap")) == 2


# --- security ---------------------------------------------------------------------------


def test_pods_meet_the_restricted_pod_security_standard(values_name: str) -> None:
    release = render(VALUE_SETS[values_name])
    assert restricted_violations(release.pod_spec) == []
    for pod in release.all("Pod"):
        assert restricted_violations(pod["spec"]) == [], pod["metadata"]["name"]


def test_security_defaults_run_as_the_image_user_with_read_only_root() -> None:
    release = render({})
    sc = release.container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["runAsNonRoot"] is True
    assert release.pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # Same numeric user as the Dockerfile's USER line.
    dockerfile = (CHART.parents[1] / "Dockerfile").read_text()
    user = re.findall(r"^USER\s+(\d+):(\d+)", dockerfile, re.MULTILINE)[-1]
    assert (str(sc["runAsUser"]), str(sc["runAsGroup"])) == user
    # No API token in the pod: the connector never calls Kubernetes.
    assert release.pod_spec["automountServiceAccountToken"] is False
    assert release.one("ServiceAccount")["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m for m in release.container["volumeMounts"]}
    assert mounts["/etc/gameball-connector"]["readOnly"] is True
    volumes = {v["name"]: v for v in release.pod_spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_grace_period_covers_the_shutdown_bound() -> None:
    release = render({})
    shutdown = yaml.safe_load(release.config_text)["shutdown"]
    bound = shutdown["drain_seconds"] + shutdown["close_seconds"] + SLACK_S
    assert release.pod_spec["terminationGracePeriodSeconds"] >= bound
    exact = render(dotted(**{"terminationGracePeriodSeconds": int(bound)}))
    assert exact.pod_spec["terminationGracePeriodSeconds"] == bound
    too_short = re.escape("must be at least config.shutdown.drain_seconds + close_seconds + 2")
    with pytest.raises(helm_python.HelmRenderError, match=too_short):
        render(dotted(**{"terminationGracePeriodSeconds": int(bound) - 1}))  # drain + close + 1
    with pytest.raises(helm_python.HelmRenderError, match=too_short):
        render(dotted(**{"config.shutdown.drain_seconds": 60}))
    with pytest.raises(helm_python.HelmRenderError, match=too_short):
        render(dotted(**{"config.shutdown.close_seconds": 40}))


def test_container_runs_the_image_command_with_the_mounted_config() -> None:
    release = render({})
    assert release.container["args"] == ["run", "--config", "/etc/gameball-connector/config.yaml"]
    assert "command" not in release.container  # the image's exec-form ENTRYPOINT stays
    assert release.container["image"] == "gameball-connector:0.1.0"  # appVersion
    pinned = render(dotted(**{"image.digest": "sha256:" + "a" * 64, "image.tag": "9.9.9"}))
    assert pinned.container["image"] == "gameball-connector@sha256:" + "a" * 64


# --- probes and ports -------------------------------------------------------------------


def test_probes_hit_health_endpoints_on_the_metrics_port() -> None:
    release = render({})
    c = release.container
    (port,) = c["ports"]
    assert port == {"name": "metrics", "containerPort": 9464, "protocol": "TCP"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert "startupProbe" not in c
    service = release.one("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"] == release.deployment["spec"]["selector"]["matchLabels"]


def test_container_port_follows_the_configured_metrics_port() -> None:
    release = render(dotted(**{"config.metrics.port": 9500}))
    assert release.container["ports"][0]["containerPort"] == 9500
    assert yaml.safe_load(release.config_text)["metrics"]["port"] == 9500


def test_probes_can_be_tuned_or_switched_off() -> None:
    release = render(
        dotted(**{"livenessProbe.enabled": False, "readinessProbe.periodSeconds": 3})
    )
    assert "livenessProbe" not in release.container
    assert release.container["readinessProbe"]["periodSeconds"] == 3
    assert release.container["readinessProbe"]["httpGet"]["path"] == "/readyz"


# --- config and rollout -----------------------------------------------------------------


def _checksum(values: dict[str, Any]) -> str:
    annotations = render(values).deployment["spec"]["template"]["metadata"]["annotations"]
    value: str = annotations["checksum/config"]
    return value


def test_checksum_annotation_is_the_hash_of_the_rendered_config_map() -> None:
    files = render_files({})
    configmap_text = files["gameball-connector/templates/configmap.yaml"]
    assert _checksum({}) == hashlib.sha256(configmap_text.encode()).hexdigest()


def test_checksum_changes_when_the_config_changes_and_only_then() -> None:
    base = _checksum({})
    assert _checksum(dotted(**{"config.batch.linger_ms": 200})) != base
    assert _checksum(dotted(**{"config.kafka.topics": ["other"]})) != base
    assert _checksum(dotted(**{"replicaCount": 3, "resources": {}})) == base


def test_secret_checksum_rolls_pods_when_chart_made_credentials_change() -> None:
    def annotation(values: dict[str, Any]) -> str:
        pod = render(values).deployment["spec"]["template"]["metadata"]
        value: str = pod["annotations"]["checksum/secret"]
        return value

    base = values_file("all-values.yaml")
    assert annotation(base) != annotation(with_values(base, **{"gameball.apiKey": "rotated"}))


def test_existing_config_map_replaces_the_rendered_one() -> None:
    release = render(dotted(existingConfigMap="my-connector-config"))
    assert all("config.yaml" not in m.get("data", {}) for m in release.all("ConfigMap"))
    volumes = {v["name"]: v for v in release.pod_spec["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "my-connector-config"
    annotations = release.deployment["spec"]["template"]["metadata"].get("annotations") or {}
    assert "checksum/config" not in annotations


def test_config_values_render_verbatim_into_config_yaml(release_all: Release) -> None:
    with helm_python.Chart.load(str(CHART)) as chart:
        merged = chart.merge_values(VALUE_SETS["all"])["config"]
    config = yaml.safe_load(release_all.config_text)
    assert config == merged
    assert config["kafka"]["topics"] == ["shop.orders", "shop.reviews"]
    assert config["gameball"]["api_key"] == "${GAMEBALL_API_KEY}"
    assert config["gameball"]["secret_key"] == "${GAMEBALL_SECRET_KEY}"


def _validate(
    config_text: str, env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    # Only the pod's environment: nothing from the test runner may fill a ${VAR}.
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    return subprocess.run(
        [str(BIN), "validate", "--config", str(path)],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_rendered_config_passes_the_connectors_validate(values_name: str, tmp_path: Path) -> None:
    release = render(VALUE_SETS[values_name])
    env = container_env(release)
    if values_name == "defaults":
        # No credentials given: the operator must supply them (NOTES.txt warns).
        env |= {"GAMEBALL_API_KEY": "k", "GAMEBALL_SECRET_KEY": "s"}
    result = _validate(release.config_text, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    for secret in ("test-secret-key", "kafka-password", "from-an-existing-secret"):
        assert secret not in result.stdout + result.stderr


def test_validate_catches_a_broken_mapping_the_schema_lets_through(tmp_path: Path) -> None:
    release = render(
        dotted(**{"config.mappings": [{"topic": "shop.orders", "event": "place_order"}]})
    )
    keys = {"GAMEBALL_API_KEY": "k", "GAMEBALL_SECRET_KEY": "s"}
    result = _validate(release.config_text, keys, tmp_path)
    assert result.returncode != 0
    assert "mappings[0].customer_id" in result.stderr


# --- secrets ----------------------------------------------------------------------------


def _env_refs(release: Release) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in release.container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_existing_secrets_are_referenced_with_their_key_names() -> None:
    release = render(VALUE_SETS["existing-secrets"])
    assert _env_refs(release) == {
        "GAMEBALL_API_KEY": ("gameball-credentials", "GB_API_KEY"),
        "GAMEBALL_SECRET_KEY": ("gameball-credentials", "GB_SECRET_KEY"),
        "KAFKA_SASL_USERNAME": ("kafka-user", "user"),
        "KAFKA_SASL_PASSWORD": ("kafka-user", "password"),
    }
    assert release.all("Secret") == []  # nothing duplicated into the release
    annotations = release.deployment["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations


def test_an_empty_key_name_drops_that_variable() -> None:
    release = render(
        dotted(**{"gameball.existingSecret": "gb", "gameball.existingSecretKeys.secretKey": ""})
    )
    assert _env_refs(release) == {"GAMEBALL_API_KEY": ("gb", "api-key")}


def test_credentials_given_as_values_go_into_a_secret_and_nowhere_else(
    release_all: Release,
) -> None:
    name = release_all.deployment["metadata"]["name"]
    data = release_all.secret_data(name)
    assert data["gameball-api-key"] == "test-api-key"
    assert data["kafka-sasl-password"] == "kafka-password"
    for env_name, (secret, key) in _env_refs(release_all).items():
        assert secret == name and key in data, env_name
    # The plain values appear only inside the Secret (base64), never in other objects.
    for doc in release_all.docs:
        if doc["kind"] != "Secret":
            text = yaml.safe_dump(doc)
            assert "test-api-key" not in text and "kafka-password" not in text, doc["kind"]


def test_every_variable_the_config_needs_is_set_in_the_pod(values_name: str) -> None:
    release = render(VALUE_SETS[values_name])
    required, optional = referenced_vars(release.config_text)
    names = {e["name"] for e in release.container["env"]}
    missing = required - names
    if values_name == "defaults":
        assert missing == {"GAMEBALL_API_KEY", "GAMEBALL_SECRET_KEY"}
        assert "WARNING: no Gameball credentials" in release.notes
    else:
        assert missing == set()
        assert "WARNING: no Gameball credentials" not in release.notes
    assert "POD_NAME" in optional and "POD_NAME" in names


# --- monitoring objects -----------------------------------------------------------------


def test_service_monitor_selects_the_service_and_its_port(release_all: Release) -> None:
    monitor = release_all.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = release_all.one("Service")
    spec = monitor["spec"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"]["matchNames"] == [NAMESPACE]
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+s", endpoint["interval"])
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_pod_monitor_selects_the_pods_and_their_port(release_all: Release) -> None:
    monitor = release_all.one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    pod_labels = release_all.deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in release_all.container["ports"]}
    assert endpoint["path"] == "/metrics"
    assert "both enabled" in release_all.notes  # double scraping is called out


def test_service_monitor_without_service_fails_clearly() -> None:
    needs_service = re.escape("serviceMonitor.enabled needs service.enabled")
    with pytest.raises(helm_python.HelmRenderError, match=needs_service):
        render(dotted(**{"serviceMonitor.enabled": True, "service.enabled": False}))


def test_prometheus_rule_carries_the_charts_alert_groups(release_all: Release) -> None:
    rule = release_all.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    source = yaml.safe_load((CHART / "rules" / "alerts.yaml").read_text())
    groups = rule["spec"]["groups"]
    assert [g["name"] for g in groups] == [g["name"] for g in source["groups"]]
    rendered_rules = [r for g in groups for r in g["rules"]]
    source_rules = [r for g in source["groups"] for r in g["rules"]]
    assert len(rendered_rules) == len(source_rules) > 0
    for got, want in zip(rendered_rules, source_rules, strict=True):
        assert got["expr"] == want["expr"]
        if "alert" in want:
            assert got["alert"] == want["alert"]
            # Alert templating ({{ $labels.x }}) reaches Prometheus untouched by Helm.
            assert got["annotations"] == want["annotations"]
            # additionalRuleLabels are added; a rule's own labels (severity) win.
            assert got["labels"] == {"team": "loyalty", **want.get("labels", {})}


def _whitespace_outside_strings(text: str) -> int:
    count, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch.isspace():
            count += 1
    return count


def test_grafana_dashboard_config_map_holds_the_minified_dashboard(release_all: Release) -> None:
    (dashboard_map,) = [m for m in release_all.all("ConfigMap") if "config.yaml" not in m["data"]]
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard_map["metadata"]["annotations"]["grafana_folder"] == "Kafka"
    (text,) = dashboard_map["data"].values()
    source = json.loads((CHART / "dashboards" / "gameball-connector.json").read_text())
    assert json.loads(text) == source
    assert _whitespace_outside_strings(text) == 0  # minified


# --- scaling ----------------------------------------------------------------------------


def test_keda_scaled_object_scales_the_deployment_on_group_lag(release_all: Release) -> None:
    scaled = release_all.one("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    deployment = release_all.deployment
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # KEDA owns the replica count
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    config = yaml.safe_load(release_all.config_text)
    triggers = spec["triggers"]
    assert [t["metadata"]["topic"] for t in triggers] == config["kafka"]["topics"]
    auth = release_all.one("TriggerAuthentication")
    secret_name = deployment["metadata"]["name"]
    secret = release_all.secret_data(secret_name)
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert all(isinstance(v, str) for v in meta.values())  # KEDA's map[string]string
        assert meta["bootstrapServers"] == config["kafka"]["bootstrap_servers"]
        assert meta["consumerGroup"] == config["kafka"]["group_id"]
        assert int(meta["lagThreshold"]) == 5000
        assert meta["allowIdleConsumers"] == "false"
        assert meta["sasl"] == "scram_sha512" and meta["tls"] == "enable"
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    params = {p["parameter"]: p for p in auth["spec"]["secretTargetRef"]}
    assert set(params) == {"username", "password", "ca"}
    for p in params.values():
        assert p["name"] == secret_name and p["key"] in secret


def test_keda_needs_literal_bootstrap_servers() -> None:
    values = dotted(**{"keda.enabled": True, "config.kafka.bootstrap_servers": "${KAFKA}"})
    with pytest.raises(helm_python.HelmRenderError, match=re.escape("set keda.bootstrapServers")):
        render(values)
    ok = render(with_values(values, **{"keda.bootstrapServers": "kafka:9092"}))
    assert ok.one("ScaledObject")["spec"]["triggers"][0]["metadata"]["bootstrapServers"] == (
        "kafka:9092"
    )


def test_hpa_and_keda_together_fail_with_a_clear_message() -> None:
    values = dotted(**{"autoscaling.enabled": True, "keda.enabled": True})
    with pytest.raises(helm_python.HelmRenderError, match="enable only one of them"):
        render(values)


def test_hpa_targets_the_deployment_and_owns_replicas() -> None:
    release = render(VALUE_SETS["existing-secrets"])
    hpa = release.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": release.deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert "replicas" not in release.deployment["spec"]


def test_pod_disruption_budget_selects_the_pods() -> None:
    release = render({"replicaCount": 3})
    pdb = release.one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == (
        release.deployment["spec"]["selector"]["matchLabels"]
    )
    assert release.deployment["spec"]["replicas"] == 3
    assert render(VALUE_SETS["all"]).one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert render(dotted(**{"podDisruptionBudget.enabled": False})).all("PodDisruptionBudget") == []


def test_topology_spread_gets_the_pod_selector_filled_in(release_all: Release) -> None:
    (constraint,) = release_all.pod_spec["topologySpreadConstraints"]
    assert constraint["labelSelector"]["matchLabels"] == (
        release_all.deployment["spec"]["selector"]["matchLabels"]
    )


# --- values schema ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        (dotted(**{"image.tags": "1"}), "additional properties 'tags' not allowed"),
        (dotted(**{"service.port": "metrics"}), "/service/port"),
        (dotted(**{"config.batch.max_items": 5000}), "/config/batch/max_items"),
        (dotted(**{"config.kafak": {}}), "additional properties 'kafak' not allowed"),
        (dotted(**{"keda.sasl": "scram"}), "/keda/sasl"),
    ],
)
def test_values_schema_rejects_wrong_types_and_unknown_keys(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        render(values)
    report = helm_python.lint(str(CHART), values)
    assert any(message in e for e in report["errors"]), report["errors"]


def test_schema_knows_exactly_the_connectors_config_sections() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    config = schema["properties"]["config"]
    assert config["additionalProperties"] is False
    assert set(config["properties"]) == set(Settings.model_fields)


def test_schema_covers_every_default_value_key() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults) <= set(schema["properties"])


# --- NOTES and helm test ----------------------------------------------------------------


def test_notes_tell_how_to_check_consumption() -> None:
    release = render({})
    notes = release.notes
    name = release.deployment["metadata"]["name"]
    assert f"kubectl -n {NAMESPACE} logs deploy/{name}" in notes
    assert "port-forward" in notes and "/readyz" in notes
    # The grep in the notes really picks the progress lines out of a /metrics answer.
    pattern = re.search(r"grep -E '([^']+)'", notes)
    assert pattern is not None
    sample = [
        'gameball_connector_records_consumed_total{topic="shop.orders"} 1200.0',
        'gameball_connector_events_accepted_total{endpoint="batch"} 1150.0',
        "gameball_connector_assigned_partitions 3.0",
        "# HELP gameball_connector_records_consumed_total Records read",
        "python_gc_objects_collected_total 10.0",
    ]
    assert [line for line in sample if re.search(pattern.group(1), line)] == sample[:3]
    assert f"helm test {RELEASE}" in notes
    assert "shop.orders" in notes


def test_helm_test_pod_asks_the_services_readyz() -> None:
    release = render({})
    (pod,) = release.all("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    service = release.one("Service")
    url = container["command"][-1]
    assert url == (
        f"http://{service['metadata']['name']}.{NAMESPACE}.svc:"
        f"{service['spec']['ports'][0]['port']}/readyz"
    )
    assert container["image"] == release.container["image"]
    assert pod["spec"]["restartPolicy"] == "Never"
    # The probe script is valid Python that fails on a non-2xx answer (urlopen raises).
    script = container["command"][2]
    compile(script, "readyz-test", "exec")
    assert "urlopen" in script


@pytest.mark.integration
def test_helm_test_pod_really_fails_on_a_not_ready_answer() -> None:
    """Run the test pod's script against a local server answering /readyz with 503."""
    import http.server
    import threading

    class NotReady(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503 if self.path == "/readyz" else 404)
            self.end_headers()
            self.wfile.write(b"not ready: no partitions assigned yet")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotReady)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (pod,) = render({}).all("Pod")
        script = pod["spec"]["containers"][0]["command"][2]
        url = f"http://127.0.0.1:{server.server_address[1]}/readyz"
        result = subprocess.run(
            [sys.executable, "-c", script, url], capture_output=True, text=True, timeout=30
        )
        assert result.returncode != 0
        assert "503" in result.stderr
    finally:
        server.shutdown()
