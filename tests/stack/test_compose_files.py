"""The compose files are valid for the real Compose v2 binary and follow the stack's rules.

Validity is Compose's own exit code (``config -q``) for each file alone and for the two merged.
The rules are checked on what Compose renders (``config --format json``): every long-running
service has a healthcheck, every published port is bound to 127.0.0.1 unless BIND_ADDRESS says
otherwise, every image is pinned, every dependency waits for a condition, the project is
``fraudlab`` with Compose's default container names, and no secret is written in the files.
Each rule is also run once on a broken copy of a file, to show it can fail.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from . import (
    AIRFLOW_COMPOSE,
    ENV_EXAMPLE,
    FILE_SETS,
    LAB_COMPOSE,
    REPO,
    compose_config,
    run_compose,
)

LAB_SERVICES = {
    "spark-master", "spark-worker-a", "spark-worker-b", "kafka", "kafka-init", "kafka-ui",
    "cassandra", "cassandra-init", "mlflow", "jupyter",
}
AIRFLOW_SERVICES = {
    "airflow-secrets", "postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler",
    "airflow-dag-processor", "airflow-triggerer",
}
#: Image tags that name a moving target rather than a release.
FLOATING_TAGS = {"latest", "stable", "main", "master", "edge", "nightly"}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|FERNET_KEY|SECRET_KEY)$")


# --------------------------------------------------------------------------------------------
# The rules, as functions of a rendered configuration; each returns what breaks it.


def one_shot_services(config: dict) -> set[str]:
    """Services something waits for with ``service_completed_successfully``: run once and exit."""
    return {
        dependency
        for service in config["services"].values()
        for dependency, spec in (service.get("depends_on") or {}).items()
        if spec.get("condition") == "service_completed_successfully"
    }


def missing_healthchecks(config: dict) -> list[str]:
    """Long-running services without a healthcheck, and one-shots that would restart."""
    one_shots = one_shot_services(config)
    problems = []
    for name, service in config["services"].items():
        if name in one_shots:
            if service.get("restart", "no") != "no":
                problems.append(f"{name}: a one-shot service must not restart ({service['restart']})")
            continue
        check = service.get("healthcheck") or {}
        if check.get("disable") or not check.get("test"):
            problems.append(f"{name}: long-running service without a healthcheck")
    return problems


def exposed_ports(config: dict, address: str = "127.0.0.1") -> list[str]:
    """Published ports not bound to ``address``."""
    return [
        f"{name}: port {port.get('published')}->{port.get('target')} bound to {port.get('host_ip') or 'every interface'}"
        for name, service in config["services"].items()
        for port in service.get("ports") or []
        if port.get("host_ip") != address
    ]


def unpinned_images(config: dict) -> list[str]:
    """Images without a release tag (no tag, a floating tag, or a tag without a digit)."""
    problems = []
    for name, service in config["services"].items():
        image = service.get("image")
        if not image:
            problems.append(f"{name}: no image name")
            continue
        reference = image.split("@", 1)[0]
        tag = reference.rsplit(":", 1)[1] if ":" in reference.rsplit("/", 1)[-1] else ""
        if not tag or tag.lower() in FLOATING_TAGS or not re.search(r"\d", tag):
            problems.append(f"{name}: image {image!r} is not pinned to a version tag")
        if service.get("build") and service.get("pull_policy") != "build":
            problems.append(f"{name}: built image {image!r} should have pull_policy: build")
    return problems


def weak_dependencies(config: dict) -> list[str]:
    """depends_on entries that wait for nothing, or for a health the dependency cannot report."""
    problems = []
    services = config["services"]
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            condition = spec.get("condition")
            if condition not in {"service_healthy", "service_completed_successfully"}:
                problems.append(f"{name} -> {dependency}: condition {condition!r}")
            elif condition == "service_healthy" and not (services.get(dependency, {}).get("healthcheck") or {}).get("test"):
                problems.append(f"{name} -> {dependency}: waits for a health it has no check for")
    return problems


def naming_problems(config: dict) -> list[str]:
    """Anything that would change Compose's container names ``fraudlab-<service>-1``."""
    problems = [] if config.get("name") == "fraudlab" else [f"project name is {config.get('name')!r}"]
    for name, service in config["services"].items():
        if "container_name" in service:
            problems.append(f"{name}: container_name {service['container_name']!r} replaces fraudlab-{name}-1")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
            problems.append(f"{name}: not a lower-case, hyphenated service name")
        if (service.get("deploy") or {}).get("replicas", 1) != 1 or service.get("scale", 1) != 1:
            problems.append(f"{name}: more than one replica")
    return problems


