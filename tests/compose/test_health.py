"""The stack as `up --wait` leaves it: healthy services, finished init services, loopback ports,
non-root containers, one Python and one Spark everywhere, and the pages of the Spark master."""

from __future__ import annotations

import pytest

from tests.compose import HOST, LEFT_OUT_OFFLINE, ONE_SHOT, PROJECT, REPO, http, url
from tests.compose.browser import screenshot

pytestmark = [pytest.mark.slow]

#: Every service the merged project defines, less what the offline override leaves out.
EXPECTED = {
    "spark-master", "spark-worker-a", "spark-worker-b", "kafka", "kafka-init", "cassandra", "cassandra-init",
    "mlflow", "jupyter", "airflow-secrets", "postgres", "airflow-init", "airflow-apiserver",
    "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
}


def test_every_service_is_up_and_every_init_service_exited_0(stack):
    containers = {c["Service"]: c for c in stack.ps()}
    assert set(containers) == EXPECTED, f"services: {sorted(containers)}"
    for name, container in containers.items():
        if name in ONE_SHOT:
            assert container["State"] == "exited" and container["ExitCode"] == 0, container
        else:
            assert container["State"] == "running" and container["Health"] == "healthy", container


def test_the_kafka_ui_is_left_out_of_the_offline_stack_and_says_so(stack):
    containers = {c["Service"] for c in stack.ps()}
    for name, why in LEFT_OUT_OFFLINE.items():
        assert name not in containers
        print(f"\n  left out offline: {name} ({why}); the online stack runs it on port 3030")


def test_every_published_port_is_on_loopback_only(stack):
    published = [(c["Service"], p) for c in stack.ps() for p in c.get("Publishers") or [] if p.get("PublishedPort")]
    assert len(published) >= 9, published
    for service, port in published:
        assert port["URL"] == HOST, f"{service} publishes {port['PublishedPort']} on {port['URL']}"


@pytest.mark.parametrize("service", sorted(EXPECTED - set(ONE_SHOT)))
def test_the_lab_images_run_as_non_root(stack, service):
    uid = stack.exec(service, "id", "-u").stdout.strip()
    assert uid != "0", f"{service} runs as root"


def test_one_python_and_one_spark_in_every_driver_and_executor(stack):
    probe = "import sys, pyspark; print(sys.version.split()[0], pyspark.__version__)"
    seen = {s: stack.exec(s, "python", "-c", probe).stdout.strip()
            for s in ("spark-master", "spark-worker-a", "spark-worker-b", "airflow-scheduler", "jupyter")}
    assert len(set(seen.values())) == 1, seen
    python, spark = next(iter(seen.values())).split()
    assert python.startswith("3.11.") and spark == "4.2.0", seen


def test_every_spark_jar_is_at_the_spark_version(stack):
    jars = stack.exec("spark-worker-a", "bash", "-c", "ls $SPARK_HOME/jars | grep '^spark-'").stdout.split()
    versions = {jar.rsplit("-", 1)[1].removesuffix(".jar") for jar in jars}
    assert versions == {"4.2.0"}, sorted(j for j in jars if not j.endswith("4.2.0.jar"))
    assert "spark-sql-kafka-0-10_2.13-4.2.0.jar" in jars and "spark-token-provider-kafka-0-10_2.13-4.2.0.jar" in jars


def test_the_certificates_of_docker_certs_are_trusted_by_python_and_java(stack):
    # The harness copied this machine's extra CA certificates into docker/certs/ (without them pip
    # and Maven could not have reached their registries during the build here).
    certs = sorted((REPO / "docker" / "certs").glob("*.crt"))
    bundle = stack.exec("spark-worker-a", "cat", "/etc/ssl/certs/ca-certificates.crt").stdout
    java = stack.exec("kafka", "keytool", "-list", "-cacerts", "-storepass", "changeit").stdout
    for cert in certs:
        body = "".join(cert.read_text().split("-----")[2].split())
        assert body[:200] in "".join(bundle.split()), f"{cert.name} is not in the system bundle"
        assert f"debian:{cert.stem}.pem" in java, f"{cert.name} is not in Java's trust store"
    print(f"\n  trusted in the images: {', '.join(c.name for c in certs) or 'no extra certificates here'}")


def test_the_spark_master_has_two_alive_workers(stack):
    status, master = http("GET", url("SPARK_MASTER_UI_PORT", "/json/"))
    assert status == 200 and master["status"] == "ALIVE"
    alive = [w for w in master["workers"] if w["state"] == "ALIVE"]
    assert len(alive) == 2, master["workers"]
    text = screenshot("spark-master", url("SPARK_MASTER_UI_PORT", "/"), wait_for="Workers (2)")
    assert "spark://spark-master:7077" in text and text.count("ALIVE") >= 3, text[:2000]


def test_the_project_is_named_as_the_readme_says(stack):
    names = {c["Name"] for c in stack.ps()}
    assert f"{PROJECT}-spark-worker-a-1" in names
