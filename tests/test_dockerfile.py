"""The Dockerfile passes hadolint, and its image would hold what the two roles need.

Building and running the image is `make container-test` (scripts/container_test.sh).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_what_train_and_serve_need() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S*bookworm", text, re.M)
    assert "COPY train.py inference.py requirements.txt /opt/ml/code/" in text
    assert "COPY multilabel /opt/ml/code/multilabel" in text
    assert 'ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]' in text
    assert re.search(r"^USER \$\{RUN_AS\}", text, re.M) and "ARG RUN_AS=1000" in text
    # Everything the image installs is pinned in requirements files the tests also use.
    for line in (ROOT / "requirements-container.txt").read_text().splitlines():
        if line and not line.startswith(("#", "-r")):
            assert re.search(r"(==|<)", line), line
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "exec train" in entrypoint and "serving.main()" in entrypoint