def literal_secrets(config: dict) -> list[str]:
    """Secret-looking variables that carry a value when nothing is set in the environment."""
    return [
        f"{name}: {key} has a committed value"
        for name, service in config["services"].items()
        for key, value in (service.get("environment") or {}).items()
        if SECRET_NAME.search(key) and value not in ("", None)
    ]


RULES: dict[str, Callable[[dict], list[str]]] = {
    "healthchecks": missing_healthchecks,
    "ports on 127.0.0.1": exposed_ports,
    "pinned images": unpinned_images,
    "depends_on conditions": weak_dependencies,
    "project and container names": naming_problems,
    "no committed secrets": literal_secrets,
}


# --------------------------------------------------------------------------------------------
# Compose's own validation


def test_the_compose_binary_is_the_real_one():
    result = run_compose((LAB_COMPOSE,), "version", "--short")
    assert result.returncode == 0, result.stderr
    assert re.match(r"v?2\.\d+", result.stdout.strip()), result.stdout


@pytest.mark.parametrize("file_set", FILE_SETS, ids=str)
def test_compose_validates_the_files(file_set):
    result = run_compose(FILE_SETS[file_set], "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("file_set", FILE_SETS, ids=str)
def test_compose_validates_the_files_with_the_example_env_file(file_set):
    result = run_compose(FILE_SETS[file_set], "config", "-q", env_file=ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


def test_compose_validation_fails_on_a_broken_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(LAB_COMPOSE.read_text().replace("    healthcheck:\n", "    healthchek:\n", 1))
    result = run_compose((broken,), "config", "-q")
    assert result.returncode != 0
    assert "healthchek" in result.stderr


def test_compose_validation_fails_when_a_dependency_is_undefined(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(LAB_COMPOSE.read_text().replace("      kafka:\n        condition", "      kafkaa:\n        condition", 1))
    assert run_compose((broken,), "config", "-q").returncode != 0


# --------------------------------------------------------------------------------------------
# The services


def test_the_lab_file_defines_the_lab_services():
    assert set(compose_config((LAB_COMPOSE,))["services"]) == LAB_SERVICES


def test_the_airflow_file_defines_the_airflow_services():
    assert set(compose_config((AIRFLOW_COMPOSE,))["services"]) == AIRFLOW_SERVICES


def test_the_merged_project_has_every_service_once():
    assert set(compose_config(FILE_SETS["merged"])["services"]) == LAB_SERVICES | AIRFLOW_SERVICES


@pytest.mark.parametrize("rule", RULES, ids=str)
@pytest.mark.parametrize("file_set", FILE_SETS, ids=str)
def test_the_rendered_configuration_follows_the_rule(file_set, rule):
    assert RULES[rule](compose_config(FILE_SETS[file_set])) == []


def test_the_one_shot_services_are_the_init_services():
    config = compose_config(FILE_SETS["merged"])
    assert one_shot_services(config) == {"kafka-init", "cassandra-init", "airflow-secrets", "airflow-init"}


def test_the_docker_exec_example_names_an_existing_container():
    # README: docker exec -it fraudlab-spark-worker-a-1 spark-submit --master spark://spark-master:7077 ...
    config = compose_config((LAB_COMPOSE,))
    containers = {f"{config['name']}-{name}-1" for name in config["services"]}
    assert "fraudlab-spark-worker-a-1" in containers
    assert "spark://spark-master:7077" in " ".join(config["services"]["spark-worker-a"]["command"])


def test_ports_follow_bind_address_when_it_is_set():
    config = compose_config(FILE_SETS["merged"], env={"BIND_ADDRESS": "0.0.0.0"})
    assert exposed_ports(config, address="0.0.0.0") == []
    assert exposed_ports(config) != []


def test_every_published_port_is_a_tunable_with_the_documented_default():
    config = compose_config(FILE_SETS["merged"])
    published = {
        name: sorted(int(p["published"]) for p in service.get("ports") or [])
        for name, service in config["services"].items() if service.get("ports")
    }
    assert published == {
        "spark-master": [7077, 8080], "spark-worker-a": [8081], "spark-worker-b": [8082],
        "kafka": [9092], "kafka-ui": [3030], "cassandra": [9042], "mlflow": [5000],
        "jupyter": [8888], "airflow-apiserver": [18080],
    }
    moved = compose_config(FILE_SETS["merged"], env={"KAFKA_PORT": "19192", "AIRFLOW_API_PORT": "28080"})
    assert [int(p["published"]) for p in moved["services"]["kafka"]["ports"]] == [19192]
    assert [int(p["published"]) for p in moved["services"]["airflow-apiserver"]["ports"]] == [28080]


def test_secrets_set_in_the_environment_reach_only_the_secrets_service():
    env = {"AIRFLOW_ADMIN_PASSWORD": "from-env-1", "AIRFLOW_DB_PASSWORD": "fromenv2", "JUPYTER_TOKEN": "tok3"}
    config = compose_config(FILE_SETS["merged"], env=env)
    holders = {
        name for name, service in config["services"].items()
        for value in (service.get("environment") or {}).values()
        if value in env.values()
    }
    assert holders == {"airflow-secrets", "jupyter"}


def test_airflow_reads_its_secrets_from_the_generated_volume():
    config = compose_config((AIRFLOW_COMPOSE,))
    for name in AIRFLOW_SERVICES - {"airflow-secrets", "postgres"}:
        env = config["services"][name]["environment"]
        commands = {key: value for key, value in env.items() if key.endswith("_CMD")}
        assert set(commands) == {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", "AIRFLOW__API_AUTH__JWT_SECRET_CMD",
            "AIRFLOW__API__SECRET_KEY_CMD", "AIRFLOW__CORE__FERNET_KEY_CMD",
        }, name
        assert all("/opt/airflow/secrets/" in value for value in commands.values()), name
        mounts = {v["target"]: v["source"] for v in config["services"][name]["volumes"]}
        assert mounts["/opt/airflow/secrets"] == "airflow-secrets", name
    postgres = config["services"]["postgres"]["environment"]
    assert "POSTGRES_PASSWORD" not in postgres
    assert postgres["POSTGRES_PASSWORD_FILE"] == "/run/fraudlab-secrets/postgres_password"


def test_airflow_uses_the_small_machine_settings_file():
    airflow_env = REPO / "compose" / "airflow" / "airflow.env"
    assert airflow_env.is_file()
    config = compose_config((AIRFLOW_COMPOSE,))
    for name in AIRFLOW_SERVICES - {"airflow-secrets", "postgres"}:
        env = config["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        assert int(env["AIRFLOW__CORE__PARALLELISM"]) <= 4, name
        assert int(env["AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES"]) == 1, name
        assert int(env["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"]) >= 30, name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False", name
        # Inside a container the API listens on the container's interfaces; only the published
        # port (127.0.0.1) reaches it from the machine.
        assert env["AIRFLOW__API__HOST"] == "0.0.0.0", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
    scheduler = config["services"]["airflow-scheduler"]["command"]
    assert "--skip-serve-logs" in scheduler


def test_the_lab_services_are_sized_for_a_small_machine():
    services = compose_config((LAB_COMPOSE,))["services"]
    assert services["cassandra"]["environment"]["MAX_HEAP_SIZE"] == "512M"
    assert services["cassandra"]["environment"]["HEAP_NEWSIZE"] == "128M"
    assert "-Xmx512m" in services["kafka"]["environment"]["KAFKA_HEAP_OPTS"]
    for worker in ("spark-worker-a", "spark-worker-b"):
        assert services[worker]["environment"]["SPARK_WORKER_CORES"] == "1"
        assert services[worker]["environment"]["SPARK_WORKER_MEMORY"] == "1g"


# --------------------------------------------------------------------------------------------
# Every rule catches a broken copy


def _break_kafka_healthcheck(doc: dict) -> None:
    del doc["services"]["kafka"]["healthcheck"]


def _publish_on_every_interface(doc: dict) -> None:
    doc["services"]["mlflow"]["ports"] = ["5000:5000"]


def _float_the_kafka_image(doc: dict) -> None:
    doc["services"]["kafka"]["image"] = "apache/kafka:latest"


def _start_without_waiting(doc: dict) -> None:
    doc["services"]["kafka-ui"]["depends_on"] = ["kafka"]


def _name_a_container(doc: dict) -> None:
    doc["services"]["spark-worker-a"]["container_name"] = "worker-a"


def _commit_a_password(doc: dict) -> None:
    doc["services"]["jupyter"]["environment"]["JUPYTER_TOKEN"] = "letmein"


BREAKAGES = {
    "healthchecks": _break_kafka_healthcheck,
    "ports on 127.0.0.1": _publish_on_every_interface,
    "pinned images": _float_the_kafka_image,
    "depends_on conditions": _start_without_waiting,
    "project and container names": _name_a_container,
    "no committed secrets": _commit_a_password,
}


@pytest.mark.parametrize("rule", RULES, ids=str)
def test_the_rule_catches_a_broken_copy_of_the_lab_file(rule, tmp_path):
    document = copy.deepcopy(yaml.safe_load(LAB_COMPOSE.read_text()))
    BREAKAGES[rule](document)
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run_compose((broken,), "config", "--format", "json")
    assert result.returncode == 0, result.stderr  # still valid Compose: only the rule objects
    assert RULES[rule](json.loads(result.stdout)) != []


def test_the_unpinned_image_rule_also_catches_a_missing_tag():
    config = {"services": {"kafka": {"image": "apache/kafka"}, "ui": {"image": "ghcr.io/kafbat/kafka-ui"}}}
    assert len(unpinned_images(config)) == 2


def test_the_healthcheck_rule_catches_a_restarting_one_shot():
    config = compose_config((LAB_COMPOSE,))
    broken = copy.deepcopy(config)
    broken["services"]["kafka-init"]["restart"] = "always"
    assert missing_healthchecks(broken) == ["kafka-init: a one-shot service must not restart (always)"]


def test_every_mounted_path_and_dockerfile_exists():
    """Every bind-mounted file or folder and every Dockerfile named by a build exists."""
    config = compose_config(FILE_SETS["merged"])
    missing = []
    for name, service in config["services"].items():
        for volume in service.get("volumes") or []:
            if volume["type"] == "bind" and not Path(volume["source"]).exists():
                missing.append(f"{name}: {volume['source']}")
        build = service.get("build")
        if build and not (Path(build["context"]) / build["dockerfile"]).is_file():
            missing.append(f"{name}: {build['dockerfile']}")
    assert missing == []


def test_the_offline_override_changes_only_images_and_builds():
    override = yaml.safe_load((REPO / "compose" / "offline.yml").read_text())
    assert set(override) == {"services"}
    for name, service in override["services"].items():
        assert set(service) <= {"image", "build", "pull_policy", "profiles"}, (name, sorted(service))
        assert "profiles" in service or service["image"].startswith("fraudlab/offline-"), name
    merged = compose_config(FILE_SETS["offline"])["services"]
    online = compose_config(FILE_SETS["merged"])["services"]
    # Services in a profile (the Kafka UI offline) are not started, so not rendered.
    assert set(online) - set(merged) == {n for n, s in override["services"].items() if "profiles" in s}
    for name in set(override["services"]) & set(merged):
        for key in ("environment", "command", "healthcheck", "volumes", "ports", "depends_on"):
            assert merged[name].get(key) == online[name].get(key), (name, key)
