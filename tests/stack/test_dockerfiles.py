"""The Dockerfiles pass hadolint and build what the stack needs, from the project's own sources.

hadolint runs as the build would meet it (``--failure-threshold warning``, the repository's
``.hadolint.yaml``), by its exit code. The other checks read the Dockerfiles as text: the pinned
Python 3.11 base, Java 17 with a JAVA_HOME found at build time (never one architecture's path), the
lock file's packages installed with hashes, Spark's Kafka connector baked in from the project's pom
(never ``--packages``), a non-root user, and a build context (``.dockerignore``) that holds every
file the Dockerfiles copy and nothing heavy. Each text rule is also run on a broken copy.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

from . import DOCKERFILES, LAB_COMPOSE, REPO, compose_config, hadolint_binary, lock_versions

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


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


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


def spark_install_problems(text: str, image: str) -> list[str]:
    """The lock's packages with hashes, the connector jars from the pom, a non-root user."""
    problems = []
    steps = instructions(text)
    requirements = f"docker/{image}/requirements.txt"
    if not any(k == "COPY" and requirements in a for k, a in steps):
        problems.append(f"does not copy {requirements}")
    if not any(k == "RUN" and "--require-hashes" in a and "-r /tmp/requirements.txt" in a for k, a in steps):
        problems.append("pip does not install the requirements with --require-hashes")
    if re.search(r"--packages|spark\.jars\.packages", code(text)):
        problems.append("resolves jars at run time (--packages)")
    if not any(k == "COPY" and "services/maven/spark-kafka/pom.xml" in a for k, a in steps):
        problems.append("does not build the connector from services/maven/spark-kafka/pom.xml")
    if not any(k == "RUN" and "dependency:copy-dependencies" in a for k, a in steps):
        problems.append("does not fetch the connector jars with Maven")
    if not any(k == "COPY" and a.startswith("--from=connector-jars") and "${SPARK_HOME}/jars/" in a for k, a in steps):
        problems.append("does not copy the connector jars into ${SPARK_HOME}/jars")
    users = [a for k, a in final_stage(text) if k == "USER"]
    if not users or users[-1].split(":")[0] in {"root", "0"}:
        problems.append(f"runs as root (last USER: {users[-1] if users else 'none'})")
    return problems


# --------------------------------------------------------------------------------------------
# hadolint


@pytest.mark.parametrize("image", DOCKERFILES, ids=str)
def test_hadolint_passes(image):
    result = hadolint(DOCKERFILES[image])
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
    for path in DOCKERFILES.values():
        for number, line in enumerate(path.read_text().splitlines()):
            if "hadolint ignore" in line:
                previous = path.read_text().splitlines()[number - 1]
                assert previous.lstrip().startswith("#"), f"{path.name}:{number + 1}: inline ignore without a reason"


# --------------------------------------------------------------------------------------------
# The Spark image


def test_the_spark_image_starts_from_a_pinned_python_of_the_project_minor_version():
    base = arg_default(DOCKERFILES["spark"].read_text(), "PYTHON_IMAGE")
    match = re.fullmatch(r"python:(\d+\.\d+)\.\d+-slim-bookworm", base)
    assert match, f"{base} is not python:3.11.x-slim-bookworm"
    assert match.group(1) == python_minor()


@pytest.mark.parametrize("image", ["spark", "airflow"])
def test_java_17_with_a_derived_java_home(image):
    assert java_problems(DOCKERFILES[image].read_text()) == []


def test_the_java_rule_catches_a_hard_coded_java_home():
    text = DOCKERFILES["spark"].read_text().replace(
        "ENV JAVA_HOME=/opt/java/current", "ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64")
    assert java_problems(text) == [
        "JAVA_HOME is not /opt/java/current", "architecture-specific text: 'amd64'"]


@pytest.mark.parametrize("image", ["spark", "airflow"])
def test_the_lock_packages_and_the_connector_jars_are_installed_at_build_time(image):
    assert spark_install_problems(DOCKERFILES[image].read_text(), image) == []


