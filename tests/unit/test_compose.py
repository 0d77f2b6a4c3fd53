"""docker-compose.yml, the production shape, as far as it can be checked without a Docker
engine: it parses, our long-running services have health checks and run the commands the
README documents, no secret is written into it, and every image is pinned."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = {name: service for name, service in SERVICES.items() if "build" in service}
# Services others wait for to *finish* (migrations, the bucket): they have no health.
ONE_SHOT = {
    dependency
    for service in SERVICES.values()
    for dependency, condition in (service.get("depends_on") or {}).items()
    if condition.get("condition") == "service_completed_successfully"
}
# A variable that compose must be given: ${NAME:?message}.
REQUIRED = re.compile(r"^\$\{([A-Z0-9_]+):\?[^}]+\}$")
# An optional secret: ${NAME:-} (empty means none), never a default value.
OPTIONAL = re.compile(r"^\$\{([A-Z0-9_]+):-\}$")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY")


def _environments() -> list[tuple[str, str, str]]:
    return [
        (service_name, name, str(value))
        for service_name, service in SERVICES.items()
        for name, value in (service.get("environment") or {}).items()
    ]


def test_our_services_are_the_api_the_workers_beat_and_the_migrations() -> None:
    assert set(OURS) == {"migrate", "api", "worker", "dispatcher", "worker-cpu", "beat"}
    assert ONE_SHOT == {"migrate", "bucket"}


@pytest.mark.parametrize("name", sorted(set(OURS) - ONE_SHOT))
def test_every_long_running_service_of_ours_has_a_health_check(name: str) -> None:
    check = OURS[name].get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert check["test"][:3] == ["CMD", "imageextract", "health"]
    assert check["test"][3] == {"api": "api", "beat": "beat"}.get(name, "worker")


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_service_of_ours_runs_a_command_the_readme_documents(name: str) -> None:
    command = " ".join(OURS[name]["command"])
    assert command.startswith("imageextract ")
    assert command in (ROOT / "README.md").read_text(), f"README does not show `{command}`"


@pytest.mark.parametrize(("service", "name", "value"), _environments())
def test_no_secret_is_written_in_the_file(service: str, name: str, value: str) -> None:
    if SECRET_NAME.search(name):
        assert REQUIRED.match(value) or OPTIONAL.match(value), f"{service}: {name}={value}"
    for password in re.findall(r"://[^/@\s:]+:([^@\s]+)@", value):
        assert REQUIRED.match(password), f"{service}: {name} holds a password"


def test_every_required_variable_is_in_env_example_and_the_provider_defaults_to_local() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "IMAGEEXTRACT_S3_SECRET_ACCESS_KEY"} <= (
        required
    )
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required <= set(example)
    # The example holds no secret: the user makes each one.
    assert all(not example[name] for name in required if SECRET_NAME.search(name))
    for service in OURS.values():
        provider = service["environment"]["IMAGEEXTRACT_MODEL_PROVIDER"]
        assert provider == "${IMAGEEXTRACT_MODEL_PROVIDER:-local}"


def test_the_app_does_not_use_minios_root_account() -> None:
    for service in OURS.values():
        used = " ".join(str(value) for value in service["environment"].values())
        assert "MINIO_ROOT" not in used


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_image_is_pinned_to_a_release(name: str) -> None:
    image = SERVICES[name]["image"]
    repository, _, tag = image.rpartition(":")
    assert repository, f"{name}: {image} has no tag"
    assert tag != "latest"
    assert re.search(r"\d+\.\d+|RELEASE\.\d{4}", tag), f"{name}: {image} is not a release"


def test_the_api_can_be_scaled_and_beat_keeps_its_state() -> None:
    (ports,) = SERVICES["api"]["ports"]
    host, _, container = str(ports).rpartition(":")
    assert container == "8000"
    # A range of host ports: `--scale api=N` gives each replica its own.
    assert re.fullmatch(r"\$\{[A-Z_]+:-\d+-\d+\}", host), ports
    data_dir = SERVICES["beat"]["environment"]["IMAGEEXTRACT_DATA_DIR"]
    volumes = [str(volume) for volume in SERVICES["beat"]["volumes"]]
    assert any(volume.endswith(f":{data_dir}") for volume in volumes)
    assert "/tmp" not in " ".join(SERVICES["beat"]["command"])


def test_the_dockerfile_uses_a_pinned_base_image() -> None:
    (base,) = re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert re.search(r":\d+\.\d+\.\d+", base), base
