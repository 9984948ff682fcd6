"""Kubernetes manifests: rendered by kustomize (kubectl), validated offline against schemas.

Built-in kinds are validated strictly (unknown fields fail) against the OpenAPI schemas of
Kubernetes 1.37 that kubernetes-validate bundles. The custom resources (PodMonitor,
ServiceMonitor, PrometheusRule, ScaledObject, TriggerAuthentication) are validated against
the JSON schemas of their CRDs from npm (tests/deploy/crd/); those schemas type every field
but, like the API server, do not reject unknown ones. No rendered object goes unvalidated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stream.config import Settings
from tests.deploy.tools import CRD_DIR, ROOT, node, run, tool

pytestmark = pytest.mark.deploy

K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.37.0"
COMPONENTS = ("prometheus-operator", "keda")
# Every build: the base, each overlay alone, and each overlay with every component.
BUILDS = ("base", "overlays/cpu", "overlays/gpu", "overlays/cpu+components", "overlays/gpu+components")


def settings_env_names() -> set[str]:
    """Every environment variable the worker and encoder settings read."""
    names = {f"STREAMRANK_{name.upper()}" for name in Settings.model_fields if name != "encoder"}
    encoder = Settings.model_fields["encoder"].annotation
    return names | {f"STREAMRANK_ENCODER_{name.upper()}" for name in encoder.model_fields}


def render(build: str, tmp_path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of a build; ``+components`` builds a copy with them enabled."""
    path = K8S / build
    if build.endswith("+components"):
        # Components only render inside a kustomization tree: enable them in a copy.
        tree = tmp_path / "k8s"
        shutil.copytree(K8S, tree)
        path = tree / build.removesuffix("+components")
        kustomization = yaml.safe_load((path / "kustomization.yaml").read_text())
        kustomization["components"] = [f"../../components/{c}" for c in COMPONENTS]
        (path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    result = run([tool("kubectl"), "kustomize", str(path)])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate_crds(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the CRD schema validator; one result per object."""
    result = run([node(), str(CRD_DIR / "validate.mjs")], stdin=json.dumps(objects))
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every build, rendered once."""
    return {build: render(build, tmp_path_factory.mktemp("k8s")) for build in BUILDS}


@pytest.mark.parametrize("build", BUILDS)
def test_every_object_is_valid(rendered: dict[str, list[dict[str, Any]]], build: str) -> None:
    objects = rendered[build]
    custom = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            custom.append(obj)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{build}: {obj['kind']}/{obj['metadata']['name']}: {exc}")
    results = validate_crds(custom) if custom else []
    assert len(results) == len(custom), "every custom resource has a result"
    assert [r for r in results if not r["ok"]] == []
    if build.endswith("+components"):
        kinds = {o["kind"] for o in custom}
        assert kinds == {
            "PodMonitor",
            "ServiceMonitor",
            "PrometheusRule",
            "ScaledObject",
            "TriggerAuthentication",
        }
    else:
        assert custom == [], "overlays without components use built-in kinds only"


def test_validators_reject_broken_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    statefulset = _by_kind(rendered["base"], "StatefulSet")["streamrank-worker"]
    broken = json.loads(json.dumps(statefulset))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    monitor = _by_kind(rendered["overlays/gpu+components"], "PodMonitor")["streamrank-worker"]
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    assert validate_crds([broken])[0]["ok"] is False


@pytest.mark.parametrize("build", ["overlays/cpu", "overlays/gpu"])
def test_workers(rendered: dict[str, list[dict[str, Any]]], build: str) -> None:
    objects = rendered[build]
    worker = _by_kind(objects, "StatefulSet")["streamrank-worker"]
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert worker["spec"]["serviceName"] == "streamrank-worker"
    assert _by_kind(objects, "Service")["streamrank-worker"]["spec"]["clusterIP"] == "None"
    assert worker["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["data"] == "/var/lib/streamrank"
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= container.keys()
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys() & container["resources"][
        "limits"
    ].keys()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert worker["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert "streamrank-worker" in _by_kind(objects, "PodDisruptionBudget")
    assert "streamrank-worker" in _by_kind(objects, "HorizontalPodAutoscaler")
    # Kafka credentials come from the optional Secret, through settings the worker has.
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert {k: (v["name"], v["key"]) for k, v in secret_env.items()} == {
        "STREAMRANK_SASL_USERNAME": ("streamrank-kafka", "username"),
        "STREAMRANK_SASL_PASSWORD": ("streamrank-kafka", "password"),
    }


def test_cpu_overlay_encodes_in_process(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["overlays/cpu"]
    assert "Deployment" not in {o["kind"] for o in objects}
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert config["data"]["STREAMRANK_ENCODER_URL"] == ""
    assert config["data"]["STREAMRANK_ENCODER_DEVICE"] == "cpu"


def test_gpu_overlay_runs_the_encoder_on_a_gpu(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["overlays/gpu"]
    encoder = _by_kind(objects, "Deployment")["streamrank-encoder"]
    pod = encoder["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][0] == "encode-server"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= container.keys()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    service = _by_kind(objects, "Service")["streamrank-encoder"]
    assert service["spec"]["selector"] == encoder["spec"]["selector"]["matchLabels"]
    (port,) = service["spec"]["ports"]
    assert "streamrank-encoder" in _by_kind(objects, "PodDisruptionBudget")
    # Workers reach it through its Service; they need no GPU themselves.
    configs = {
        o["metadata"]["name"].rsplit("-", 1)[0]: o["data"] for o in objects if o["kind"] == "ConfigMap"
    }
    assert (
        configs["streamrank-config"]["STREAMRANK_ENCODER_URL"] == f"http://streamrank-encoder:{port['port']}"
    )
    assert configs["streamrank-encoder-config"]["STREAMRANK_ENCODER_DEVICE"] == "cuda"
    assert configs["streamrank-encoder-config"]["STREAMRANK_ENCODER_DTYPE"] == "float16"
    worker = _by_kind(objects, "StatefulSet")["streamrank-worker"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert "nvidia.com/gpu" not in worker["resources"]["limits"]


@pytest.mark.parametrize("build", BUILDS)
def test_config_maps_set_only_existing_settings(
    rendered: dict[str, list[dict[str, Any]]], build: str
) -> None:
    known = settings_env_names()
    for config in (o for o in rendered[build] if o["kind"] == "ConfigMap"):
        assert set(config["data"]) - known == set(), config["metadata"]["name"]


def test_monitors_scrape_the_jobs_the_rules_expect(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["overlays/gpu+components"]
    pod_monitor = _by_kind(objects, "PodMonitor")["streamrank-worker"]
    service_monitor = _by_kind(objects, "ServiceMonitor")["streamrank-encoder"]
    worker_labels = _by_kind(objects, "StatefulSet")["streamrank-worker"]["spec"]["template"]["metadata"][
        "labels"
    ]
    service_labels = _by_kind(objects, "Service")["streamrank-encoder"]["metadata"]["labels"]
    # job = the value of the jobLabel label: the job names the rules and dashboards select.
    assert worker_labels[pod_monitor["spec"]["jobLabel"]] == "streamrank-worker"
    assert service_labels[service_monitor["spec"]["jobLabel"]] == "streamrank-encoder"
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= worker_labels.items()
    assert service_monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert "HorizontalPodAutoscaler" not in {o["kind"] for o in objects}, "KEDA replaces the CPU HPA"
