"""The Dockerfile passes hadolint and builds what the stack needs, from the project's own sources.

hadolint runs as the build would meet it (``--failure-threshold warning``, the repository's
``.hadolint.yaml``), by its exit code. The other checks read ``docker/Dockerfile`` as text, stage by
stage: one pinned Debian 12 base for every image, Python 3.11 in one virtual environment, Java 17
with a JAVA_HOME found at build time (never one architecture's path), the lock file's packages
installed with hashes, Spark's Kafka connector baked in from the project's pom (never
``--packages``), non-root users, a stage for every image the compose files build, and a build
context (``.dockerignore``) that holds every file the Dockerfile copies and nothing heavy. Each
text rule is also run on a broken copy. ``tests/compose/`` builds and runs the images for real.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

from . import (AIRFLOW_COMPOSE, DOCKERFILE, LAB_COMPOSE, OFFLINE_COMPOSE, REPO, compose_config, hadolint_binary,
               lock_versions)

HADOLINT_CONFIG = REPO / ".hadolint.yaml"
ARCH_NAMES = re.compile(r"amd64|arm64|aarch64|x86_64|x86-64")


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(hadolint_binary()), "--config", str(HADOLINT_CONFIG), "--failure-threshold", "warning",
         "--no-color", str(path)],
        capture_output=True, text=True, timeout=60,
    )


def code(text: str) -> str:
    """A Dockerfile without its comment lines (comments may name what the code must not do)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", code(text))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """The Dockerfile's stages by name (``FROM x AS name``), each with its instructions."""
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, args in instructions(text):
        if keyword == "FROM":
            current = args.split()[-1]
            result[current] = []
        if current is not None:
            result[current].append((keyword, args))
    return result


def lineage(text: str, stage: str) -> list[tuple[str, str]]:
    """The instructions a stage's image is made of: its parents' first, then its own."""
    all_stages = stages(text)
    steps = all_stages[stage]
    parent = steps[0][1].split()[0]
    return (lineage(text, parent) if parent in all_stages else []) + steps


def stage_text(text: str, stage: str) -> str:
    return "\n".join(f"{k} {a}" for k, a in lineage(text, stage))


def arg_default(text: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)", text, re.MULTILINE)
    assert match, f"no ARG {name}=... default"
    return match.group(1)


def python_minor() -> str:
    """The Python minor version pyproject.toml allows (requires-python = ">=3.11,<3.12")."""
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'requires-python\s*=\s*">=(\d+\.\d+),<', text)
    assert match
    return match.group(1)


# --------------------------------------------------------------------------------------------
# The text rules; each returns what breaks it.


def java_problems(text: str) -> list[str]:
    """Java 17 from Debian, JAVA_HOME derived from the installed binary, no architecture names."""
    text = code(text)
    problems = []
    if "openjdk-17-jre-headless" not in text:
        problems.append("no openjdk-17-jre-headless")
    if not re.search(r"readlink -f .*command -v java", text):
        problems.append("JAVA_HOME is not derived from the java binary at build time")
    if not re.search(r"^ENV JAVA_HOME=/opt/java/current$", text, re.MULTILINE):
        problems.append("JAVA_HOME is not /opt/java/current")
    problems += [f"architecture-specific text: {m.group(0)!r}" for m in ARCH_NAMES.finditer(text)]
    return problems


def spark_install_problems(text: str, stage: str, requirements: str) -> list[str]:
    """The lock's packages with hashes, the connector jars from the pom, a non-root user."""
    problems = []
    steps = lineage(text, stage)
    if not any(k == "COPY" and requirements in a for k, a in steps):
        problems.append(f"does not copy {requirements}")
    if not any(k == "RUN" and "--require-hashes" in a and "-r /tmp/requirements.txt" in a for k, a in steps):
        problems.append("pip does not install the requirements with --require-hashes")
    if re.search(r"--packages|spark\.jars\.packages", code(text)):
        problems.append("resolves jars at run time (--packages)")
    jar_stage = stages(text).get("jars-spark-kafka", [])
    if not any(k == "COPY" and "services/maven/spark-kafka/pom.xml" in a for k, a in jar_stage):
        problems.append("does not build the connector from services/maven/spark-kafka/pom.xml")
    if not any(k == "RUN" and "dependency:copy-dependencies" in a for k, a in jar_stage):
        problems.append("does not fetch the connector jars with Maven")
    if not any(k == "COPY" and a.startswith("--from=jars-spark-kafka") and "${SPARK_HOME}/jars/" in a for k, a in steps):
        problems.append("does not copy the connector jars into ${SPARK_HOME}/jars")
    users = [a for k, a in steps if k == "USER"]
    if not users or users[-1].split(":")[0] in {"root", "0"}:
        problems.append(f"runs as root (last USER: {users[-1] if users else 'none'})")
    return problems


# --------------------------------------------------------------------------------------------
# hadolint


