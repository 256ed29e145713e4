"""The training job's `pip install -r requirements.txt` cannot fail or reinstall on the real container.

pip's own resolver, in dry-run mode, resolves requirements.txt for the container's platform
(CPython 3.12, manylinux x86_64, glibc 2.35) with the versions the container already holds
(constraints-training-container.txt) as constraints. A requirement that conflicts with the
container, or pins another version of a package it holds (a download and reinstall at every
job start), fails resolution here instead of a billed job.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # pip resolves against the package index

REQUIREMENTS = ROOT / "requirements.txt"
CONTAINER_PINS = ROOT / "constraints-training-container.txt"
# pip 25.3 and newer resolve --dry-run from metadata alone (pip PR 13482); older ones
# download every wheel, torch 2.8.0's CUDA libraries included (about 4 GB).
PIP_VERSION = "26.3"
PYTHON_VERSION = "3.12"
# Ubuntu 22.04 has glibc 2.35; pip does not expand manylinux_2_X tags downwards by itself.
PLATFORMS = ["manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 36))]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(path: Path) -> dict[str, str]:
    """`name==version` lines of a requirements or constraints file, by canonical name."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*(#.*)?", line)
        if match:
            pins[canonical(match[1])] = match[2]
    return pins


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#")[0])
        if match:
            names.add(canonical(match[1]))
    return names


@pytest.fixture(scope="module")
def pip(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, str]]:
    """A pinned pip, installed beside (not into) this environment: command and environment."""
    target = tmp_path_factory.mktemp("pip")
    pip_spec = f"pip=={PIP_VERSION}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--target",
            str(target),
            pip_spec,
        ],
        check=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    command = [sys.executable, "-m", "pip"]
    version = subprocess.run([*command, "--version"], env=env, capture_output=True, text=True, check=True)
    assert version.stdout.startswith(f"pip {PIP_VERSION} from {target}"), version.stdout
    return command, env


def test_container_pins_parse() -> None:
    pins = pinned(CONTAINER_PINS)
    assert pins["torch"] == "2.8.0" and pins["transformers"] == "4.56.2" and len(pins) == 10
    assert pinned(REQUIREMENTS)["transformers"] == pins["transformers"]
    # The container brings its own CUDA build of torch: requirements.txt must not ask for one.
    assert "torch" not in requirement_names(REQUIREMENTS)


@pytest.mark.timeout(900)
def test_requirements_resolve_on_the_training_container(
    pip: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    command, env = pip
    report = tmp_path / "report.json"
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    result = subprocess.run(
        [
            *command,
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-cache-dir",
            "--report",
            str(report),
            "--python-version",
            PYTHON_VERSION,
            "--only-binary=:all:",
            *platforms,
            # Where the index advertises no PEP 658 metadata, read it with HTTP range requests.
            "--use-feature=fast-deps",
            "-r",
            str(REQUIREMENTS),
            "-c",
            str(CONTAINER_PINS),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        "requirements.txt does not resolve on the training container:\n"
        + result.stdout[-3000:]
        + result.stderr[-3000:]
    )
    assert "Downloading torch" not in result.stdout, "pip downloaded wheels: metadata-only resolution is off"
    resolved = {
        canonical(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    pins = pinned(CONTAINER_PINS)
    # What the job resolves of the container's own packages is exactly what it already holds,
    # so pip installs nothing over them (torch comes in through accelerate's requirement).
    held = {name: resolved[name] for name in pins if name in resolved}
    assert held == {name: pins[name] for name in held}
    assert {"torch", "transformers", "datasets", "accelerate", "huggingface-hub"} <= held.keys()
    assert set(pinned(REQUIREMENTS)) <= resolved.keys()
