"""The parts of services.docker_engine that need no engine: the mirror apt uses, the base tag,
the certificates copied for the builds, the build order. tests/compose/ runs the rest for real."""

from __future__ import annotations

from services import docker_engine

from . import DOCKERFILE, compose_config, FILE_SETS


def test_the_mirror_is_read_from_deb822_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")
    assert docker_engine.debian_mirrors(tmp_path) == ("http://mirror.example/debian",
                                                      "http://mirror.example/debian-security")


def test_the_mirror_is_read_from_a_one_line_sources_list(tmp_path):
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://ftp.example/debian bookworm main\n")
    assert docker_engine.debian_mirrors(tmp_path) == ("http://ftp.example/debian",
                                                      "http://deb.debian.org/debian-security")


def test_without_sources_the_mirror_is_debians(tmp_path):
    assert docker_engine.debian_mirrors(tmp_path) == ("http://deb.debian.org/debian",
                                                      "http://deb.debian.org/debian-security")


def test_the_base_image_is_the_dockerfiles_pinned_tag(tmp_path):
    assert docker_engine.base_image() == "debian:12.15-slim"
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM debian\n")
    try:
        docker_engine.base_image(broken)
    except docker_engine.EngineError as exc:
        assert "ARG BASE_IMAGE" in str(exc)
    else:
        raise AssertionError("a Dockerfile without BASE_IMAGE was accepted")
    assert DOCKERFILE.read_text().count("${BASE_IMAGE}") == 1


def test_only_crt_files_are_copied_and_a_second_copy_changes_nothing(tmp_path):
    source, target = tmp_path / "machine", tmp_path / "certs"
    source.mkdir()
    target.mkdir()
    (source / "corp-root.crt").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    (source / "notes.txt").write_text("not a certificate")
    assert docker_engine.copy_machine_certs(source, target) == ["corp-root.crt"]
    stamp = (target / "corp-root.crt").stat().st_mtime_ns
    assert docker_engine.copy_machine_certs(source, target) == ["corp-root.crt"]
    assert (target / "corp-root.crt").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in target.iterdir()) == ["corp-root.crt"]


def test_the_build_order_names_every_service_that_builds_an_image():
    services = compose_config(FILE_SETS["offline"])["services"]
    builders = {name for name, spec in services.items() if "build" in spec}
    assert builders == set(docker_engine.BUILD_ORDER)
    # The Spark image first: the others reuse its base, java and python stages.
    assert docker_engine.BUILD_ORDER[0] == "spark-master"


def test_the_own_socket_path_fits_a_unix_socket():
    assert len(str(docker_engine.own_socket())) < 108