def test_hadolint_passes():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_broken_dockerfile(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python\nRUN pip install requests\nUSER root\n")
    result = hadolint(broken)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3013" in result.stdout


def test_every_hadolint_ignore_says_why():
    lines = HADOLINT_CONFIG.read_text().splitlines()
    ignored = [i for i, line in enumerate(lines) if re.match(r"\s*-\s*(DL|SC)\d+", line)]
    assert ignored, "no ignores: then .hadolint.yaml is not needed"
    for index in ignored:
        assert lines[index - 1].lstrip().startswith("#"), f"{lines[index].strip()} has no reason above it"
    text = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(text):
        if "hadolint ignore" in line:
            assert text[number - 1].lstrip().startswith("#"), f"Dockerfile:{number + 1}: inline ignore without a reason"


# --------------------------------------------------------------------------------------------
# One base, one Python, one Java


def test_every_stage_starts_from_the_one_pinned_debian_base():
    text = DOCKERFILE.read_text()
    base = arg_default(text, "BASE_IMAGE")
    assert re.fullmatch(r"debian:12\.\d+-slim", base), f"{base} is not a pinned Debian 12 slim tag"
    all_stages = stages(text)
    for name, steps in all_stages.items():
        parent = steps[0][1].split()[0]
        assert parent == "${BASE_IMAGE}" or parent in all_stages, f"{name} starts from {parent}"


def test_python_is_one_virtual_environment_of_the_project_minor_version():
    python = stage_text(DOCKERFILE.read_text(), "python")
    assert "python3 -m venv /opt/venv" in python
    assert f"sys.version_info[:2] == ({python_minor().replace('.', ', ')})" in python
    assert "PATH=/opt/venv/bin:$PATH" in python


def test_java_17_with_a_derived_java_home():
    assert java_problems(stage_text(DOCKERFILE.read_text(), "java")) == []


def test_the_java_rule_catches_a_hard_coded_java_home():
    text = stage_text(DOCKERFILE.read_text(), "java").replace(
        "ENV JAVA_HOME=/opt/java/current", "ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64")
    assert java_problems(text) == [
        "JAVA_HOME is not /opt/java/current", "architecture-specific text: 'amd64'"]


def test_the_extra_ca_certificates_are_trusted_before_anything_is_downloaded():
    base = stage_text(DOCKERFILE.read_text(), "base")
    assert "COPY docker/certs/ /usr/local/share/ca-certificates/fraudlab/" in base
    assert "update-ca-certificates" in base and "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in base
    assert "ca-certificates-java" in stage_text(DOCKERFILE.read_text(), "java")
    assert (REPO / "docker" / "certs" / "README.md").is_file()


@pytest.mark.parametrize(("stage", "requirements"), [("spark", "docker/spark/requirements.txt"),
                                                     ("jupyter", "docker/jupyter/requirements.txt"),
                                                     ("airflow", "docker/airflow/requirements.txt")])
def test_the_lock_packages_and_the_connector_jars_are_installed_at_build_time(stage, requirements):
    assert spark_install_problems(DOCKERFILE.read_text(), stage, requirements) == []


@pytest.mark.parametrize("breakage", ["packages", "hashes", "root"])
def test_the_install_rule_catches_a_broken_copy(breakage):
    text = DOCKERFILE.read_text()
    if breakage == "packages":
        text = text.replace('CMD ["spark-submit", "--version"]',
                            'CMD ["spark-submit", "--packages", "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"]')
    elif breakage == "hashes":
        text = text.replace("pip install --require-hashes --no-deps -r /tmp/requirements.txt && pip check && rm "
                            "/tmp/requirements.txt\n\n# SPARK",
                            "pip install --no-deps -r /tmp/requirements.txt && pip check && rm /tmp/requirements.txt\n\n# SPARK")
    else:
        text = text.replace("USER fraudlab\nEXPOSE 4040", "USER root\nEXPOSE 4040")
    assert len(spark_install_problems(text, "spark", "docker/spark/requirements.txt")) == 1


def test_spark_home_is_the_pyspark_folder_of_the_venv():
    text = DOCKERFILE.read_text()
    assert f"ENV SPARK_HOME=/opt/venv/lib/python{python_minor()}/site-packages/pyspark" in text
    # The build re-checks it against pyspark itself and that every Spark jar matches pyspark.
    assert "test \"$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')\" = \"${SPARK_HOME}\"" in text
    assert "spark-sql-kafka-0-10_2.13-${pyspark_version}.jar" in text
    assert "spark-token-provider-kafka-0-10_2.13-${pyspark_version}.jar" in text


def test_the_spark_image_holds_the_apps_the_package_and_the_lab_spark_conf():
    steps = lineage(DOCKERFILE.read_text(), "spark")
    copies = [a for k, a in steps if k == "COPY"]
    assert "spark-apps/ /opt/spark-apps/" in copies
    assert "compose/spark/ /opt/fraudlab/conf/spark/" in copies
    assert any(k == "RUN" and "pip install --no-deps /tmp/wheels/*.whl" in a for k, a in steps)
    env = " ".join(a for k, a in steps if k == "ENV")
    for setting in ("FRAUDLAB_HOME=/opt/fraudlab", "SPARK_CONF_DIR=/opt/fraudlab/conf/spark",
                    "SPARK_WORKER_DIR=/opt/fraudlab/work", "PYSPARK_PYTHON=python3"):
        assert setting in env


# --------------------------------------------------------------------------------------------
# The Airflow and Jupyter images, the offline stand-ins


def test_the_airflow_image_is_the_lock_airflow_on_the_labs_own_python():
    text = DOCKERFILE.read_text()
    assert stages(text)["airflow"][0] == ("FROM", "python AS airflow")
    requirements = (REPO / "docker" / "airflow" / "requirements.txt").read_text()
    assert f"apache-airflow=={lock_versions()['apache-airflow']} " in requirements
    assert "ENTRYPOINT [\"/usr/local/bin/airflow-entrypoint\"]" in text


def test_the_airflow_image_never_runs_airflow_at_build_time():
    # `airflow ...` during the build writes a generated airflow.cfg (secrets included) into the image.
    runs = [a for k, a in lineage(DOCKERFILE.read_text(), "airflow") if k == "RUN"]
    assert not [r for r in runs if re.search(r"(^|[;&|(]\s*|\$\()airflow\s", r)]


def test_the_jupyter_image_shares_the_spark_runtime_without_named_contexts():
    text = DOCKERFILE.read_text()
    assert stages(text)["jupyter"][0] == ("FROM", "spark-runtime AS jupyter")
    build = compose_config((LAB_COMPOSE,))["services"]["jupyter"]["build"]
    assert "additional_contexts" not in build  # the 20.10 engine's BuildKit has no named contexts
    assert build["dockerfile"] == "docker/Dockerfile" and build["target"] == "jupyter"
    steps = lineage(text, "jupyter")
    assert [a for k, a in steps if k == "USER"][-1] == "fraudlab"
    assert "token" not in " ".join(a for k, a in steps if k == "CMD").lower()


def test_every_image_the_compose_files_build_is_a_stage_and_built_once():
    names = stages(DOCKERFILE.read_text())
    config = compose_config((LAB_COMPOSE, AIRFLOW_COMPOSE, OFFLINE_COMPOSE))
    builders: dict[str, list[str]] = {}
    for service, spec in config["services"].items():
        if "build" in spec:
            assert spec["build"]["dockerfile"] == "docker/Dockerfile", service
            assert spec["build"]["target"] in names, service
            builders.setdefault(spec["image"], []).append(service)
        else:
            assert spec.get("pull_policy") == "never" or not spec["image"].startswith("fraudlab/"), service
    assert all(len(services) == 1 for services in builders.values()), builders
    assert no_syntax_line(DOCKERFILE.read_text())


def no_syntax_line(text: str) -> bool:
    return not re.search(r"^#\s*syntax=", text, flags=re.M)


# --------------------------------------------------------------------------------------------
# The build context


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        regex = "".join(
            ".*" if token == "**" else "[^/]*" if token == "*" else "[^/]" if token == "?" else re.escape(token)
            for token in re.split(r"(\*\*|\*|\?)", pattern)
        )
        regex = regex.replace(".*/", "(.*/)?")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def copy_sources() -> set[str]:
    sources = set()
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword != "COPY" or args.startswith("--from"):
            continue
        words = [w for w in args.split() if not w.startswith("--")]
        for word in words[:-1]:
            if "*" in word:
                sources.update(str(p.relative_to(REPO)) for p in REPO.glob(word))
            else:
                sources.add(word.rstrip("/"))
    return sources


def test_the_build_context_holds_every_file_the_dockerfiles_copy():
    patterns = dockerignore_patterns()
    missing = []
    for source in sorted(copy_sources()):
        path = REPO / source
        assert path.exists(), f"COPY source {source} does not exist"
        files = [path] if path.is_file() else [
            p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and not any(part.endswith(".egg-info") for part in p.parts)
        ]
        missing += [str(f.relative_to(REPO)) for f in files if dockerignore_excludes(str(f.relative_to(REPO)), patterns)]
    assert missing == []


def test_the_build_context_leaves_out_the_heavy_and_the_private():
    patterns = dockerignore_patterns()
    for path in (".venv/bin/python", ".git/HEAD", "data/raw/transactions.csv", ".env", ".lab/jars/x.jar",
                 "spark-apps/fraudlab/__pycache__/config.cpython-311.pyc", "spark-apps/fraudlab.egg-info/PKG-INFO",
                 "notebooks/explore.ipynb"):
        assert dockerignore_excludes(path, patterns), path


def test_the_dockerignore_matcher_can_tell_both_ways():
    patterns = ["*", "!docker/", "**/__pycache__"]
    assert not dockerignore_excludes("docker/spark/Dockerfile", patterns)
    assert dockerignore_excludes("docker/__pycache__/x.pyc", patterns)
    assert dockerignore_excludes("README.md", patterns)
    assert fnmatch.fnmatch("x", "*")
