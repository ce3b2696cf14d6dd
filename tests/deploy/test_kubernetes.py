"""The Kubernetes manifests (deploy/k8s), checked offline.

Base and each overlay render with ``kubectl kustomize``; every object validates against its
schema (built-in kinds with kubernetes-validate ``--strict``, the operators' custom resources
against ../shared/k8s-schemas); and the render holds together where no schema looks: probes,
resources, shutdown grace, security contexts, references between objects, network policies,
and the queues, ports, databases and settings the services' code declares.

Each generic check is a function from the rendered objects to a list of problems, one line per
problem naming the object; tests/deploy/fixtures/k8s-broken shows that each one catches what it
is for, and k8s-unrenderable that a kustomization which does not build fails with kustomize's word.
"""
from __future__ import annotations

import functools
import ipaddress
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from pydantic import SecretStr, TypeAdapter

from services.topology import service_classes, subscriptions
from shared.config import DEFAULT_HTTP_PORTS, ServiceSettings
from shared.mail import SmtpSettings
from shared.messaging.topology import handler_queue_name
from shared.webhooks.registry import Partner, PartnerRegistry

try:
    import kubernetes_validate
except ImportError:  # the check that needs it says so; the others still run
    kubernetes_validate = None

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TARGETS = ("base", "overlays/dev", "overlays/prod")
FIXTURES = Path(__file__).parent / "fixtures"
CRD_SCHEMA_DIR = ROOT.parent / "shared" / "k8s-schemas"
REQUIRED_SECRETS = K8S / "required-secrets.yaml"
NAMESPACE = "veikals"

# The oldest Kubernetes the manifests are for (the machine image's kubectl; preStop's sleep needs
# 1.30), and the newest the pinned kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.32", "1.37")

CRD_SCHEMAS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmq.com/rabbitmqcluster_v1beta1.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io/cluster_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh/scaledobject_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh/triggerauthentication_v1alpha1.json",
}
# Custom kinds with no schema in ../shared/k8s-schemas: check_scheduled_backups reads them by hand.
HAND_CHECKED = {("postgresql.cnpg.io/v1", "ScheduledBackup")}

# The Secrets the operators make, and their keys (CloudNativePG 1.30, pkg/specs/secrets.go;
# RabbitMQ Cluster Operator 2.22, internal/resource/default_user_secret.go).
CNPG_APP_SECRET_KEYS = {"username", "user", "password", "dbname", "host", "port", "pgpass", "uri",
                        "jdbc-uri", "fqdn-uri", "fqdn-jdbc-uri"}
RABBITMQ_DEFAULT_USER_KEYS = {"username", "password", "host", "port", "provider", "type",
                              "default_user.conf", "connection_string"}

Obj = dict[str, Any]


# --- rendering ------------------------------------------------------------------------------

class RenderError(Exception):
    """``kubectl kustomize`` refused the kustomization; the message is kustomize's."""


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is needed to render the manifests (`kubectl kustomize`, Kustomize v5): "
                    "install the `kubectl` package from the Kubernetes project's apt repository "
                    "(kubernetes.io: 'Install and Set Up kubectl on Linux'); Debian 12's own "
                    "kubernetes-client (1.20) is too old.")
    return found


