"""What a training job and an endpoint receive: the scripts and exactly the modules they import;
and the rooms of the package: no cycle, nothing imports a room above its own."""

from __future__ import annotations

import ast
from pathlib import Path

from multilabel.core.job_source import (
    JOB_FILES,
    PACKAGE_DIR,
    PROJECT_DIR,
    job_modules,
    package_imports,
    stage_job_source,
)

TRAINING_ONLY = {
    "training.pipeline",
    "data.dataset",
    "training.metrics",
    "training.reporting",
    "training.arguments",
    "training.checkpoints",
}
# The rooms by where their code runs, lowest first: a module imports its own room or lower
# ones, and the three rooms at the top (the three programs) import each other only where said.
LAYERS = {"core": 0, "text": 1, "data": 2, "training": 3, "serving": 3, "sagemaker": 3}
SIDEWAYS = {
    # launch.py checks --hp with train.py's own parser (only where transformers is installed).
    ("sagemaker", "training"),
    # launch.py and Batch Transform name the endpoint's limits (request_codec: standard library).
    ("sagemaker", "serving"),
}


def imported_modules(source: Path) -> set[str]:
    """The package modules (`serving.classifier`) one file imports (nested imports included)."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("multilabel"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")[1:]
            for end in range(len(parts), 0, -1):
                if PACKAGE_DIR.joinpath(*parts[:end]).with_suffix(".py").is_file():
                    found.add(".".join(parts[:end]))
                    break
    return found


def package_graph() -> dict[str, set[str]]:
    """Every module of the package (`room.module`, or a top-level entry point) -> what it imports."""
    return {
        ".".join(p.relative_to(PACKAGE_DIR).with_suffix("").parts): imported_modules(p)
        for p in PACKAGE_DIR.rglob("*.py")
        if p.name != "__init__.py"
    }


def test_the_endpoint_imports_no_training_data_or_launch_module() -> None:
    serving = package_imports(PROJECT_DIR / "inference.py")
    assert {"serving.classifier", "serving.request_codec"} <= serving, f"handler imports: {sorted(serving)}"
    rooms = {m.split(".")[0] for m in serving}
    assert rooms <= {"core", "text", "serving"}, f"endpoint would ship {sorted(serving)}"


def test_a_staged_job_holds_its_scripts_and_a_closed_set_of_modules(tmp_path: Path) -> None:
    staged = stage_job_source(tmp_path / "source")
    assert {p.name for p in staged.iterdir() if p.is_file()} == set(JOB_FILES)
    package = staged / "multilabel"
    modules = {
        ".".join(p.relative_to(package).with_suffix("").parts)
        for p in package.rglob("*.py")
        if p.name != "__init__.py"
    }
    assert modules == job_modules()
    assert all((package / room / "__init__.py").is_file() for room in {m.split(".")[0] for m in modules})
    assert modules >= TRAINING_ONLY, "train.py's own modules are missing from the job"
    assert not {m for m in modules if m.startswith("sagemaker.")}, "launch-side modules shipped to the job"
    # Closed: every module a staged file imports is staged too.
    for source in [staged / "train.py", staged / "inference.py", *package.rglob("*.py")]:
        missing = imported_modules(source) - modules
        assert not missing, f"{source.name} imports {sorted(missing)}, not staged"


def test_the_rooms_have_no_cycle_and_nothing_imports_upward() -> None:
    graph = package_graph()
    entry_points = {m for m in graph if "." not in m}  # public paths kept for commands and the API
    assert entry_points == {"artifact", "classifier", "onnx_export", "serve"}
    upward = []
    for module, imports in graph.items():
        if module in entry_points:
            continue
        room = module.split(".")[0]
        for target in imports:
            other = target.split(".")[0]
            if other == room or LAYERS[other] < LAYERS[room] or (room, other) in SIDEWAYS:
                continue
            upward.append(f"{module} -> {target}")
    assert not upward, f"imports against the layering: {upward}"
    # No cycle among modules (depth-first search with colours).
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph.get(module, ()):
            assert state.get(target) != 1, f"import cycle: {' -> '.join([*path, module, target])}"
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])