@pytest.mark.parametrize("breakage", ["packages", "hashes", "root"])
def test_the_install_rule_catches_a_broken_copy(breakage):
    text = DOCKERFILES["spark"].read_text()
    if breakage == "packages":
        text = text.replace('CMD ["spark-submit", "--version"]',
                            'CMD ["spark-submit", "--packages", "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"]')
    elif breakage == "hashes":
        text = text.replace("--require-hashes ", "")
    else:
        text += "\nUSER root\n"
    assert len(spark_install_problems(text, "spark")) == 1


def test_spark_home_is_the_pyspark_folder_of_the_base_python():
    text = DOCKERFILES["spark"].read_text()
    assert f"ENV SPARK_HOME=/usr/local/lib/python{python_minor()}/site-packages/pyspark" in text
    # The build re-checks it against pyspark itself and that the connector matches pyspark.
    assert "test \"$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')\" = \"${SPARK_HOME}\"" in text
    assert "spark-sql-kafka-0-10_2.13-${pyspark_version}.jar" in text


def test_the_spark_image_holds_the_apps_the_package_and_the_lab_spark_conf():
    steps = instructions(DOCKERFILES["spark"].read_text())
    copies = [a for k, a in steps if k == "COPY"]
    assert "spark-apps/ /opt/spark-apps/" in copies
    assert "compose/spark/ /opt/fraudlab/conf/spark/" in copies
    assert any(k == "RUN" and "pip install --no-cache-dir --no-deps /tmp/fraudlab-src" in a for k, a in steps)
    env = " ".join(a for k, a in steps if k == "ENV")
    for setting in ("FRAUDLAB_HOME=/opt/fraudlab", "SPARK_CONF_DIR=/opt/fraudlab/conf/spark",
                    "SPARK_WORKER_DIR=/opt/fraudlab/work", "PYSPARK_PYTHON=python3"):
        assert setting in env


# --------------------------------------------------------------------------------------------
# The Airflow and Jupyter images


def test_the_airflow_image_is_the_official_one_at_the_lock_version():
    text = DOCKERFILES["airflow"].read_text()
    versions = lock_versions()
    assert arg_default(text, "AIRFLOW_IMAGE") == f"apache/airflow:{versions['apache-airflow']}-python{python_minor()}"
    assert arg_default(text, "PYTHON_IMAGE") == arg_default(DOCKERFILES["spark"].read_text(), "PYTHON_IMAGE")
    assert f"ENV SPARK_HOME=/home/airflow/.local/lib/python{python_minor()}/site-packages/pyspark" in text


def test_the_airflow_image_never_runs_airflow_at_build_time():
    # `airflow ...` during the build writes a generated airflow.cfg (secrets included) into the image.
    runs = [a for k, a in instructions(DOCKERFILES["airflow"].read_text()) if k == "RUN"]
    assert not [r for r in runs if re.search(r"(^|[;&|(]\s*|\$\()airflow\s", r)]


def test_the_jupyter_image_is_built_on_the_spark_image():
    text = DOCKERFILES["jupyter"].read_text()
    froms = [a for k, a in instructions(text) if k == "FROM"]
    assert froms == ["spark-image"]
    build = compose_config((LAB_COMPOSE,))["services"]["jupyter"]["build"]
    assert build["additional_contexts"] == {"spark-image": "service:spark-master"}
    assert build["dockerfile"] == "docker/jupyter/Dockerfile"
    steps = final_stage(text)
    assert any(k == "RUN" and "--require-hashes -r /tmp/requirements.txt" in a for k, a in steps)
    assert [a for k, a in steps if k == "USER"][-1] == "fraudlab"
    assert "token" not in " ".join(a for k, a in steps if k == "CMD").lower()


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
    for path in DOCKERFILES.values():
        for keyword, args in instructions(path.read_text()):
            if keyword != "COPY":
                continue
            words = [w for w in args.split() if not w.startswith("--")]
            if args.startswith("--from"):
                continue
            sources.update(w.rstrip("/") for w in words[:-1])
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