@functools.cache
def render(path: Path) -> tuple[Obj, ...]:
    done = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RenderError(done.stderr.strip() or f"kubectl kustomize exited {done.returncode}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def rendered(target: str) -> tuple[Obj, ...]:
    try:
        return render(K8S / target)
    except RenderError as exc:
        pytest.fail(f"deploy/k8s/{target} does not render: {exc}")


def name_of(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def of_kind(objects, kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def by_name(objects, kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in of_kind(objects, kind)}


def pod_template(obj: Obj) -> Obj | None:
    if obj["kind"] in ("Deployment", "Job"):
        return obj["spec"]["template"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return None


def workloads(objects) -> Iterator[tuple[Obj, Obj]]:
    """Each workload with its pod template."""
    for obj in objects:
        template = pod_template(obj)
        if template is not None:
            yield obj, template


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


@functools.cache
def required_secrets() -> dict[str, dict[str, dict]]:
    """deploy/k8s/required-secrets.yaml: Secret name -> key -> what it says about the key."""
    listed = yaml.safe_load(REQUIRED_SECRETS.read_text())["secrets"]
    return {s["name"]: {key: about or {} for key, about in s["keys"].items()} for s in listed}


# --- schemas --------------------------------------------------------------------------------

def check_builtin_schemas(objects, version: str) -> list[str]:
    """Every object that is not an operator's custom resource, against Kubernetes ``version``'s
    schemas with unknown fields refused (kubernetes-validate --strict)."""
    problems = []
    for obj in objects:
        kind = (obj.get("apiVersion"), obj.get("kind"))
        if kind in CRD_SCHEMAS or kind in HAND_CHECKED:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(top)"
            problems.append(f"{name_of(obj)}: Kubernetes {exc.version} schema: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name_of(obj)}: no schema: {exc.message}")
    return problems


@functools.cache
def crd_validator(schema_file: str) -> jsonschema.protocols.Validator:
    schema = json.loads((CRD_SCHEMA_DIR / schema_file).read_text())
    return jsonschema.Draft202012Validator(schema)


def check_crd_schemas(objects) -> list[str]:
    """Every operator's custom resource against its CRD's schema in ../shared/k8s-schemas."""
    problems = []
    for obj in objects:
        schema_file = CRD_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
        if schema_file is None:
            continue
        for error in sorted(crd_validator(schema_file).iter_errors(obj), key=lambda e: list(e.path)):
            where = ".".join(str(p) for p in error.path) or "(top)"
            problems.append(f"{name_of(obj)}: {schema_file}: {where}: {error.message}")
    return problems


SCHEDULED_BACKUP_SPEC = {"schedule", "cluster", "immediate", "suspend", "backupOwnerReference", "target",
                         "method", "pluginConfiguration", "online", "onlineConfiguration"}


def check_scheduled_backups(objects) -> list[str]:
    """CloudNativePG's ScheduledBackup (no schema at hand): the fields of v1.30's CRD, a
    six-field schedule, a Cluster that exists and has the backup method the object asks for."""
    problems = []
    clusters = by_name(objects, "Cluster")
    for obj in of_kind(objects, "ScheduledBackup"):
        spec = obj.get("spec", {})
        for unknown in sorted(set(spec) - SCHEDULED_BACKUP_SPEC):
            problems.append(f"{name_of(obj)}: unknown field spec.{unknown}")
        if len(str(spec.get("schedule", "")).split()) != 6:
            problems.append(f"{name_of(obj)}: spec.schedule needs six fields, seconds first: {spec.get('schedule')!r}")
        if spec.get("backupOwnerReference", "none") not in ("none", "self", "cluster"):
            problems.append(f"{name_of(obj)}: spec.backupOwnerReference is none, self or cluster")
        method = spec.get("method", "barmanObjectStore")
        cluster = clusters.get(spec.get("cluster", {}).get("name"))
        if cluster is None:
            problems.append(f"{name_of(obj)}: spec.cluster names no Cluster in the render")
        elif method in ("barmanObjectStore", "volumeSnapshot") and method not in cluster["spec"].get("backup", {}):
            problems.append(f"{name_of(obj)}: Cluster/{cluster['metadata']['name']} has no spec.backup.{method}")
    return problems


# --- what schemas cannot see ----------------------------------------------------------------

def shutdown_grace_s(container: Obj) -> float:
    """The SHUTDOWN_GRACE_S the container's process uses: its variable, else the settings' default."""
    for name, entry in env_of(container).items():
        if name.startswith("VEIKALS_") and name.endswith("_SHUTDOWN_GRACE_S") and "value" in entry:
            return float(entry["value"])
    return ServiceSettings.model_fields["shutdown_grace_s"].default


def check_pods(objects) -> list[str]:
    """Probes (Deployments), requests and limits, termination grace, and a locked-down security
    context with a writable /tmp, for every container of every workload."""
    problems = []
    for obj, template in workloads(objects):
        pod = template["spec"]
        pod_security = pod.get("securityContext", {})
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            where = f"{name_of(obj)}: container {container['name']}"
            security = {**pod_security, **container.get("securityContext", {})}
            if obj["kind"] == "Deployment":
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in container:
                        problems.append(f"{where} has no {probe}")
                grace = pod.get("terminationGracePeriodSeconds", 30)
                pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
                needed = shutdown_grace_s(container) + pre_stop
                if grace <= needed:
                    problems.append(f"{where}: terminationGracePeriodSeconds {grace} is not longer than "
                                    f"SHUTDOWN_GRACE_S {shutdown_grace_s(container):g} + preStop {pre_stop} s")
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(part, {}))
                if missing:
                    problems.append(f"{where}: resources.{part} lacks {', '.join(sorted(missing))}")
            if security.get("runAsNonRoot") is not True or security.get("runAsUser") == 0:
                problems.append(f"{where}: does not run as non-root (runAsNonRoot true, runAsUser not 0)")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in security.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
                problems.append(f"{where}: no emptyDir at /tmp (the root filesystem is read-only)")
    return problems


@dataclass
class SecretRef:
    holder: str
    secret: str
    key: str | None  # None: the whole Secret (envFrom)


def secret_refs(objects) -> list[SecretRef]:
    """Every reference to a Secret: pods' env, envFrom and volumes, KEDA's
    TriggerAuthentications, Ingress TLS, and CloudNativePG's backup credentials."""
    refs = []
    for obj, template in workloads(objects):
        pod = template["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    refs.append(SecretRef(name_of(obj), ref["name"], ref["key"]))
            for source in container.get("envFrom", []):
                ref = source.get("secretRef")
                if ref and not ref.get("optional"):
                    refs.append(SecretRef(name_of(obj), ref["name"], None))
        for volume in pod.get("volumes", []):
            ref = volume.get("secret")
            if ref and not ref.get("optional"):
                keys = [item["key"] for item in ref.get("items", [])] or [None]
                refs += [SecretRef(name_of(obj), ref["secretName"], key) for key in keys]
    for obj in of_kind(objects, "TriggerAuthentication"):
        for ref in obj["spec"].get("secretTargetRef", []):
            refs.append(SecretRef(name_of(obj), ref["name"], ref["key"]))
    for obj in of_kind(objects, "Ingress"):
        for tls in obj["spec"].get("tls", []):
            refs += [SecretRef(name_of(obj), tls["secretName"], key) for key in ("tls.crt", "tls.key")]
    for obj in of_kind(objects, "Cluster"):
        def walk(node):
            if isinstance(node, dict):
                if set(node) == {"name", "key"}:
                    refs.append(SecretRef(name_of(obj), node["name"], node["key"]))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)
        walk(obj["spec"].get("backup", {}))
    return refs


def declared_secrets(objects, required: dict[str, dict]) -> dict[str, set[str]]:
    """Secret name -> keys: Secrets in the render, those the operators make for the render's
    clusters, and the ones deploy/k8s/required-secrets.yaml asks whoever deploys to create."""
    declared = {name: set(keys) for name, keys in required.items()}
    for obj in of_kind(objects, "Secret"):
        declared[obj["metadata"]["name"]] = set(obj.get("data", {})) | set(obj.get("stringData", {}))
    for obj in of_kind(objects, "Cluster"):
        declared[f"{obj['metadata']['name']}-app"] = CNPG_APP_SECRET_KEYS
    for obj in of_kind(objects, "RabbitmqCluster"):
        declared[f"{obj['metadata']['name']}-default-user"] = RABBITMQ_DEFAULT_USER_KEYS
    return declared


def selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) applied to ``labels``."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if not {"In": lambda: labels.get(key) in values,
                "NotIn": lambda: labels.get(key) not in values,
                "Exists": lambda: key in labels,
                "DoesNotExist": lambda: key not in labels}[operator]():
            return False
    return True


def check_references(objects, required: dict[str, dict]) -> list[str]:
    """Names that must meet: Secrets and their keys, ConfigMaps, ScaledObject targets and their
    TriggerAuthentications, Service and PodDisruptionBudget selectors, Ingress backends."""
    problems = []
    declared = declared_secrets(objects, required)
    for ref in secret_refs(objects):
        if ref.secret not in declared:
            problems.append(f"{ref.holder}: Secret {ref.secret} is neither made by an operator nor listed "
                            f"in deploy/k8s/required-secrets.yaml")
        elif ref.key is not None and ref.key not in declared[ref.secret]:
            problems.append(f"{ref.holder}: Secret {ref.secret} has no key {ref.key}")

    config_maps = {name: set(cm.get("data", {})) for name, cm in by_name(objects, "ConfigMap").items()}
    for obj, template in workloads(objects):
        pod = template["spec"]
        wanted = [(v["configMap"]["name"], None) for v in pod.get("volumes", []) if "configMap" in v]
        for container in pod["containers"]:
            wanted += [(s["configMapRef"]["name"], None) for s in container.get("envFrom", []) if "configMapRef" in s]
            wanted += [(e["valueFrom"]["configMapKeyRef"]["name"], e["valueFrom"]["configMapKeyRef"]["key"])
                       for e in container.get("env", []) if "configMapKeyRef" in e.get("valueFrom", {})]
        for name, key in wanted:
            if name not in config_maps:
                problems.append(f"{name_of(obj)}: ConfigMap {name} is not in the render")
            elif key is not None and key not in config_maps[name]:
                problems.append(f"{name_of(obj)}: ConfigMap {name} has no key {key}")

    deployments = by_name(objects, "Deployment")
    authentications = by_name(objects, "TriggerAuthentication")
    for obj in of_kind(objects, "ScaledObject"):
        target = obj["spec"]["scaleTargetRef"]
        if target.get("kind", "Deployment") != "Deployment" or target["name"] not in deployments:
            problems.append(f"{name_of(obj)}: scaleTargetRef names {target.get('kind', 'Deployment')} "
                            f"{target['name']}, which is not in the render")
        for trigger in obj["spec"]["triggers"]:
            auth = trigger.get("authenticationRef")
            if auth and auth.get("kind", "TriggerAuthentication") == "TriggerAuthentication" \
                    and auth["name"] not in authentications:
                problems.append(f"{name_of(obj)}: authenticationRef names TriggerAuthentication "
                                f"{auth['name']}, which is not in the render")

    def pods_selected(selector: Obj) -> list[Obj]:
        return [d for d in deployments.values()
                if selects(selector, d["spec"]["template"]["metadata"].get("labels", {}))]

    services = by_name(objects, "Service")
    for name, service in services.items():
        selected = pods_selected({"matchLabels": service["spec"].get("selector", {})})
        if not selected:
            problems.append(f"Service/{name}: its selector matches no Deployment's pods")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for deployment in selected:
                containers = deployment["spec"]["template"]["spec"]["containers"]
                offered = [(p.get("name"), p["containerPort"]) for c in containers for p in c.get("ports", [])]
                if not any(target in pair for pair in offered):
                    problems.append(f"Service/{name}: targetPort {target} is no port of Deployment/"
                                    f"{deployment['metadata']['name']}")
    for obj in of_kind(objects, "PodDisruptionBudget"):
        if not pods_selected(obj["spec"]["selector"]):
            problems.append(f"{name_of(obj)}: its selector matches no Deployment's pods")
    for obj in of_kind(objects, "Ingress"):
        for rule in obj["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                service = services.get(backend["name"])
                port = backend["port"].get("name", backend["port"].get("number"))
                if service is None:
                    problems.append(f"{name_of(obj)}: {rule.get('host')}{path['path']} goes to Service "
                                    f"{backend['name']}, which is not in the render")
                elif not any(port in (p.get("name"), p["port"]) for p in service["spec"]["ports"]):
                    problems.append(f"{name_of(obj)}: Service/{backend['name']} has no port {port}")
    return problems


def check_network_policies(objects) -> list[str]:
    """A default deny for the namespace, and a policy of its own for every Deployment's pods
    (the catch-all ``podSelector: {}`` ones do not count)."""
    problems = []
    policies = of_kind(objects, "NetworkPolicy")
    if not any(p["spec"]["podSelector"] == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies):
        problems.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    for deployment in of_kind(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"].get("labels", {})
        if not any(p["spec"]["podSelector"] and selects(p["spec"]["podSelector"], labels) for p in policies):
            problems.append(f"{name_of(deployment)}: no NetworkPolicy selects its pods")
    return problems


def check_databases(objects) -> list[str]:
    """CloudNativePG refuses a Cluster without storage.size at admission; its schema allows it."""
    return [f"{name_of(c)}: spec.storage.size is missing (CloudNativePG refuses the Cluster without it)"
            for c in of_kind(objects, "Cluster") if not c["spec"].get("storage", {}).get("size")]


def all_problems(objects, required: dict[str, dict]) -> list[str]:
    """The checks that need neither the Kubernetes nor the operators' schemas."""
    return (check_pods(objects) + check_references(objects, required) + check_network_policies(objects)
            + check_databases(objects) + check_scheduled_backups(objects))


def report(problems: list[str]) -> str:
    return "\n".join(problems)


# --- the repository's manifests -------------------------------------------------------------

@pytest.fixture(params=TARGETS)
def target(request) -> str:
    return request.param


@pytest.fixture(params=("overlays/dev", "overlays/prod"))
def overlay(request) -> str:
    return request.param


def test_every_target_renders(target):
    assert rendered(target), f"deploy/k8s/{target} renders nothing"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_kinds_validate_strictly(target, version):
    if kubernetes_validate is None:
        pytest.fail("kubernetes-validate is not installed: pip install -e '.[test]'")
    assert not (problems := check_builtin_schemas(rendered(target), version)), report(problems)


def test_custom_resources_validate_against_the_operators_schemas(target):
    if not CRD_SCHEMA_DIR.is_dir():
        pytest.skip(f"{CRD_SCHEMA_DIR} is absent (the operators' CRD schemas are kept beside the "
                    "project, not in it): custom resources unchecked; built-in kinds are checked above")
    objects = rendered(target)
    assert not (problems := check_crd_schemas(objects)), report(problems)
    known = set(CRD_SCHEMAS) | HAND_CHECKED
    custom = {(o["apiVersion"], o["kind"]) for o in objects if "." in o["apiVersion"].split("/")[0]
              and not o["apiVersion"].split("/")[0].endswith(".k8s.io")}
    assert custom <= known, f"custom kinds without a schema or a hand check: {sorted(custom - known)}"


def test_the_render_holds_together(target):
    assert not (problems := all_problems(rendered(target), required_secrets())), report(problems)


def test_each_service_runs_as_its_code_declares(target):
    """One image; the command, port, migration Job and (where the service has one) retention
    sweep of every service the code lists; the topology Job."""
    objects = rendered(target)
    deployments, jobs, cron_jobs = by_name(objects, "Deployment"), by_name(objects, "Job"), by_name(objects, "CronJob")
    images = {c["image"] for _, t in workloads(objects) for c in t["spec"]["containers"]}
    assert len(images) == 1, f"one image for every workload, not {sorted(images)}"
    for cls in service_classes():
        name, port, prefix = cls.name, DEFAULT_HTTP_PORTS[cls.name], f"VEIKALS_{cls.name.upper()}_"
        assert name in deployments, f"no Deployment for the {name} service"
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert [p["containerPort"] for p in container["ports"]] == [port]
        env = env_of(container)
        assert env[f"{prefix}HTTP_HOST"]["value"] == "0.0.0.0"
        assert env[f"{prefix}HTTP_PORT"]["value"] == str(port)
        assert f"{prefix}SHUTDOWN_GRACE_S" in env, "the grace the pod's termination period is sized for"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert jobs[f"{name}-migrate"]["spec"]["template"]["spec"]["containers"][0]["command"] \
            == ["veikals", "migrate", name]
        sweep = cron_jobs.get(f"{name}-sweep")
        if hasattr(cls, "run_retention_sweep"):
            assert sweep is not None, f"{name} has a retention sweep and no CronJob runs it"
            assert sweep["spec"]["concurrencyPolicy"] == "Forbid"
            assert pod_template(sweep)["spec"]["containers"][0]["command"] == ["veikals", "sweep", name]
        else:
            assert sweep is None, f"{name} has no retention sweep to run"
    assert jobs["topology"]["spec"]["template"]["spec"]["containers"][0]["command"] == ["veikals", "topology"]
    for job in jobs.values():
        assert "backoffLimit" in job["spec"] and "ttlSecondsAfterFinished" in job["spec"], name_of(job)


def test_scaled_objects_watch_the_queues_each_service_consumes(target):
    """Its RPC queue and one trigger per event handler, named as shared.messaging.topology names them."""
    scaled = by_name(rendered(target), "ScaledObject")
    for cls in service_classes():
        wanted = {f"rpc-{cls.name}"} | {handler_queue_name(s.source, s.event_type, s.service, s.method)
                                        for s in subscriptions() if s.service == cls.name}
        triggers = scaled[cls.name]["spec"]["triggers"]
        assert {t["metadata"]["queueName"] for t in triggers} == wanted, cls.name
        for trigger in triggers:
            assert trigger["type"] == "rabbitmq" and trigger["authenticationRef"]["name"]
            assert trigger["metadata"]["protocol"] == "amqp" and trigger["metadata"]["mode"] == "QueueLength"
            assert trigger["metadata"]["value"].isdigit(), "KEDA reads the target depth from a string"


def test_each_service_has_a_database_cluster_of_its_own(target):
    objects = rendered(target)
    clusters, deployments, jobs = by_name(objects, "Cluster"), by_name(objects, "Deployment"), by_name(objects, "Job")
    used = set()
    for cls in service_classes():
        variable = f"VEIKALS_{cls.name.upper()}_DATABASE_URL"
        for workload in (deployments[cls.name], jobs[f"{cls.name}-migrate"]):
            ref = env_of(pod_template(workload)["spec"]["containers"][0])[variable]["valueFrom"]["secretKeyRef"]
            cluster = clusters[ref["name"].removesuffix("-app")]
            assert ref["key"] == "uri", "the DSN with the database's name"
            assert cluster["spec"]["bootstrap"]["initdb"]["database"] == f"veikals_{cls.name}"
        used.add(cluster["metadata"]["name"])
    assert len(used) == len(service_classes()), "one cluster per service"


def test_settings_come_from_variables_the_services_read(target):
    """Every VEIKALS_<SERVICE>_* variable set is a setting of that service, and every secret
    setting (SecretStr) of every service comes from a Secret."""
    objects = rendered(target)
    classes = {cls.name.upper(): cls.settings_class for cls in service_classes()}
    set_by = {}
    for config_map in of_kind(objects, "ConfigMap"):
        set_by |= {k: name_of(config_map) for k in config_map.get("data", {}) if k.startswith("VEIKALS_")}
    for obj, template in workloads(objects):
        set_by |= {e["name"]: name_of(obj) for c in template["spec"]["containers"] for e in c.get("env", [])}
    for variable, where in set_by.items():
        if variable == "VEIKALS_PARTNERS_FILE":
            continue
        service, _, setting = variable.removeprefix("VEIKALS_").partition("_")
        assert service in classes and setting.lower() in classes[service].model_fields, \
            f"{where} sets {variable}, which no service reads"
    for cls in service_classes():
        [container] = by_name(objects, "Deployment")[cls.name]["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        for setting, info in cls.settings_class.model_fields.items():
            if info.annotation is SecretStr:
                variable = f"VEIKALS_{cls.name.upper()}_{setting.upper()}"
                assert "secretKeyRef" in env.get(variable, {}).get("valueFrom", {}), \
                    f"{variable} is secret and comes from no Secret"


def test_the_partner_registry_is_mounted_valid_and_its_secrets_listed(target):
    """Every service reads one registry, at VEIKALS_PARTNERS_FILE, that the code accepts; its
    endpoints are what the network policies let out; its secret variables are in veikals-partners."""
    objects = rendered(target)
    config_maps = by_name(objects, "ConfigMap")
    partners_secret = required_secrets()["veikals-partners"]
    registries = set()
    deployments = by_name(objects, "Deployment")
    for deployment in (deployments[cls.name] for cls in service_classes()):
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        settings = next(config_maps[s["configMapRef"]["name"]] for s in container["envFrom"] if "configMapRef" in s)
        path = Path(settings["data"]["VEIKALS_PARTNERS_FILE"])
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        registries.add(config_maps[volume["configMap"]["name"]]["data"][path.name])
        assert any(s.get("secretRef", {}).get("name") == "veikals-partners" for s in container["envFrom"]), \
            f"{name_of(deployment)} does not read the partners' secrets"
    [registry_text] = registries
    registry = json.loads(registry_text)
    for partner in PartnerRegistry(TypeAdapter(list[Partner]).validate_python(registry["partners"])):
        assert partner.endpoint.scheme == "https" and partner.endpoint.port == 443, \
            f"{partner.name}: the network policies let webhooks out on HTTPS (443) only"
        current, *previous = partner.secret_env
        assert current in partners_secret and not partners_secret[current].get("optional"), \
            f"{partner.name}'s secret {current} is not a required key of veikals-partners"
        for name in previous:
            assert partners_secret.get(name, {}).get("optional"), f"{name} should be listed as optional"
    named = {v for p in registry["partners"] for v in p["secret_env"]}
    assert set(partners_secret) == named, "veikals-partners lists exactly the registry's variables"


def edge_routes(objects) -> dict[str, str]:
    """The edge's --service list: service name -> URL."""
    [container] = by_name(objects, "Deployment")["edge"]["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["python", "-m", "web.edge"], command
    routes = [value for option, value in zip(command, command[1:]) if option == "--service"]
    named = dict(route.split("=", 1) for route in routes)
    assert len(named) == len(routes), f"a service named twice: {routes}"
    return named


def test_public_urls_are_the_ingress_hosts_of_their_services(target):
    """Links in mail (PUBLIC_URL) reach the service that made them, through the ingress: on the
    service's own host, or on the shop's, whose edge serves the pages and forwards to it."""
    objects = rendered(target)
    forwarded_by_edge = set(edge_routes(objects))
    routes = {rule["host"]: {p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
              for ingress in of_kind(objects, "Ingress") for rule in ingress["spec"]["rules"]}
    hosts = {host for ingress in of_kind(objects, "Ingress") for tls in ingress["spec"].get("tls", [])
             for host in tls["hosts"]}
    public_urls = {k: v for cm in of_kind(objects, "ConfigMap") for k, v in cm.get("data", {}).items()
                   if k.endswith("_PUBLIC_URL")}
    assert public_urls, "no PUBLIC_URL set"
    for variable, url in public_urls.items():
        service = variable.removeprefix("VEIKALS_").split("_")[0].lower()
        host = urlsplit(url).hostname
        assert urlsplit(url).scheme == "https" and host in hosts, f"{variable}={url}: not a TLS host of the Ingress"
        assert routes.get(host) == {service} or (routes.get(host) == {"edge"} and service in forwarded_by_edge), \
            f"{variable}={url}: the Ingress sends {host} to {routes.get(host)}"


def test_the_shop_host_goes_to_the_edge_and_the_edge_to_every_service(target):
    """The shop's host (SHOP_URL: where mailed links and the PSP send a customer) is a TLS host of
    the Ingress sent whole to the edge, and the edge forwards to every service the Ingress has a
    host for, at that Service's port: the one origin mirrors the hosts, so neither drifts."""
    objects = rendered(target)
    [ingress] = of_kind(objects, "Ingress")
    rules = {rule["host"]: rule["http"]["paths"] for rule in ingress["spec"]["rules"]}
    tls_hosts = {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    config = {k: v for cm in of_kind(objects, "ConfigMap") for k, v in cm.get("data", {}).items()}
    shop_urls = {config[f"VEIKALS_{cls.name.upper()}_SHOP_URL"] for cls in service_classes()
                 if f"VEIKALS_{cls.name.upper()}_SHOP_URL" in config}
    assert len(shop_urls) == 1, f"one shop origin, not {sorted(shop_urls)}"
    shop = urlsplit(shop_urls.pop())
    assert shop.scheme == "https" and shop.hostname in tls_hosts, f"{shop.geturl()}: not a TLS host of the Ingress"
    assert [(p["path"], p["pathType"], p["backend"]["service"]["name"]) for p in rules.get(shop.hostname, [])] \
        == [("/", "Prefix", "edge")], f"{shop.hostname} should send everything to the edge"

    services = by_name(objects, "Service")
    by_host = {host: {p["backend"]["service"]["name"] for p in paths} for host, paths in rules.items()}
    behind_hosts = {name for host, names in by_host.items() if host != shop.hostname for name in names}
    routes = edge_routes(objects)
    assert set(routes) == {cls.name for cls in service_classes()} == behind_hosts, \
        f"the edge forwards to {sorted(routes)}, the Ingress has hosts for {sorted(behind_hosts)}"
    for name, url in routes.items():
        parts = urlsplit(url)
        assert parts.scheme == "http" and parts.hostname == name and not parts.path.strip("/"), f"{name}={url}"
        assert parts.port in {p["port"] for p in services[name]["spec"]["ports"]}, f"{name}={url}: no such port"
    # Accounts takes the client's address from the last X-Forwarded-For entry: the edge must not
    # append the ingress controller's after it, or every customer would share its sign-in limits.
    [edge] = by_name(objects, "Deployment")["edge"]["spec"]["template"]["spec"]["containers"]
    trusted = config.get("VEIKALS_ACCOUNTS_TRUST_FORWARDED_FOR") == "true"
    assert ("--trust-forwarded-for" in edge["command"]) == trusted, \
        "the edge's --trust-forwarded-for and accounts' TRUST_FORWARDED_FOR go together"


def test_every_listed_secret_is_used():
    """required-secrets.yaml names nothing that no overlay reads (a stale entry misleads)."""
    refs = [ref for target in TARGETS for ref in secret_refs(rendered(target))]
    for name, keys in required_secrets().items():
        whole = any(r.secret == name and r.key is None for r in refs)
        for key in keys:
            assert whole or any(r.secret == name and r.key == key for r in refs), \
                f"required-secrets.yaml lists {name}/{key}, which nothing reads"


def test_overlays_differ_as_intended():
    dev, prod = rendered("overlays/dev"), rendered("overlays/prod")
    [dev_broker], [prod_broker] = of_kind(dev, "RabbitmqCluster"), of_kind(prod, "RabbitmqCluster")
    assert dev_broker["spec"]["replicas"] == 1 and prod_broker["spec"]["replicas"] == 3
    for cluster in of_kind(dev, "Cluster"):
        assert cluster["spec"]["instances"] == 1 and "backup" not in cluster["spec"], name_of(cluster)
    backed_up = {b["spec"]["cluster"]["name"] for b in of_kind(prod, "ScheduledBackup")}
    for cluster in of_kind(prod, "Cluster"):
        assert cluster["spec"]["instances"] == 3, name_of(cluster)
        assert cluster["spec"]["backup"]["retentionPolicy"], name_of(cluster)
        assert cluster["metadata"]["name"] in backed_up, f"{name_of(cluster)}: no base backups are scheduled"
    for scaled in of_kind(dev, "ScaledObject"):
        assert scaled["spec"]["minReplicaCount"] == 1, name_of(scaled)
    for scaled in of_kind(prod, "ScaledObject"):
        assert scaled["spec"]["minReplicaCount"] >= 2, name_of(scaled)
    pdbs = {p["metadata"]["name"] for p in of_kind(prod, "PodDisruptionBudget")}
    assert pdbs >= {d["metadata"]["name"] for d in of_kind(prod, "Deployment")}
    tags = {t: {c["image"] for _, p in workloads(rendered(t)) for c in p["spec"]["containers"]}
            for t in ("overlays/dev", "overlays/prod")}
    assert tags["overlays/dev"] == {"veikals:dev"}
    assert not any(i.endswith((":latest", ":dev")) for i in tags["overlays/prod"]), tags["overlays/prod"]


# --- who may talk to whom -------------------------------------------------------------------

@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod (namespace and labels) or an address outside the cluster."""
    namespace: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    ip: str | None = None

    @classmethod
    def pod(cls, namespace: str, labels: dict[str, str]) -> "Peer":
        return cls(namespace, tuple(sorted(labels.items())))

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def pod_peer(template: Obj) -> Peer:
    return Peer(NAMESPACE, tuple(sorted(template["metadata"].get("labels", {}).items())))


def _peer_matches(rule_peer: Obj, peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        if peer.ip is None:
            return False
        address = ipaddress.ip_address(peer.ip)
        block = rule_peer["ipBlock"]
        network = ipaddress.ip_network(block["cidr"])
        return (address.version == network.version and address in network
                and not any(address in ipaddress.ip_network(e) for e in block.get("except", [])
                            if ipaddress.ip_network(e).version == address.version))
    if peer.ip is not None:
        return False
    namespace_selector = rule_peer.get("namespaceSelector")
    if namespace_selector is not None:
        in_namespace = selects(namespace_selector, {"kubernetes.io/metadata.name": peer.namespace})
    else:
        in_namespace = peer.namespace == policy_namespace
    pod_selector = rule_peer.get("podSelector")
    return in_namespace and (pod_selector is None or selects(pod_selector, peer.label_map))


def _port_matches(rule_ports: list[Obj] | None, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for rule_port in rule_ports:
        number = rule_port.get("port")
        if number is not None and not isinstance(number, int):
            raise ValueError(f"named port {number!r} in a NetworkPolicy: use numbers (the check reads them)")
        if rule_port.get("protocol", "TCP") == protocol and (
                number is None or number == port or number <= port <= rule_port.get("endPort", number)):
            return True
    return False


def _policy_types(policy: Obj) -> set[str]:
    spec = policy["spec"]
    return set(spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else [])))


def allowed(policies: list[Obj], source: Peer, destination: Peer, port: int, protocol: str = "TCP") -> bool:
    """Whether NetworkPolicy semantics let ``source`` open ``port`` on ``destination``: egress
    by the policies of the source's namespace, ingress by those of the destination's (only
    Veikals' own namespace has policies here; others are taken as open)."""
    def side(direction: str, subject: Peer, other: Peer) -> bool:
        if subject.ip is not None or subject.namespace != NAMESPACE:
            return True
        governing = [p for p in policies if direction in _policy_types(p)
                     and selects(p["spec"]["podSelector"], subject.label_map)]
        if not governing:
            return True
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        return any((not rule.get(peers_key) or any(_peer_matches(p, other, NAMESPACE) for p in rule[peers_key]))
                   and _port_matches(rule.get("ports"), port, protocol)
                   for policy in governing for rule in policy["spec"].get(key, []))
    return side("Egress", source, destination) and side("Ingress", destination, source)


INGRESS_CONTROLLER = Peer.pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
KEDA = Peer.pod("keda", {"app": "keda-operator"})
CNPG_OPERATOR = Peer.pod("cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"})
DNS = Peer.pod("kube-system", {"k8s-app": "kube-dns"})
# The labels the RabbitMQ Cluster Operator gives the broker's pods.
RABBITMQ = Peer.pod(NAMESPACE, {"app.kubernetes.io/name": "rabbitmq", "app.kubernetes.io/component": "rabbitmq",
                                "app.kubernetes.io/part-of": "rabbitmq"})
PUBLIC = Peer(ip="203.0.113.10")            # a documentation address, standing for the internet
PUBLIC_V6 = Peer(ip="2001:db8::10")
PRIVATE = Peer(ip="10.20.30.40")
CLOUD_METADATA = Peer(ip="169.254.169.254")


def database(cluster: str) -> Peer:
    """A pod of a CloudNativePG cluster, labelled as the operator labels them."""
    return Peer.pod(NAMESPACE, {"cnpg.io/cluster": cluster, "cnpg.io/podRole": "instance"})


def test_network_policies_allow_what_the_suite_needs_and_nothing_else(overlay):
    objects = rendered(overlay)
    policies = of_kind(objects, "NetworkPolicy")
    deployments, jobs, cron_jobs = by_name(objects, "Deployment"), by_name(objects, "Job"), by_name(objects, "CronJob")
    clusters = {c.name: f"pg-{c.name}" for c in service_classes()}
    servers = {name: pod_peer(deployments[name]["spec"]["template"]) for name in clusters}
    for cls in service_classes():
        name, server, port = cls.name, servers[cls.name], DEFAULT_HTTP_PORTS[cls.name]
        sends_mail = issubclass(cls.settings_class, SmtpSettings)
        wanted = {
            "its database": (server, database(clusters[name]), 5432, True),
            "RabbitMQ": (server, RABBITMQ, 5672, True),
            "the JWKS on accounts": (server, servers["accounts"], 8101, True),
            "DNS over UDP": (server, DNS, 53, True),
            "webhooks to the internet": (server, PUBLIC, 443, True),
            "webhooks over IPv6": (server, PUBLIC_V6, 443, True),
            "mail submission": (server, PUBLIC, 587, sends_mail),
            "private addresses": (server, PRIVATE, 443, False),
            "the cloud's metadata service": (server, CLOUD_METADATA, 80, False),
            "plain HTTP out": (server, PUBLIC, 80, False),
            "the ingress controller in": (INGRESS_CONTROLLER, server, port, True),
            "its migration Job to its database": (pod_peer(jobs[f"{name}-migrate"]["spec"]["template"]),
                                                  database(clusters[name]), 5432, True),
        }
        for other in clusters:
            if other != name:
                wanted[f"{other}'s database"] = (server, database(clusters[other]), 5432, False)
                wanted[f"{other}'s HTTP port"] = (servers[other], server, port, name == "accounts")
        if f"{name}-sweep" in cron_jobs:
            wanted["its sweep to RabbitMQ"] = (pod_peer(pod_template(cron_jobs[f"{name}-sweep"])), RABBITMQ, 5672, True)
        for what, (source, destination, to_port, expected) in wanted.items():
            protocol = "UDP" if destination == DNS else "TCP"
            assert allowed(policies, source, destination, to_port, protocol) is expected, \
                f"{name}: {what} ({to_port}/{protocol}) should be {'allowed' if expected else 'denied'}"
    edge = pod_peer(deployments["edge"]["spec"]["template"])
    edge_port = deployments["edge"]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert allowed(policies, INGRESS_CONTROLLER, edge, edge_port), "the ingress controller should reach the edge"
    for name, server in servers.items():
        port = DEFAULT_HTTP_PORTS[name]
        assert allowed(policies, edge, server, port), f"the edge should reach {name}'s HTTP port"
        assert not allowed(policies, edge, database(clusters[name]), 5432), \
            f"the edge should not reach {name}'s database"
        assert not allowed(policies, server, edge, edge_port), f"{name} should not reach the edge"
    for other in (RABBITMQ, PUBLIC, PRIVATE):
        assert not allowed(policies, edge, other, 443) and not allowed(policies, edge, other, 5672), \
            f"the edge should reach nothing but the services: {other}"
    topology = pod_peer(jobs["topology"]["spec"]["template"])
    assert allowed(policies, topology, RABBITMQ, 5672)
    assert not allowed(policies, topology, database("pg-orders"), 5432)
    assert allowed(policies, KEDA, RABBITMQ, 5672), "KEDA reads queue depths"
    assert allowed(policies, RABBITMQ, RABBITMQ, 25672), "RabbitMQ nodes cluster"
    assert allowed(policies, database("pg-orders"), database("pg-orders"), 5432), "replication"
    assert not allowed(policies, database("pg-orders"), database("pg-payments"), 5432)
    assert allowed(policies, CNPG_OPERATOR, database("pg-orders"), 8000), "the operator reads each instance's status"


# --- the checks catch what they are for -----------------------------------------------------

BROKEN = FIXTURES / "k8s-broken"


@pytest.fixture(scope="module")
def broken() -> tuple[Obj, ...]:
    return render(BROKEN)


def test_a_kustomization_that_does_not_build_fails_with_kustomizes_reason():
    with pytest.raises(RenderError, match="does-not-exist.yaml"):
        render(FIXTURES / "k8s-unrenderable")


def test_strict_validation_refuses_an_unknown_builtin_field(broken):
    if kubernetes_validate is None:
        pytest.fail("kubernetes-validate is not installed: pip install -e '.[test]'")
    problems = check_builtin_schemas(broken, KUBERNETES_VERSIONS[-1])
    assert any(p.startswith("Deployment/typo:") and "'imagePullPolicyy' was unexpected" in p for p in problems), \
        report(problems)
    assert not [p for p in problems if not p.startswith("Deployment/typo:")], report(problems)


def test_crd_validation_refuses_an_unknown_field(broken):
    if not CRD_SCHEMA_DIR.is_dir():
        pytest.skip(f"{CRD_SCHEMA_DIR} is absent: custom resources cannot be checked here")
    problems = check_crd_schemas(broken)
    assert any(p.startswith("RabbitmqCluster/broker:") and "'replica' was unexpected" in p for p in problems), \
        report(problems)
    assert len(problems) == 1, report(problems)


@pytest.mark.parametrize("expected", [
    "Deployment/no-liveness: container app has no livenessProbe",
    "Deployment/short-grace: container app: terminationGracePeriodSeconds 20 is not longer than "
    "SHUTDOWN_GRACE_S 20 + preStop 0 s",
    "Deployment/root: container app: does not run as non-root",
    "Deployment/root: container app: readOnlyRootFilesystem is not true",
    "Job/no-limits: container job: resources.limits lacks cpu, memory",
    "ScaledObject/orphan: scaleTargetRef names Deployment missing, which is not in the render",
    "Deployment/undeclared-secret: Secret no-such-secret is neither made by an operator nor listed",
    "Deployment/wrong-key: Secret pg-shop-app has no key url",
    "Deployment/unguarded: no NetworkPolicy selects its pods",
    "Cluster/pg-no-size: spec.storage.size is missing",
    "ScheduledBackup/nightly: spec.schedule needs six fields",
])
def test_each_check_names_the_broken_object(broken, expected):
    problems = all_problems(broken, required_secrets())
    assert any(p.startswith(expected) for p in problems), report(problems)


def test_the_sound_objects_in_the_broken_fixture_pass(broken):
    problems = all_problems(broken, required_secrets())
    assert not [p for p in problems if "/fine" in p or "pg-shop:" in p], report(problems)
