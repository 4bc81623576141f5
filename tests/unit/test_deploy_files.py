"""The deployment files of deploy/, checked offline (no kubectl, Docker or cloud here).

Kubernetes: each overlay is rendered by `kustomize_build` below, a small kustomize for the features the
overlays use (and only those: anything else in a kustomization is refused), then every object is validated
against Kubernetes' own schemas (kubernetes-validate, strict: unknown fields fail) and the RayService against
KubeRay's CRD, pinned in tests/fixtures/kuberay. What is not checked here: KubeRay's CEL rules
(x-kubernetes-validations), admission webhooks, and that an image builds or a cluster comes up.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jsonpatch
import jsonschema
import kubernetes_validate
import pytest
import ray
import yaml
from click.testing import CliRunner
from ray.autoscaler._private.util import validate_config
from ray.serve.schema import ServeDeploySchema
from typer.main import get_command

from cluster import config_reference, serve_config
from cluster.cli import app as cli
from core import metrics
from core.settings import ApiSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.33"
# Ray's own variables the deploy files set (docs/deploy.md says why).
RAY_VARIABLES = {"RAY_task_events_max_num_task_in_gcs"}
CRD = ROOT / "tests" / "fixtures" / "kuberay" / "ray.io_rayservices.yaml"
SECRET_SETTINGS = ("ORCHESTRATOR_DATABASE_URL", "ORCHESTRATOR_JWT_SECRET", "ORCHESTRATOR_ENCRYPTION_KEY")
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # C when available: the CRD is 1 MB


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 (a safe loader)


def _yaml_all(text: str) -> list[Any]:
    return [doc for doc in yaml.load_all(text, Loader=SafeLoader) if doc]


# --- a small kustomize ------------------------------------------------------------------------------------

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
# Kinds whose lists kustomize merges by key in a strategic merge patch (containers by name …). A CRD has no
# such keys, so kustomize replaces its lists whole, as `_merge` does; a list in a patch of a built-in kind is
# refused rather than merged differently from kustomize.
BUILT_IN_GROUPS = ("v1", "apps/", "batch/", "policy/", "networking.k8s.io/", "rbac.authorization.k8s.io/")


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """`kustomize build directory` for: resources (files and directories), namespace, images (any `image`
    in a `containers`/`initContainers` list, as kustomize's image transformer does), and patches, either a
    strategic merge patch (by path or inline; matched by kind and name) or JSON 6902 operations (inline, with a
    target kind and name)."""
    spec = _yaml((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KUSTOMIZATION_KEYS
    assert not unknown, f"{directory}: kustomize_build does not implement {sorted(unknown)}"
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects += kustomize_build(path)
        else:
            objects += _yaml_all(path.read_text())
    for patch in spec.get("patches", []):
        body = _yaml((directory / patch["path"]).read_text() if "path" in patch else patch["patch"])
        if isinstance(body, list):
            target = _find(objects, patch["target"]["kind"], patch["target"]["name"])
            objects[objects.index(target)] = jsonpatch.apply_patch(target, body)
        else:
            target = _find(objects, body["kind"], body["metadata"]["name"])
            assert not target["apiVersion"].startswith(BUILT_IN_GROUPS) or not _has_list(body), (
                "a strategic merge patch with a list on a built-in kind: kustomize would merge it by key"
            )
            objects[objects.index(target)] = _merge(target, body)
    for obj in objects:
        if "namespace" in spec:
            obj["metadata"]["namespace"] = spec["namespace"]
        for image in spec.get("images", []):
            _set_images(obj, image)
    return objects


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    return found


def _merge(base: Any, patch: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    assert not any(key.startswith("$") for key in patch), "patch directives are not implemented"
    merged = dict(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(base.get(key), value)
    return merged


def _has_list(value: Any) -> bool:
    return isinstance(value, list) or (isinstance(value, dict) and any(_has_list(v) for v in value.values()))


def _set_images(node: Any, image: dict[str, str], in_containers: bool = False) -> None:
    if isinstance(node, dict):
        if in_containers and "image" in node:
            name, _, tag = node["image"].partition(":")
            if name == image["name"]:
                node["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
        for key, value in node.items():
            _set_images(value, image, key in ("containers", "initContainers"))
    elif isinstance(node, list):
        for item in node:
            _set_images(item, image, in_containers)


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize_build(KUBERNETES / "overlays" / overlay))


def rayservice(overlay: str) -> dict[str, Any]:
    return _find(list(rendered(overlay)), "RayService", "orchestrator")


def pod_specs(service: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [group["template"] for group in groups]


def containers(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for template in pod_specs(service) for c in template["spec"]["containers"]]


def test_the_small_kustomize_patches_as_kustomize_does() -> None:
    base = {"apiVersion": "ray.io/v1", "kind": "X", "metadata": {"name": "x"}, "spec": {"a": [1, 2], "b": 1, "c": 2}}
    assert _merge(base, {"spec": {"a": [3], "b": None}}) == {**base, "spec": {"a": [3], "c": 2}}
    pod = {"spec": {"containers": [{"image": "orchestrator:0.1.0"}, {"image": "other:1"}], "image": "orchestrator:x"}}
    _set_images(pod, {"name": "orchestrator", "newName": "r/orchestrator", "newTag": "2"})
    assert pod == {
        "spec": {"containers": [{"image": "r/orchestrator:2"}, {"image": "other:1"}], "image": "orchestrator:x"}
    }


# --- Kubernetes -------------------------------------------------------------------------------------------


@cache
def rayservice_schema() -> dict[str, Any]:
    """KubeRay's CRD as a JSON Schema, strict as `kubectl apply` (server-side field validation): an object
    with properties accepts no other field unless it says x-kubernetes-preserve-unknown-fields."""
    [crd] = _yaml_all(CRD.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return _structural(version["schema"]["openAPIV3Schema"])


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _structural(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        schema.setdefault("additionalProperties", False)
    return schema


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_its_schema(overlay: str) -> None:
    kinds = []
    for obj in rendered(overlay):
        kinds.append(obj["kind"])
        if obj["kind"] == "RayService":
            jsonschema.validate(obj, rayservice_schema())
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert sorted(kinds) == ["NetworkPolicy", "PersistentVolumeClaim", "PodDisruptionBudget", "RayService"]


def test_a_misspelt_field_fails_the_rayservice_schema() -> None:
    service = copy.deepcopy(rayservice("prod"))
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 3
    with pytest.raises(jsonschema.ValidationError, match="maxReplica"):
        jsonschema.validate(service, rayservice_schema())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_cluster_runs_no_work_on_its_head_and_autoscales_its_workers(overlay: str) -> None:
    cluster = rayservice(overlay)["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["minReplicas"] < group["maxReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gcs_fault_tolerance_uses_redis_with_a_password_from_a_secret(overlay: str) -> None:
    options = rayservice(overlay)["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]
    assert options["redisAddress"]
    assert set(options["redisPassword"]["valueFrom"]["secretKeyRef"]) == {"name", "key"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    cluster = rayservice(overlay)["spec"]["rayClusterConfig"]
    for resources in [c["resources"] for c in containers(rayservice(overlay))] + [
        cluster["autoscalerOptions"]["resources"]
    ]:
        for quantity in ("cpu", "memory"):
            assert _quantity(resources["requests"][quantity]) <= _quantity(resources["limits"][quantity])


def _quantity(text: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text)).groups()  # type: ignore[union-attr]
    return float(number) * units.get(unit, 1)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_node_reads_its_secrets_from_a_secret_and_only_settings_that_exist(overlay: str) -> None:
    known = {
        config_reference.env_name(name, field)
        for _, _, fields in config_reference.settings_groups()
        for name, field in fields.items()
    }
    for container in containers(rayservice(overlay)):
        env = {item["name"]: item for item in container["env"]}
        for name in SECRET_SETTINGS:
            assert set(env[name]["valueFrom"]["secretKeyRef"]) == {"name", "key"}, name
        ours = {name for name in env if not name.startswith("RAY_")}  # RAY_*: Ray's own, read by `ray start`
        assert ours <= known, f"{container['name']}: not settings: {sorted(ours - known)}"
        assert set(env) - ours <= RAY_VARIABLES, container["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_disruption_budget_and_the_network_policy_select_the_platforms_pods(overlay: str) -> None:
    objects = list(rendered(overlay))
    budget = _find(objects, "PodDisruptionBudget", "orchestrator")["spec"]["selector"]["matchLabels"]
    policy = _find(objects, "NetworkPolicy", "orchestrator")["spec"]["podSelector"]["matchLabels"]
    for template in pod_specs(rayservice(overlay)):
        labels = template["metadata"]["labels"]
        assert budget.items() <= labels.items() and policy.items() <= labels.items()
    namespaces = {obj["metadata"]["namespace"] for obj in objects}
    assert namespaces == {f"orchestrator-{overlay}" if overlay == "dev" else "orchestrator"}


# --- Serve's config ---------------------------------------------------------------------------------------


def test_the_serve_config_is_generated_from_the_app() -> None:
    """Drift: deploy/serve-config.yaml is what `orchestrator deploy serve-config` writes from the defaults, and
    Serve accepts it (its own ServeDeploySchema)."""
    text = (DEPLOY / "serve-config.yaml").read_text()
    assert text == serve_config.render(ApiSettings.model_construct())
    config = ServeDeploySchema.model_validate(yaml.safe_load(text))
    [application] = config.applications
    assert application.runtime_env == {}, "the image holds the code: no runtime_env downloads"
    assert application.import_path == serve_config.IMPORT_PATH


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_rayservice_carries_the_generated_serve_config(overlay: str) -> None:
    assert rayservice(overlay)["spec"]["serveConfigV2"] == (DEPLOY / "serve-config.yaml").read_text()


def test_deploy_serve_config_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale, manifest = tmp_path / "serve-config.yaml", tmp_path / "rayservice.yaml"
    stale.write_text("applications: []\n")
    manifest.write_text((KUBERNETES / "base" / "rayservice.yaml").read_text())
    args = ["deploy", "serve-config", "--output", str(stale), "--rayservice", str(manifest)]
    result = CliRunner().invoke(get_command(cli), [*args, "--check"])
    assert result.exit_code == 1 and "is stale" in result.output
    assert CliRunner().invoke(get_command(cli), args).exit_code == 0
    assert stale.read_text() == serve_config.render(ApiSettings())
    assert CliRunner().invoke(get_command(cli), [*args, "--check"]).exit_code == 0


def test_embedding_replaces_only_the_serve_config_block() -> None:
    manifest = "spec:\n  serveConfigV2: |\n    old: 1\n\n    older: 2\n  rayClusterConfig:\n    a: 1\n"
    assert (
        serve_config.embed(manifest, "new: 3\n")
        == "spec:\n  serveConfigV2: |\n    new: 3\n  rayClusterConfig:\n    a: 1\n"
    )


def test_the_application_builder_refuses_to_generate_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ORCHESTRATOR_JWT_SECRET", "j" * 48)
    monkeypatch.delenv("ORCHESTRATOR_ENCRYPTION_KEY", raising=False)
    with pytest.raises(ValueError, match="ORCHESTRATOR_ENCRYPTION_KEY"):
        serve_config.build_platform({})
    assert not (tmp_path / "secrets").exists()


# --- the cluster launcher ---------------------------------------------------------------------------------


@cache
def launcher() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())


def test_the_cluster_launcher_config_validates_against_rays_schema() -> None:
    validate_config(launcher())  # ray/autoscaler/ray-schema.json, and Ray's checks of node types
    broken = {**launcher(), "max_worker": 3}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)


def test_the_cluster_launcher_runs_no_work_on_the_head_and_the_platform_with_flags_that_exist() -> None:
    config = launcher()
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    assert config["available_node_types"][config["head_node_type"]]["resources"]["CPU"] == 0
    [start] = [c for c in config["head_start_ray_commands"] if "ray start --head" in c]
    assert "--num-cpus=0" in start.split()
    [up] = [c for c in config["head_start_ray_commands"] if "orchestrator up" in c]
    words = shlex.split(up.split("orchestrator up", 1)[1].split(">", 1)[0])
    flags = {word for word in words if word.startswith("--")}
    known = {opt for param in get_command(cli).commands["up"].params for opt in param.opts}  # type: ignore[attr-defined]
    assert "--address" in flags and flags <= known, f"flags `orchestrator up` lacks: {sorted(flags - known)}"
    assert any(re.search(r"pip install .*/home/ray/orchestrator\b", c) for c in config["setup_commands"])
    env_file = config["file_mounts"]["/home/ray/orchestrator.env"]
    assert env_file in (ROOT / ".gitignore").read_text().split(), "the settings file holds secrets"


# --- the image --------------------------------------------------------------------------------------------


def test_the_dockerfile_builds_on_rays_image_of_the_pinned_version_and_copies_every_package() -> None:
    """Lint only: there is no Docker engine here to build it."""
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines() if not line.startswith("#")]
    [base] = [line.split()[1] for line in lines if line.startswith("FROM ")]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [dep for dep in project["project"]["dependencies"] if dep.startswith("ray[")]
    assert pins == [f"ray[serve]=={ray.__version__}"]
    python = re.fullmatch(rf"rayproject/ray:{re.escape(ray.__version__)}-py3(\d+)", base)
    assert python and int(python[1]) >= int(project["project"]["requires-python"].removeprefix(">=3."))
    copied = {word.rstrip("/") for line in lines if line.startswith("COPY ") for word in line.split()[1:-1]}
    copied.discard("--chown=ray:users")
    assert all((ROOT / source).exists() for source in copied)
    packages = {name.rstrip("*") for name in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied, f"not in the image: {sorted(packages - copied)}"
    for line in lines:
        if line.startswith(("CMD", "ENTRYPOINT")):
            assert "pip" not in line, "dependencies are installed at build time, not when a container starts"


# --- Grafana ----------------------------------------------------------------------------------------------


def test_the_grafana_dashboard_queries_only_metrics_the_platform_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "orchestrator-dashboard.json").read_text())
    suffixes = {"gauge": ("",), "counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported = {
        f"ray_{name}{suffix}" for name, (kind, _, _) in metrics.DEFINITIONS.items() for suffix in suffixes[kind]
    }
    queried = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            queried |= set(re.findall(r"\bray_orchestrator_\w+", target["expr"]))
    assert queried and queried <= exported, f"not exported: {sorted(queried - exported)}"
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name.removeprefix("ray_")) for name in queried}
    assert shown == set(metrics.DEFINITIONS), f"not on the dashboard: {sorted(set(metrics.DEFINITIONS) - shown)}"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
