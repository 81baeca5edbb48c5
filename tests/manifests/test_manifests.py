"""Offline checks of the Kubernetes manifests in keda/ and knative/.

Renders every kustomization with `kubectl kustomize`, validates custom resources against the
real CRD schemas in ../shared/schemas (or $SURGE_SCHEMAS_DIR) and core kinds with
kubernetes-validate, then checks what the schemas cannot: hardening, scaling rules and that
the manifests match the code (one ScaledObject and one Knative Service per function found in
functions/*/src/lib.rs, queue names, binaries, ports, shared settings). The monitoring
(keda/base/monitoring) is checked with promtool (`check rules`, and the unit tests in
rules_test.yaml), against docs/runbooks.md and against the code's metric contract.

Run: python3 -m pip install -r tests/manifests/requirements.txt
     python3 -m pytest tests/manifests -q
promtool comes from Debian's `prometheus` package (scripts/setup.sh installs it).
No cluster and no network are needed.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = Path(os.environ.get("SURGE_SCHEMAS_DIR") or REPO.parent / "shared" / "schemas")
KUBECTL = os.environ.get("KUBECTL") or shutil.which("kubectl") or "/usr/bin/kubectl"
PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool") or "/usr/bin/promtool"
# Kubernetes version of the core schemas (shipped inside kubernetes-validate, offline).
K8S_VERSION = "1.30"

RENDERS = {
    "keda-dev": "keda/overlays/dev",
    "keda-prod": "keda/overlays/prod",
    "knative": "knative",
}
KEDA_RENDERS = ["keda-dev", "keda-prod"]
# Renders whose Secrets are created out of band: no placeholder may reach them.
SECRETLESS_RENDERS = ["keda-prod", "knative"]

IMAGE = "ghcr.io/surge-dev/surge"
BIN_DIR = "/usr/local/bin"
RUN_AS = 65532
PLACEHOLDER = "CHANGE-ME"
BUDGET_ANNOTATION = "surge.dev/postgres-connection-budget"

# API groups served by Kubernetes itself (validated by kubernetes-validate); anything else
# must be a CRD found in SCHEMAS_DIR.
BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
}
WORKLOAD_KINDS = {("apps", "Deployment"), ("batch", "Job"), ("serving.knative.dev", "Service")}

# The gateway's metrics port: SURGE_HTTP__METRICS_ADDR, container and Service port `metrics`.
METRICS_PORT = 9100

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SEMVER = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")


# ---------------------------------------------------------------------------------------------
# Rendering and lookup helpers


@functools.cache
def render(name: str) -> tuple[dict, ...]:
    """The objects `kubectl kustomize` renders for one of RENDERS (cached per session)."""
    path = REPO / RENDERS[name]
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"kubectl kustomize {RENDERS[name]} failed:\n{proc.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


@functools.cache
def rendered_text(name: str) -> str:
    return yaml.safe_dump_all(render(name))


def group_of(doc: dict) -> str:
    api = doc["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


def objects(docs, kind: str, group: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (group is None or group_of(d) == group)]


def one(docs, kind: str, name: str, group: str | None = None) -> dict:
    found = [d for d in objects(docs, kind, group) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def workloads(docs) -> list[dict]:
    return [d for d in docs if (group_of(d), d["kind"]) in WORKLOAD_KINDS]


def containers_of(doc: dict) -> list[dict]:
    spec = pod_spec(doc)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def surge_containers(docs) -> Iterator[tuple[dict, dict]]:
    for w in workloads(docs):
        for c in containers_of(w):
            if c["image"].split("@")[0].rsplit(":", 1)[0] == IMAGE:
                yield w, c


def binary_of(container: dict) -> str:
    command = container.get("command") or []
    assert command, f"container {container['name']} must name its binary in `command`"
    return command[0]


def effective_env(container: dict, docs) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, env overrides."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            cm = one(docs, "ConfigMap", source["configMapRef"]["name"], "")
            env.update({prefix + k: v for k, v in (cm.get("data") or {}).items()})
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            for key in secret_keys(docs).get(name, set()):
                env[prefix + key] = f"<secret {name}/{key}>"
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var.get("valueFrom", {})
            env[var["name"]] = f"<from {sorted(ref)}>"
    return env


def env_int(env: dict[str, str], key: str) -> int:
    assert key in env, f"{key} must be set explicitly"
    value = env[key]
    assert re.fullmatch(r"\d+", value), f"{key}={value!r} is not a non-negative integer"
    return int(value)


def addr_port(addr: str) -> int:
    host, _, port = addr.rpartition(":")
    assert host and port.isdigit(), f"{addr!r} is not host:port"
    return int(port)


def container_port(container: dict, name_or_number) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    for p in container.get("ports", []):
        if p.get("name") == name_or_number:
            return p["containerPort"]
    raise AssertionError(f"container {container['name']} has no port named {name_or_number}")


QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
UNITS = {
    None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}


def quantity(value) -> float:
    m = QUANTITY.match(str(value))
    assert m, f"unparsable quantity {value!r}"
    return float(m.group(1)) * UNITS[m.group(2)]


# ---------------------------------------------------------------------------------------------
# The code side: functions, binaries, settings


@functools.cache
def functions_in_code() -> dict[str, str]:
    """Function name -> binary name, from functions/<dir>/src/lib.rs and Cargo.toml."""
    found: dict[str, str] = {}
    for lib in sorted((REPO / "functions").glob("*/src/lib.rs")):
        crate = lib.parent.parent
        if crate.name == "runtime":
            continue
        names = re.findall(r'const\s+NAME\s*:\s*&\'static\s+str\s*=\s*"([^"]+)"\s*;', lib.read_text())
        assert len(names) == 1, f"{lib} must define exactly one `const NAME`, found {names}"
        name = names[0]
        assert name not in found, f"function {name} is defined twice"
        manifest = tomllib.loads((crate / "Cargo.toml").read_text())
        bins = [b["name"] for b in manifest.get("bin", [])] or [manifest["package"]["name"]]
        assert len(bins) == 1, f"{crate}/Cargo.toml must build exactly one binary, found {bins}"
        found[name] = bins[0]
    return found


@functools.cache
def gateway_binary() -> str:
    manifest = tomllib.loads((REPO / "gateway" / "Cargo.toml").read_text())
    bins = [b["name"] for b in manifest.get("bin", [])]
    assert len(bins) == 1, f"gateway/Cargo.toml must build exactly one binary, found {bins}"
    return bins[0]


def function_of_binary(path: str) -> str | None:
    binaries = {f"{BIN_DIR}/{b}": n for n, b in functions_in_code().items()}
    return binaries.get(path)


def broker_prefix(docs) -> str:
    prefixes = {
        effective_env(c, docs).get("SURGE_BROKER__PREFIX", "") for _, c in surge_containers(docs)
    }
    assert len(prefixes) == 1, f"SURGE_BROKER__PREFIX differs between processes: {prefixes}"
    return prefixes.pop()


def queue_of(name: str, docs) -> str:
    return f"{broker_prefix(docs)}fn.{name}"


# ---------------------------------------------------------------------------------------------
# Secrets: the render's own, plus the templates kept beside the manifests


@functools.cache
def secret_templates() -> tuple[dict, ...]:
    docs = []
    for path in sorted(list(REPO.glob("keda/**/*.example.yaml")) + list(REPO.glob("knative/**/*.example.yaml"))):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Secret")
    return tuple(docs)


def secret_data(secret: dict) -> dict[str, str]:
    return {**(secret.get("data") or {}), **(secret.get("stringData") or {})}


def secret_keys(docs) -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for s in list(secret_templates()) + objects(docs, "Secret", ""):
        keys.setdefault(s["metadata"]["name"], set()).update(secret_data(s))
    return keys


# ---------------------------------------------------------------------------------------------
# CRD schemas


def crd_to_json_schema(node: Any) -> Any:
    """An OpenAPI v3 CRD schema as a strict JSON schema, as the API server applies it with
    field validation "Strict": unknown fields are errors except under
    x-kubernetes-preserve-unknown-fields; int-or-string, nullable and embedded resources are
    honoured; descriptions and formats are dropped."""
    if isinstance(node, list):
        return [crd_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: crd_to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = crd_to_json_schema(value)
        elif key.startswith("x-kubernetes-") or key in ("description", "format", "nullable", "example"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        if "anyOf" not in out:
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], tuple[str, dict]]:
    """(apiVersion, kind) -> (file, JSON schema) for every served version in SCHEMAS_DIR."""
    assert SCHEMAS_DIR.is_dir(), f"CRD schemas not found at {SCHEMAS_DIR} (set SURGE_SCHEMAS_DIR)"
    index: dict[tuple[str, str], tuple[str, dict]] = {}
    for path in sorted(SCHEMAS_DIR.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if not version.get("served"):
                    continue
                schema = crd_to_json_schema(version["schema"]["openAPIV3Schema"])
                index[(f"{group}/{version['name']}", kind)] = (str(path.relative_to(SCHEMAS_DIR)), schema)
    assert index, f"no CustomResourceDefinition in {SCHEMAS_DIR}"
    return index


def crd_errors(doc: dict) -> list[str]:
    key = (doc["apiVersion"], doc["kind"])
    assert key in crd_schemas(), f"no served CRD version for {key} in {SCHEMAS_DIR}"
    _, schema = crd_schemas()[key]
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]
    meta = doc.get("metadata") or {}
    if not DNS1123.match(meta.get("name", "")):
        errors.append(f"metadata.name {meta.get('name')!r} is not a DNS-1123 label")
    return errors


def core_errors(doc: dict) -> list[str]:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}"]
    return []


# =============================================================================================
# Rendering


@pytest.mark.parametrize("name", RENDERS)
def test_kustomization_renders(name):
    docs = render(name)
    assert docs, f"{RENDERS[name]} rendered nothing"
    seen = set()
    for d in docs:
        key = (d["apiVersion"], d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
        assert key not in seen, f"{name}: {key} rendered twice"
        seen.add(key)


@pytest.mark.parametrize("name", RENDERS)
def test_everything_in_one_namespace(name):
    docs = render(name)
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert len(namespaces) == 1 and None not in namespaces, f"{name}: namespaces {namespaces}"
    for ns in objects(docs, "Namespace", ""):
        assert ns["metadata"]["name"] in namespaces, f"{name}: Namespace object differs from {namespaces}"
        labels = ns["metadata"].get("labels", {})
        assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", (
            f"{name}: namespace must enforce the restricted Pod Security Standard"
        )


def test_overlays_use_their_own_namespace():
    assert {d["metadata"].get("namespace") for d in render("keda-dev") if d["kind"] != "Namespace"} == {"surge-dev"}
    assert {d["metadata"].get("namespace") for d in render("keda-prod") if d["kind"] != "Namespace"} == {"surge"}


# =============================================================================================
# Schemas


@pytest.mark.parametrize("name", RENDERS)
def test_every_kind_has_a_schema(name):
    for d in render(name):
        if group_of(d) in BUILTIN_GROUPS:
            continue
        assert (d["apiVersion"], d["kind"]) in crd_schemas(), (
            f"{name}: {d['apiVersion']} {d['kind']} is neither a core kind nor a CRD in {SCHEMAS_DIR}"
        )


@pytest.mark.parametrize("name", RENDERS)
def test_custom_resources_match_crd_schemas(name):
    checked = 0
    for d in render(name):
        if group_of(d) in BUILTIN_GROUPS:
            continue
        errors = crd_errors(d)
        assert not errors, f"{name}: {d['kind']} {d['metadata']['name']}:\n  " + "\n  ".join(errors)
        checked += 1
    assert checked, f"{name}: no custom resource rendered"


@pytest.mark.parametrize("name", RENDERS)
def test_core_kinds_match_kubernetes_schemas(name):
    checked = 0
    for d in render(name):
        if group_of(d) not in BUILTIN_GROUPS:
            continue
        errors = core_errors(d)
        assert not errors, f"{name}: {d['kind']} {d['metadata']['name']}: {errors}"
        checked += 1
    assert checked, f"{name}: no core object rendered"


def test_the_validators_reject_broken_objects():
    """The schema checks are not vacuous: typical mistakes are caught."""
    prod = render("keda-prod")
    so = copy.deepcopy(objects(prod, "ScaledObject")[0])
    so["spec"]["minReplicaCount"] = "0"
    assert crd_errors(so), "a string minReplicaCount must be refused"
    so = copy.deepcopy(objects(prod, "ScaledObject")[0])
    so["spec"]["cooldownPeriods"] = 60
    assert crd_errors(so), "an unknown ScaledObject field must be refused"
    so = copy.deepcopy(objects(prod, "ScaledObject")[0])
    del so["spec"]["triggers"][0]["type"]
    assert crd_errors(so), "a trigger without type must be refused"
    ta = copy.deepcopy(objects(prod, "TriggerAuthentication")[0])
    del ta["spec"]["secretTargetRef"][0]["key"]
    assert crd_errors(ta), "a secretTargetRef without key must be refused"

    kn = render("knative")
    ksvc = copy.deepcopy(objects(kn, "Service", "serving.knative.dev")[0])
    ksvc["spec"]["template"]["spec"]["containerConcurrency"] = "16"
    assert crd_errors(ksvc), "a string containerConcurrency must be refused"
    ksvc = copy.deepcopy(objects(kn, "Service", "serving.knative.dev")[0])
    ksvc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["procMount"] = "Default"
    assert crd_errors(ksvc), "a container field Knative does not allow must be refused"
    src = copy.deepcopy(objects(kn, "RabbitmqSource")[0])
    src["spec"]["rabbitmqResourcesConfig"]["parallelism"] = 0
    assert crd_errors(src), "parallelism 0 must be refused"
    src = copy.deepcopy(objects(kn, "RabbitmqSource")[0])
    del src["spec"]["sink"]
    assert crd_errors(src), "a source without sink must be refused"

    sm = copy.deepcopy(one(prod, "ServiceMonitor", "surge-gateway", "monitoring.coreos.com"))
    sm["spec"]["endpoints"][0]["port"] = 9100
    assert crd_errors(sm), "a numeric ServiceMonitor endpoint port must be refused (it is a port name)"
    pm = copy.deepcopy(one(prod, "PodMonitor", "surge-functions", "monitoring.coreos.com"))
    pm["spec"]["podMetricsEndpoints"][0]["pth"] = "/metrics"
    assert crd_errors(pm), "an unknown PodMonitor endpoint field must be refused"
    rule = copy.deepcopy(one(prod, "PrometheusRule", "surge", "monitoring.coreos.com"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    assert crd_errors(rule), "a malformed `for` duration must be refused"

    deploy = copy.deepcopy(one(prod, "Deployment", "surge-gateway"))
    deploy["spec"]["replica"] = 2
    assert core_errors(deploy), "an unknown Deployment field must be refused (strict)"
    deploy = copy.deepcopy(one(prod, "Deployment", "surge-gateway"))
    deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    assert core_errors(deploy), "a string containerPort must be refused"


# =============================================================================================
# Hardening and resources


@pytest.mark.parametrize("name", RENDERS)
def test_pods_are_hardened(name):
    docs = render(name)
    assert workloads(docs), f"{name}: no workload rendered"
    for w in workloads(docs):
        where = f"{name}: {w['kind']} {w['metadata']['name']}"
        spec = pod_spec(w)
        assert spec.get("automountServiceAccountToken") is False, f"{where}: service account token mounted"
        assert spec.get("enableServiceLinks") is False, (
            f"{where}: service links would inject SURGE_GATEWAY_* variables into the SURGE_ config"
        )
        if spec.get("serviceAccountName"):
            sa = one(docs, "ServiceAccount", spec["serviceAccountName"], "")
            assert sa.get("automountServiceAccountToken") is False, f"{where}: its ServiceAccount mounts a token"
        pod_sc = spec.get("securityContext") or {}
        for c in containers_of(w):
            sc = c.get("securityContext") or {}
            cwhere = f"{where} container {c['name']}"

            def effective(field):
                return sc.get(field, pod_sc.get(field))

            assert effective("runAsNonRoot") is True, f"{cwhere}: runAsNonRoot"
            assert effective("runAsUser") == RUN_AS, f"{cwhere}: runAsUser must be {RUN_AS}"
            assert effective("runAsGroup") == RUN_AS, f"{cwhere}: runAsGroup must be {RUN_AS}"
            assert (effective("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{cwhere}: seccomp"
            assert sc.get("readOnlyRootFilesystem") is True, f"{cwhere}: readOnlyRootFilesystem"
            assert sc.get("allowPrivilegeEscalation") is False, f"{cwhere}: allowPrivilegeEscalation"
            assert sc.get("privileged") in (None, False), f"{cwhere}: privileged"
            assert (sc.get("capabilities") or {}).get("drop") == ["ALL"], f"{cwhere}: capabilities.drop ALL"
            assert not (sc.get("capabilities") or {}).get("add"), f"{cwhere}: capabilities added"
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    assert r in (res.get(kind) or {}), f"{cwhere}: resources.{kind}.{r} missing"
            for r in ("cpu", "memory"):
                assert quantity(res["requests"][r]) <= quantity(res["limits"][r]), (
                    f"{cwhere}: {r} request above its limit"
                )


@pytest.mark.parametrize("name", RENDERS)
def test_images_are_surge_with_a_set_tag(name):
    for w in workloads(render(name)):
        for c in containers_of(w):
            repo, _, tag = c["image"].rpartition(":")
            assert repo == IMAGE, f"{name}: {w['metadata']['name']} runs {c['image']}, not {IMAGE}"
            assert tag and tag != "latest", f"{name}: image tag must be set, got {c['image']}"
            if name == "keda-dev":
                assert tag == "dev", f"{name}: dev runs the dev tag, got {tag}"
            else:
                assert SEMVER.match(tag), f"{name}: production images are pinned to a release, got {tag}"


# =============================================================================================
# Functions: the code is the source of truth


def test_functions_are_discovered_in_the_code():
    found = functions_in_code()
    assert found, "no function crate found under functions/"
    for name, binary in found.items():
        assert DNS1123.match(name), f"function name {name!r} cannot name Kubernetes objects"
        assert binary == f"surge-{name}", f"function {name} builds {binary}, expected surge-{name}"


def scaled_objects_by_function(docs) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    prefix = broker_prefix(docs)
    for so in objects(docs, "ScaledObject", "keda.sh"):
        queues = [t["metadata"].get("queueName", "") for t in so["spec"]["triggers"] if t["type"] == "rabbitmq"]
        assert len(queues) == 1, f"ScaledObject {so['metadata']['name']}: exactly one rabbitmq trigger"
        queue = queues[0]
        assert queue.startswith(prefix + "fn."), (
            f"ScaledObject {so['metadata']['name']}: queue {queue!r} is not <prefix {prefix!r}>fn.<name>"
        )
        by.setdefault(queue[len(prefix) + 3:], []).append(so)
    return by


@pytest.mark.parametrize("name", KEDA_RENDERS)
def test_one_scaled_object_per_function(name):
    docs = render(name)
    by = scaled_objects_by_function(docs)
    for function in functions_in_code():
        assert len(by.get(function, [])) == 1, f"{name}: function {function} needs exactly one ScaledObject"
    unknown = set(by) - set(functions_in_code())
    assert not unknown, f"{name}: ScaledObjects for functions that do not exist: {unknown}"


@pytest.mark.parametrize("name", KEDA_RENDERS)
def test_scaled_object_targets_the_function_deployment(name):
    docs = render(name)
    for function, (so,) in scaled_objects_by_function(docs).items():
        ref = so["spec"]["scaleTargetRef"]
        assert ref.get("kind", "Deployment") == "Deployment" and ref.get("apiVersion", "apps/v1") == "apps/v1"
        deploy = one(docs, "Deployment", ref["name"], "apps")
        binaries = [binary_of(c) for c in containers_of(deploy)]
        expected = f"{BIN_DIR}/{functions_in_code()[function]}"
        assert binaries == [expected], f"{name}: {ref['name']} runs {binaries}, expected [{expected}]"
        env = effective_env(containers_of(deploy)[0], docs)
        assert env.get("SURGE_FUNCTION__MODE", "amqp") != "http", f"{name}: KEDA functions consume AMQP"


@pytest.mark.parametrize("name", KEDA_RENDERS)
def test_no_workload_runs_an_unknown_function(name):
    docs = render(name)
    for w, c in surge_containers(docs):
        binary = binary_of(c)
        if binary == f"{BIN_DIR}/{gateway_binary()}":
            continue
        assert function_of_binary(binary), f"{name}: {w['metadata']['name']} runs unknown binary {binary}"


@pytest.mark.parametrize("name", KEDA_RENDERS)
def test_function_deployments_start_at_zero_and_drain(name):
    docs = render(name)
    seen = set()
    for deploy in objects(docs, "Deployment", "apps"):
        (container,) = containers_of(deploy)
        function = function_of_binary(binary_of(container))
        if not function:
            continue
        seen.add(function)
        where = f"{name}: Deployment {deploy['metadata']['name']}"
        assert deploy["spec"].get("replicas") == 0, f"{where}: replicas must be 0 (KEDA scales it)"
        env = effective_env(container, docs)
        timeout_ms = env_int(env, "SURGE_FUNCTION__TIMEOUT_MS")
        grace_ms = env_int(env, "SURGE_FUNCTION__GRACE_PERIOD_MS")
        tgps = pod_spec(deploy).get("terminationGracePeriodSeconds", 30)
        # The drain waits up to the grace period for jobs that each run up to the timeout: a
        # grace below the timeout hands long jobs back to be rerun; Kubernetes must then wait
        # out the whole grace (plus a margin to close connections) before SIGKILL.
        assert grace_ms >= timeout_ms, (
            f"{where}: SURGE_FUNCTION__GRACE_PERIOD_MS {grace_ms} must be at least "
            f"SURGE_FUNCTION__TIMEOUT_MS {timeout_ms}, or a scale-down interrupts long jobs"
        )
        assert tgps >= grace_ms / 1000 + 5, (
            f"{where}: terminationGracePeriodSeconds {tgps} must exceed the grace period "
            f"({grace_ms / 1000} s) by at least 5 s"
        )
        assert env_int(env, "SURGE_FUNCTION__CONCURRENCY") >= 1
        assert env_int(env, "SURGE_DATABASE__MAX_CONNECTIONS") >= env_int(env, "SURGE_FUNCTION__CONCURRENCY"), (
            f"{where}: each job in flight holds a connection; the pool must cover the concurrency"
        )
        http_port = addr_port(env["SURGE_FUNCTION__HTTP_ADDR"])
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (container.get(probe) or {}).get("httpGet")
            assert get and get["path"] == path, f"{where}: {probe} must GET {path}"
            assert container_port(container, get["port"]) == http_port, (
                f"{where}: {probe} port differs from SURGE_FUNCTION__HTTP_ADDR {http_port}"
            )
    assert seen == set(functions_in_code()), f"{name}: function Deployments {seen}"


@pytest.mark.parametrize("name", KEDA_RENDERS)
def test_scaled_object_triggers(name):
    docs = render(name)
    service = one(docs, "Service", "surge-gateway", "")
    grpc_port = [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert grpc_port, f"{name}: Service surge-gateway has no grpc port"
    for function, (so,) in scaled_objects_by_function(docs).items():
        where = f"{name}: ScaledObject {so['metadata']['name']}"
        spec = so["spec"]
        namespace = so["metadata"]["namespace"]
        assert spec.get("minReplicaCount") == 0, f"{where}: minReplicaCount must be 0"
        assert spec.get("maxReplicaCount", 0) >= 1, f"{where}: maxReplicaCount"
        assert spec.get("pollingInterval", 0) >= 1, f"{where}: pollingInterval must be set"
        assert spec.get("cooldownPeriod", 0) >= spec["pollingInterval"], f"{where}: cooldownPeriod"
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert behavior.get("stabilizationWindowSeconds", -1) >= 0, f"{where}: scaleDown window"
        assert behavior.get("policies"), f"{where}: scaleDown policy"

        by_type: dict[str, list[dict]] = {}
        for t in spec["triggers"]:
            by_type.setdefault(t["type"], []).append(t)
        assert set(by_type) == {"rabbitmq", "external-push"}, f"{where}: triggers {sorted(by_type)}"
        assert all(len(v) == 1 for v in by_type.values()), f"{where}: one trigger of each type"

        (rabbit,) = by_type["rabbitmq"]
        meta = rabbit["metadata"]
        assert meta.get("protocol") == "http", (
            f"{where}: protocol must be http (over amqp KEDA sees only ready messages and "
            "scales a busy function to zero)"
        )
        assert meta.get("mode") == "QueueLength", f"{where}: mode"
        assert meta.get("excludeUnacknowledged", "false") == "false", f"{where}: unacked jobs must count"
        assert meta.get("queueName") == queue_of(function, docs), f"{where}: queueName"
        assert meta.get("vhostName") == "/", f"{where}: vhostName"
        assert float(meta.get("value", "0")) > 0, f"{where}: value must be a positive number"
        assert meta.get("activationValue") == "0", f"{where}: activationValue must be 0"
        assert "host" not in meta and "hostFromEnv" not in meta, f"{where}: credentials belong in the TriggerAuthentication"
        auth = rabbit.get("authenticationRef") or {}
        assert auth.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
        ta = one(docs, "TriggerAuthentication", auth.get("name", ""), "keda.sh")
        refs = {r["parameter"]: (r["name"], r["key"]) for r in ta["spec"].get("secretTargetRef", [])}
        assert refs.get("host") == ("surge-secrets", "rabbitmq-management-url"), f"{where}: TriggerAuthentication host"

        (push,) = by_type["external-push"]
        assert push["metadata"].get("function") == function, f"{where}: external-push function"
        expected = f"surge-gateway.{namespace}.svc.cluster.local:{grpc_port[0]}"
        assert push["metadata"].get("scalerAddress") == expected, (
            f"{where}: scalerAddress {push['metadata'].get('scalerAddress')!r}, expected {expected!r} "
            "(KEDA's operator runs in its own namespace)"
        )


def test_scaling_is_tuned_per_function():
    docs = render("keda-prod")
    by = scaled_objects_by_function(docs)
    for function, (so,) in by.items():
        deploy = one(docs, "Deployment", so["spec"]["scaleTargetRef"]["name"], "apps")
        env = effective_env(containers_of(deploy)[0], docs)
        (rabbit,) = [t for t in so["spec"]["triggers"] if t["type"] == "rabbitmq"]
        value = float(rabbit["metadata"]["value"])
        assert value >= env_int(env, "SURGE_FUNCTION__CONCURRENCY"), (
            f"{function}: a target value below the concurrency starts replicas that sit partly idle"
        )
    if {"echo", "sleep"} <= set(by):
        echo, sleep = by["echo"][0]["spec"], by["sleep"][0]["spec"]
        assert sleep["cooldownPeriod"] > echo["cooldownPeriod"], "long jobs cool down longer"
        assert (echo["cooldownPeriod"], sleep["cooldownPeriod"]) == (60, 300)
        assert (echo["maxReplicaCount"], sleep["maxReplicaCount"]) == (10, 20)


# =============================================================================================
# Knative


def knative_services(docs) -> list[dict]:
    return objects(docs, "Service", "serving.knative.dev")


def test_one_knative_service_per_function():
    docs = render("knative")
    by: dict[str, list[dict]] = {}
    for ksvc in knative_services(docs):
        (container,) = ksvc["spec"]["template"]["spec"]["containers"]
        function = function_of_binary(binary_of(container))
        assert function, f"Knative Service {ksvc['metadata']['name']} runs unknown binary {binary_of(container)}"
        by.setdefault(function, []).append(ksvc)
    for function in functions_in_code():
        assert len(by.get(function, [])) == 1, f"function {function} needs exactly one Knative Service"
    assert not objects(docs, "ScaledObject"), "Knative mode must not also carry ScaledObjects"
    assert not [
        d for d in objects(docs, "Deployment", "apps")
        if function_of_binary(binary_of(containers_of(d)[0]))
    ], "Knative mode must not also run function Deployments"


@pytest.mark.parametrize("function", sorted(functions_in_code()))
def test_knative_service_runs_the_function_over_http(function):
    docs = render("knative")
    binary = f"{BIN_DIR}/{functions_in_code()[function]}"
    (ksvc,) = [k for k in knative_services(docs) if binary_of(k["spec"]["template"]["spec"]["containers"][0]) == binary]
    where = f"Knative Service {ksvc['metadata']['name']}"
    assert ksvc["metadata"].get("labels", {}).get("networking.knative.dev/visibility") == "cluster-local", (
        f"{where}: functions must not be reachable from outside the cluster"
    )
    template = ksvc["spec"]["template"]
    spec = template["spec"]
    (container,) = spec["containers"]
    env = effective_env(container, docs)
    assert env.get("SURGE_FUNCTION__MODE") == "http", f"{where}: SURGE_FUNCTION__MODE=http"
    ports = container.get("ports") or []
    assert len(ports) == 1 and ports[0]["containerPort"] == 8080, f"{where}: serve on 8080 (Knative's PORT)"
    assert ports[0].get("name") in ("http1", None), f"{where}: port name must be http1 for CloudEvents over HTTP/1"
    assert addr_port(env["SURGE_FUNCTION__HTTP_ADDR"]) == 8080, f"{where}: SURGE_FUNCTION__HTTP_ADDR port"
    concurrency = env_int(env, "SURGE_FUNCTION__CONCURRENCY")
    assert spec.get("containerConcurrency") == concurrency, f"{where}: containerConcurrency = concurrency"
    assert env_int(env, "SURGE_DATABASE__MAX_CONNECTIONS") >= concurrency, f"{where}: pool below concurrency"
    timeout_s = env_int(env, "SURGE_FUNCTION__TIMEOUT_MS") / 1000
    assert spec.get("timeoutSeconds", 300) > timeout_s, (
        f"{where}: timeoutSeconds must exceed the job timeout ({timeout_s} s): the answer comes at the end"
    )
    annotations = template["metadata"]["annotations"]
    assert annotations.get("autoscaling.knative.dev/min-scale") == "0", f"{where}: min-scale 0"
    assert int(annotations.get("autoscaling.knative.dev/max-scale", "0")) >= 1, f"{where}: max-scale"
    target = float(annotations.get("autoscaling.knative.dev/target", "0"))
    assert 0 < target <= concurrency, f"{where}: target must be within (0, containerConcurrency]"
    probe = (container.get("readinessProbe") or {}).get("httpGet") or {}
    assert probe.get("path") == "/readyz", f"{where}: readiness /readyz"
    assert probe.get("port") in (None, 8080), f"{where}: Knative probes the serving port"


@pytest.mark.parametrize("function", sorted(functions_in_code()))
def test_knative_feed_matches_the_function(function):
    docs = render("knative")
    binary = f"{BIN_DIR}/{functions_in_code()[function]}"
    (ksvc,) = [k for k in knative_services(docs) if binary_of(k["spec"]["template"]["spec"]["containers"][0]) == binary]
    sink = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": ksvc["metadata"]["name"]}

    def targets_ksvc(ref: dict) -> bool:
        return {k: ref.get(k) for k in sink} == sink and ref.get("namespace") in (None, ksvc["metadata"]["namespace"])

    sources = [s for s in objects(docs, "RabbitmqSource") if targets_ksvc(s["spec"]["sink"].get("ref") or {})]
    triggers = [t for t in objects(docs, "Trigger", "eventing.knative.dev") if targets_ksvc(t["spec"]["subscriber"].get("ref") or {})]
    assert len(sources) + len(triggers) == 1, f"{function}: exactly one feed (source or trigger), found {len(sources)}+{len(triggers)}"
    if sources:
        (src,) = sources
        cfg = src["spec"]["rabbitmqResourcesConfig"]
        assert cfg.get("queueName") == queue_of(function, docs), f"{function}: source queue"
        assert cfg.get("predeclared") is True, (
            f"{function}: Surge declares the quorum queue (delivery limit, dead letters); "
            "the source must consume it, not declare its own"
        )
        assert "exchangeName" not in cfg, f"{function}: a predeclared source binds nothing"
        spec = ksvc["spec"]["template"]["spec"]
        max_scale = int(ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"])
        assert cfg.get("parallelism") == max_scale * spec["containerConcurrency"], (
            f"{function}: parallelism (deliveries in flight) must be max-scale x containerConcurrency, "
            "or the source caps throughput below what the Service can run"
        )
        secret = src["spec"]["rabbitmqClusterReference"]["connectionSecret"]["name"]
        keys = secret_keys(docs).get(secret, set())
        assert {"uri", "username", "password"} <= keys, f"{function}: connection secret {secret} keys {keys}"
    else:
        (trig,) = triggers
        assert trig["spec"]["filter"]["attributes"].get("type") == f"dev.surge.fn.{function}"


def test_knative_feeds_refer_only_to_existing_functions():
    docs = render("knative")
    names = {k["metadata"]["name"] for k in knative_services(docs)}
    prefix = broker_prefix(docs)
    for src in objects(docs, "RabbitmqSource"):
        assert src["spec"]["sink"]["ref"]["name"] in names, f"source {src['metadata']['name']}: sink missing"
        queue = src["spec"]["rabbitmqResourcesConfig"]["queueName"]
        assert queue.startswith(prefix + "fn.") and queue[len(prefix) + 3:] in functions_in_code(), (
            f"source {src['metadata']['name']} consumes {queue}, no such function"
        )


# =============================================================================================
# The gateway and the platform


@pytest.mark.parametrize("name", RENDERS)
def test_gateway_wiring(name):
    docs = render(name)
    deploy = one(docs, "Deployment", "surge-gateway", "apps")
    (c,) = containers_of(deploy)
    assert binary_of(c) == f"{BIN_DIR}/{gateway_binary()}" and c.get("args") == ["gateway"]
    env = effective_env(c, docs)
    http = addr_port(env["SURGE_HTTP__ADDR"])
    grpc = addr_port(env["SURGE_SCALER__ADDR"])
    metrics = addr_port(env["SURGE_HTTP__METRICS_ADDR"])
    assert container_port(c, "http") == http == 8080, f"{name}: http port"
    assert container_port(c, "grpc") == grpc == 9090, f"{name}: grpc port"
    assert container_port(c, "metrics") == metrics == METRICS_PORT, f"{name}: metrics port"
    functions = {f.strip() for f in env.get("SURGE_FUNCTIONS", "").split(",") if f.strip()}
    # `settings` is reserved: the gateway always serves it (for /settings) and refuses it here.
    served = set(functions_in_code()) - {"settings"}
    assert functions == served, (
        f"{name}: SURGE_FUNCTIONS {functions} differs from the functions in the code {served}"
    )
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path and container_port(c, get["port"]) == http, f"{name}: {probe}"

    svc = one(docs, "Service", "surge-gateway", "")
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), f"{name}: Service selects no gateway pod"
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["http"]["port"] == 80 and container_port(c, ports["http"]["targetPort"]) == http
    assert ports["grpc"]["port"] == 9090 and container_port(c, ports["grpc"]["targetPort"]) == grpc
    assert ports["metrics"]["port"] == METRICS_PORT and container_port(c, ports["metrics"]["targetPort"]) == metrics
    assert set(ports) == {"http", "grpc", "metrics"}, f"{name}: Service ports {sorted(ports)}"

    ing = one(docs, "Ingress", "surge-gateway", "networking.k8s.io")
    hosts = {r["host"] for r in ing["spec"]["rules"]}
    tls_hosts = {h for t in ing["spec"]["tls"] for h in t["hosts"]}
    assert hosts <= tls_hosts, f"{name}: every Ingress host must be TLS-terminated"
    assert {t["secretName"] for t in ing["spec"]["tls"]} == {"surge-tls"}
    for rule in ing["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "surge-gateway" and backend["port"].get("number") == 80, (
                f"{name}: the Ingress must reach the gateway's http port only"
            )
            assert backend["port"].get("name") in (None, "http"), f"{name}: the Ingress must not reach {backend['port']}"
    if name != "keda-dev":
        assert hosts == {"surge.example.com"}


@pytest.mark.parametrize("name", RENDERS)
def test_gateway_availability(name):
    docs = render(name)
    deploy = one(docs, "Deployment", "surge-gateway", "apps")
    hpa = one(docs, "HorizontalPodAutoscaler", "surge-gateway", "autoscaling")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "surge-gateway"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["averageUtilization"] == 70
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert deploy["spec"]["replicas"] == hpa["spec"]["minReplicas"], f"{name}: replicas and HPA minimum differ"
    pdb = one(docs, "PodDisruptionBudget", "surge-gateway", "policy")
    selector = pdb["spec"]["selector"]["matchLabels"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in selector.items()), f"{name}: the PDB selects no gateway pod"
    if isinstance(pdb["spec"].get("minAvailable"), int):
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], (
            f"{name}: minAvailable {pdb['spec']['minAvailable']} with {hpa['spec']['minReplicas']} "
            "replicas blocks every node drain"
        )
    if name == "keda-dev":
        assert deploy["spec"]["replicas"] == 1
    else:
        assert deploy["spec"]["replicas"] == 2 and hpa["spec"]["maxReplicas"] == 10
        assert pdb["spec"].get("minAvailable") == 1


@pytest.mark.parametrize("name", RENDERS)
def test_migration_job(name):
    docs = render(name)
    job = one(docs, "Job", "surge-migrate", "batch")
    (c,) = containers_of(job)
    assert binary_of(c) == f"{BIN_DIR}/{gateway_binary()}" and c.get("args") == ["migrate"]
    assert job["spec"].get("backoffLimit") is not None, f"{name}: backoffLimit"
    assert job["spec"].get("ttlSecondsAfterFinished") is not None, f"{name}: ttlSecondsAfterFinished"
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")
    assert "SURGE_DATABASE__URL" in effective_env(c, docs)


@pytest.mark.parametrize("name", RENDERS)
def test_migration_can_run_before_the_rollout(name):
    """docs/deploy.md applies `component in (namespace,config)`, then `component=migrate`, then
    everything: the first two steps must carry all the Job needs, and nothing else."""
    docs = render(name)
    component = lambda d: d["metadata"].get("labels", {}).get("app.kubernetes.io/component")  # noqa: E731
    job = one(docs, "Job", "surge-migrate", "batch")
    assert component(job) == "migrate"
    needed = [one(docs, "ServiceAccount", pod_spec(job)["serviceAccountName"], "")]
    for c in containers_of(job):
        needed += [one(docs, "ConfigMap", s["configMapRef"]["name"], "") for s in c.get("envFrom", []) if "configMapRef" in s]
    needed += objects(docs, "Namespace", "")
    for d in needed:
        assert component(d) in ("namespace", "config"), f"{name}: {d['kind']} {d['metadata']['name']} is not applied before the Job"
    early = [d for d in docs if component(d) in ("namespace", "config", "migrate")]
    assert {d["kind"] for d in early} <= {"Namespace", "ConfigMap", "Secret", "ServiceAccount", "Job"}, (
        f"{name}: the pre-rollout step would also apply {sorted({d['kind'] for d in early})}"
    )


@pytest.mark.parametrize("name", RENDERS)
def test_shared_settings_are_identical_everywhere(name):
    docs = render(name)
    processes = [(w, c) for w, c in surge_containers(docs) if w["kind"] != "Job"]
    assert len(processes) == 1 + len(functions_in_code()), f"{name}: gateway + one workload per function"
    for key in ("SURGE_JOBS__MAX_ATTEMPTS", "SURGE_BROKER__PREFIX", "SURGE_DATABASE__URL", "SURGE_BROKER__URL"):
        values = {effective_env(c, docs).get(key) for _, c in processes}
        assert len(values) == 1 and None not in values, f"{name}: {key} must be set and identical: {values}"
    attempts = effective_env(processes[0][1], docs)["SURGE_JOBS__MAX_ATTEMPTS"]
    assert attempts.isdigit() and int(attempts) >= 1
    for _, c in processes:
        assert effective_env(c, docs).get("SURGE_TELEMETRY__LOG_FORMAT") == "json"


@pytest.mark.parametrize("name", RENDERS)
def test_config_and_secret_references_resolve(name):
    docs = render(name)
    keys = secret_keys(docs)
    for w in workloads(docs):
        for c in containers_of(w):
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    one(docs, "ConfigMap", source["configMapRef"]["name"], "")
            for var in c.get("env", []):
                ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in keys.get(ref["name"], set()), (
                        f"{name}: {w['metadata']['name']} reads {ref['name']}/{ref['key']}, in no Secret or template"
                    )
    for ta in objects(docs, "TriggerAuthentication", "keda.sh"):
        for ref in ta["spec"].get("secretTargetRef", []):
            assert ref["key"] in keys.get(ref["name"], set()), f"{name}: {ta['metadata']['name']} reads {ref}"


def test_secret_templates_are_placeholders():
    templates = secret_templates()
    assert {s["metadata"]["name"] for s in templates} >= {"surge-secrets", "surge-rabbitmq-source"}
    for s in templates:
        data = secret_data(s)
        assert any(PLACEHOLDER in v for v in data.values()), f"{s['metadata']['name']}: no {PLACEHOLDER} marker"
        for key, value in data.items():
            m = re.match(r"^[a-z]+://[^:/@]+:([^@]*)@", value)
            if m:
                assert m.group(1) == PLACEHOLDER, f"{s['metadata']['name']}/{key}: real-looking password"
            if key == "password":
                assert value == PLACEHOLDER
    (surge,) = [s for s in templates if s["metadata"]["name"] == "surge-secrets"]
    data = secret_data(surge)
    assert set(data) == {
        "SURGE_DATABASE__URL",
        "SURGE_BROKER__URL",
        "rabbitmq-management-url",
        "SURGE_TENANTS",
        "SURGE_LIMITS__STORE_URL",
    }
    assert f'client_secret="{PLACEHOLDER}"' in data["SURGE_TENANTS"], "tenants: placeholder secret"
    assert data["SURGE_DATABASE__URL"].startswith("postgres")
    assert data["SURGE_BROKER__URL"].startswith("amqp")
    assert re.match(r"^https?://[^/]+:15672/", data["rabbitmq-management-url"]), (
        "KEDA's rabbitmq trigger with protocol http needs the management API URL (port 15672)"
    )
    (source,) = [s for s in templates if s["metadata"]["name"] == "surge-rabbitmq-source"]
    assert "://" not in secret_data(source)["uri"], "eventing-rabbitmq wants the bare host in `uri`"


@pytest.mark.parametrize("name", SECRETLESS_RENDERS)
def test_no_placeholder_credentials_are_applied(name):
    assert not objects(render(name), "Secret", ""), f"{name}: Secrets are created out of band"
    assert PLACEHOLDER not in rendered_text(name), f"{name}: a {PLACEHOLDER} value would be applied"


@pytest.mark.parametrize("name", RENDERS)
def test_postgres_connection_budget(name):
    """Every process at its maximum scale, each with a full pool, fits Postgres."""
    docs = render(name)
    budget = int(one(docs, "ConfigMap", "surge-config", "")["metadata"]["annotations"][BUDGET_ANNOTATION])
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"] for h in objects(docs, "HorizontalPodAutoscaler")}
    keda = {s["spec"]["scaleTargetRef"]["name"]: s["spec"]["maxReplicaCount"] for s in objects(docs, "ScaledObject")}
    total, parts = 0, []
    for w, c in surge_containers(docs):
        pool = int(effective_env(c, docs).get("SURGE_DATABASE__MAX_CONNECTIONS", "10"))
        wname = w["metadata"]["name"]
        if w["kind"] == "Service":  # Knative
            replicas = int(w["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"])
        elif w["kind"] == "Job":
            replicas = 1
        else:
            replicas = hpas.get(wname) or keda.get(wname) or w["spec"].get("replicas", 1)
        total += replicas * pool
        parts.append(f"{wname} {replicas}x{pool}")
    assert total <= budget, f"{name}: {total} connections ({', '.join(parts)}) exceed the budget {budget}"


def test_dev_is_smaller_than_prod():
    dev, prod = render("keda-dev"), render("keda-prod")
    for so in objects(prod, "ScaledObject"):
        dev_so = one(dev, "ScaledObject", so["metadata"]["name"], "keda.sh")
        assert dev_so["spec"]["maxReplicaCount"] < so["spec"]["maxReplicaCount"]
    for deploy in objects(prod, "Deployment"):
        dev_deploy = one(dev, "Deployment", deploy["metadata"]["name"], "apps")
        for r in ("cpu", "memory"):
            p = quantity(containers_of(deploy)[0]["resources"]["requests"][r])
            d = quantity(containers_of(dev_deploy)[0]["resources"]["requests"][r])
            assert d <= p, f"{deploy['metadata']['name']}: dev requests more {r} than prod"


# =============================================================================================
# Monitoring: scraping, alert rules, runbooks (keda/base/monitoring, docs/runbooks.md)

MONITORING = "monitoring.coreos.com"
RUNBOOKS = REPO / "docs" / "runbooks.md"
RUNBOOK_URL = "https://github.com/surge-dev/surge/blob/main/docs/runbooks.md#"
RULES_UNIT_TESTS = Path(__file__).with_name("rules_test.yaml")
# The name rules_test.yaml gives the rules file it loads (written from the PrometheusRule).
RULES_FILE_NAME = "surge-rules.yaml"
SEVERITIES = {"critical", "warning", "info"}

# The metric contract: every metric the gateway and the functions export, with its type
# (counters end in _total; a histogram also answers to _bucket, _count and _sum). Alert and
# recording rules may use only these, the names recorded by the rules themselves and
# EXTERNAL_METRICS.
SURGE_METRICS_CONTRACT: dict[str, str] = {
    # gateway (ServiceMonitor surge-gateway, port `metrics`)
    "surge_http_requests_total": "counter",  # {route, method, status}
    "surge_http_request_duration_seconds": "histogram",  # {route, method}
    "surge_jobs_accepted_total": "counter",  # {function}
    "surge_auth_rejections_total": "counter",  # {reason: missing|invalid|expired|forbidden}
    "surge_rate_limited_total": "counter",
    "surge_rate_limit_store_failures_total": "counter",
    "surge_ws_connections": "gauge",
    "surge_queue_messages": "gauge",  # {function, state: ready|unacked|dead}, from the management API
    "surge_queue_consumers": "gauge",  # {function}
    "surge_jobs_republished_total": "counter",  # {function, outcome: confirmed|failed}
    "surge_jobs_unconfirmed": "gauge",
    "surge_retention_removed_total": "counter",  # {what}
    "surge_job_partitions_ahead_seconds": "gauge",
    "surge_maintenance_failures_total": "counter",
    # gateway and functions
    "surge_group_commit_size": "histogram",  # {writer: jobs|claims|results}
    "surge_publish_confirm_seconds": "histogram",  # {target: jobs|events|reply}
    "surge_ready": "gauge",  # 1 ready, 0 not ready or draining
    # functions (PodMonitor surge-functions, port `http`, /metrics)
    "surge_jobs_in_flight": "gauge",  # {function}
    "surge_job_queue_wait_seconds": "histogram",  # {function}: created -> claimed
    "surge_job_handler_seconds": "histogram",  # {function, outcome: succeeded|failed|retry}
    "surge_job_completion_seconds": "histogram",  # {function}
    "surge_job_end_to_end_seconds": "histogram",  # {function, state: succeeded|failed|dead}
    "surge_jobs_finished_total": "counter",  # {function, state}
    "surge_job_redeliveries_total": "counter",  # {function}
    "surge_jobs_dead_total": "counter",  # {function}
}
# Not Surge's: Prometheus' own scrape health and kube-state-metrics.
EXTERNAL_METRICS = {
    "up",
    "kube_pod_container_status_restarts_total",
    "kube_pod_container_status_waiting_reason",
}
# PromQL functions, aggregations and keywords (anything else in an expression is a metric name;
# an unknown function fails the contract test rather than passing unchecked).
PROMQL_WORDS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes",
    "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "count_values", "day_of_month",
    "day_of_week", "delta", "deriv", "exp", "floor", "group", "histogram_quantile", "holt_winters",
    "hour", "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time", "ln",
    "log2", "log10", "max", "max_over_time", "min", "min_over_time", "minute", "month",
    "predict_linear", "present_over_time", "quantile", "quantile_over_time", "rate", "resets",
    "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev", "stddev_over_time", "stdvar",
    "stdvar_over_time", "sum", "sum_over_time", "time", "timestamp", "topk", "vector", "year",
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "offset", "inf", "nan",
}


def contract_series_names() -> set[str]:
    names = set()
    for metric, kind in SURGE_METRICS_CONTRACT.items():
        assert metric.startswith("surge_"), f"{metric}: Surge's metrics start with surge_"
        assert (kind == "counter") == metric.endswith("_total"), f"{metric}: only counters end in _total"
        names.add(metric)
        if kind == "histogram":
            names |= {f"{metric}_bucket", f"{metric}_count", f"{metric}_sum"}
    return names


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: label matchers, strings, grouping clauses and
    durations removed, PromQL's own words left out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set(re.findall(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)", text))
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def monitoring_objects(name: str) -> tuple[dict, dict, dict]:
    docs = render(name)
    return (
        one(docs, "ServiceMonitor", "surge-gateway", MONITORING),
        one(docs, "PodMonitor", "surge-functions", MONITORING),
        one(docs, "PrometheusRule", "surge", MONITORING),
    )


def rules_of(name: str) -> list[dict]:
    return [r for g in monitoring_objects(name)[2]["spec"]["groups"] for r in g["rules"]]


def alerts_of(name: str) -> list[dict]:
    return [r for r in rules_of(name) if "alert" in r]


def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}, f"unsupported selector {selector}"
    assert not selector.get("matchExpressions"), "keep monitor selectors to matchLabels"
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@functools.cache
def runbook_anchors() -> frozenset[str]:
    assert RUNBOOKS.is_file(), f"{RUNBOOKS} is missing"
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", RUNBOOKS.read_text(), flags=re.M)
    return frozenset(github_anchor(h) for h in headings)


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    if not (shutil.which(PROMTOOL) or Path(PROMTOOL).is_file()):
        pytest.fail(f"promtool not found ({PROMTOOL}): run scripts/setup.sh (Debian package prometheus)")
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def write_rules(name: str, directory: Path) -> Path:
    path = directory / RULES_FILE_NAME
    path.write_text(yaml.safe_dump(monitoring_objects(name)[2]["spec"], sort_keys=False))
    return path


@pytest.mark.parametrize("name", KEDA_RENDERS)
def test_monitoring_objects_live_with_the_workloads(name):
    docs = render(name)
    namespace = one(docs, "Deployment", "surge-gateway", "apps")["metadata"]["namespace"]
    for obj in monitoring_objects(name):
        where = f"{name}: {obj['kind']} {obj['metadata']['name']}"
        assert obj["metadata"]["namespace"] == namespace, f"{where}: namespace"
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "surge", f"{where}: part-of label"
        assert labels.get("app.kubernetes.io/component") == "monitoring", f"{where}: component label"
        ns_selector = obj["spec"].get("namespaceSelector")
        assert ns_selector in (None, {"matchNames": [namespace]}), (
            f"{where}: scrape only its own namespace, got {ns_selector}"
        )
    # Same alerts whatever the overlay.
    assert monitoring_objects(name)[2]["spec"] == monitoring_objects("keda-prod")[2]["spec"]


@pytest.mark.parametrize("name", KEDA_RENDERS)
def test_service_monitor_scrapes_the_gateway_metrics_port(name):
    docs = render(name)
    sm, _, _ = monitoring_objects(name)
    selected = [s for s in objects(docs, "Service", "") if selects(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
    assert [s["metadata"]["name"] for s in selected] == ["surge-gateway"], (
        f"{name}: ServiceMonitor selects {[s['metadata']['name'] for s in selected]}"
    )
    (svc,) = selected
    assert sm["spec"].get("jobLabel") in (None, "app.kubernetes.io/name")  # job="surge-gateway"
    deploy = one(docs, "Deployment", "surge-gateway", "apps")
    (c,) = containers_of(deploy)
    env = effective_env(c, docs)
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert sm["spec"]["endpoints"], f"{name}: no endpoint"
    for ep in sm["spec"]["endpoints"]:
        assert ep.get("port") in ports, f"{name}: ServiceMonitor port {ep.get('port')} is not a port of Service surge-gateway"
        target = container_port(c, ports[ep["port"]]["targetPort"])
        assert target == addr_port(env["SURGE_HTTP__METRICS_ADDR"]) == METRICS_PORT, (
            f"{name}: the scraped port {target} is not the gateway's metrics address"
        )
        assert target not in (addr_port(env["SURGE_HTTP__ADDR"]), addr_port(env["SURGE_SCALER__ADDR"]))
        assert ep.get("path", "/metrics") == "/metrics" and ep.get("scheme", "http") == "http"


@pytest.mark.parametrize("name", KEDA_RENDERS)
def test_pod_monitor_scrapes_every_function_pod(name):
    docs = render(name)
    _, pm, _ = monitoring_objects(name)
    selector = pm["spec"]["selector"]
    assert selector == {"matchLabels": {"app.kubernetes.io/component": "function"}}, f"{name}: PodMonitor selector"
    seen = set()
    for w in workloads(docs):
        labels = w["spec"]["template"]["metadata"].get("labels", {})
        (container,) = containers_of(w)
        function = function_of_binary(binary_of(container)) if container["image"].startswith(IMAGE) else None
        where = f"{name}: {w['kind']} {w['metadata']['name']}"
        if not function:
            assert not selects(selector, labels), f"{where} is no function but the PodMonitor selects it"
            continue
        seen.add(function)
        assert selects(selector, labels), f"{where}: the PodMonitor does not select its pods ({labels})"
        assert labels.get("surge.dev/function") == function, f"{where}: pod label surge.dev/function"
        env = effective_env(container, docs)
        for ep in pm["spec"]["podMetricsEndpoints"]:
            assert ep.get("port") == "http", f"{name}: the PodMonitor scrapes port `http`, got {ep.get('port')}"
            assert container_port(container, ep["port"]) == addr_port(env["SURGE_FUNCTION__HTTP_ADDR"]), (
                f"{where}: port http is not SURGE_FUNCTION__HTTP_ADDR"
            )
            assert ep.get("path") == "/metrics" and ep.get("scheme", "http") == "http", f"{name}: path /metrics"
    assert seen == set(functions_in_code()), f"{name}: function pods scraped {seen}"
    assert pm["spec"].get("podTargetLabels") == ["surge.dev/function"]


def test_alert_rules_pass_promtool_check(tmp_path):
    rules = write_rules("keda-prod", tmp_path)
    proc = run_promtool("check", "rules", rules.name, cwd=tmp_path)
    assert proc.returncode == 0, f"promtool check rules:\n{proc.stdout}\n{proc.stderr}"
    assert f"SUCCESS: {len(rules_of('keda-prod'))} rules found" in proc.stdout + proc.stderr


def test_alert_rules_unit_tests(tmp_path):
    """promtool test rules with tests/manifests/rules_test.yaml: every alert has a case in which
    it fires on synthetic series."""
    unit = yaml.safe_load(RULES_UNIT_TESTS.read_text())
    assert unit["rule_files"] == [RULES_FILE_NAME]
    firing = {
        case["alertname"]
        for test in unit["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {r["alert"] for r in alerts_of("keda-prod")}
    assert {"SurgeDeadLettersGrowing", "SurgeQueuedJobsNotConsumed"} <= firing
    assert alerts <= firing, f"alerts without a firing unit test: {sorted(alerts - firing)}"
    assert firing <= alerts, f"unit tests of unknown alerts: {sorted(firing - alerts)}"
    write_rules("keda-prod", tmp_path)
    shutil.copy(RULES_UNIT_TESTS, tmp_path / RULES_UNIT_TESTS.name)
    proc = run_promtool("test", "rules", RULES_UNIT_TESTS.name, cwd=tmp_path)
    assert proc.returncode == 0, f"promtool test rules:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("name", KEDA_RENDERS)
def test_every_alert_has_severity_annotations_and_a_runbook(name):
    alerts = alerts_of(name)
    assert alerts, f"{name}: no alert"
    names = {a["alert"] for a in alerts}
    assert names == {
        "SurgeDeadLettersGrowing",
        "SurgeQueuedJobsNotConsumed",
        "SurgeJobQueueWaitHigh",
        "SurgeLatencyBudgetBurn",
        "SurgeFunctionCrashLooping",
        "SurgeGatewayNotReady",
        "SurgeJobPartitionsRunningOut",
        "SurgeRateLimitStoreFailing",
    }, f"{name}: alerts {sorted(names)}"
    for a in alerts:
        where = f"{name}: alert {a['alert']}"
        assert a.get("labels", {}).get("severity") in SEVERITIES, f"{where}: severity label"
        annotations = a.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert (annotations.get(key) or "").strip(), f"{where}: {key} annotation"
        url = annotations["runbook_url"]
        assert url.startswith(RUNBOOK_URL), f"{where}: runbook_url {url} is not under {RUNBOOK_URL}"
        anchor = url[len(RUNBOOK_URL):]
        assert anchor == github_anchor(a["alert"]), f"{where}: anchor {anchor!r}, expected the alert's name"
        assert anchor in runbook_anchors(), f"{where}: docs/runbooks.md has no heading for #{anchor}"
    # Every runbook section names a real alert (no stale sections).
    sections = {h for h in runbook_anchors() if h.startswith("surge")}
    assert sections == {github_anchor(n) for n in names}, f"runbook sections {sorted(sections)}"


@pytest.mark.parametrize("name", KEDA_RENDERS)
def test_rules_use_only_contract_metrics(name):
    rules = rules_of(name)
    recorded = {r["record"] for r in rules if "record" in r}
    allowed = contract_series_names() | EXTERNAL_METRICS | recorded
    used: set[str] = set()
    for r in rules:
        names = promql_metric_names(r["expr"])
        assert names, f"{name}: {r.get('alert') or r.get('record')} selects no metric"
        unknown = names - allowed
        assert not unknown, (
            f"{name}: {r.get('alert') or r.get('record')} uses {sorted(unknown)}, not in "
            "SURGE_METRICS_CONTRACT (nor kube-state-metrics/up, nor recorded here)"
        )
        used |= names
    assert recorded <= used, f"{name}: recording rules nobody uses: {sorted(recorded - used)}"


def test_the_metric_name_extraction():
    """promql_metric_names is what test_rules_use_only_contract_metrics relies on."""
    expr = (
        'histogram_quantile(0.99, sum by (namespace, le) (rate(surge_x_bucket{le=~"5(\\\\.0)?", a="b"}[10m])))'
        ' > 60 and on (function) max without (pod) (surge:ratio_rate5m offset 5m) or absent(up{job="x"} == 1)'
    )
    assert promql_metric_names(expr) == {"surge_x_bucket", "surge:ratio_rate5m", "up"}
    assert promql_metric_names("sum(rate(not_surge_total[5m])) > 14.4 * 0.01") == {"not_surge_total"}
