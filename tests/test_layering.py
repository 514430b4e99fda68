"""Imports point one way: each module imports only its own layer and the layers below it, and no module set
imports itself round a cycle (imports inside functions count; ``TYPE_CHECKING`` blocks do not)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("schema", "errors", "config", "_version", "progress", "events", "policy")),
    ("data", ("data",)),
    ("text", ("encoders", "encoder_tuning", "onnx_encoder", "costs", "features")),
    ("graph", ("graph",)),
    ("nn", ("nn",)),
    ("training", ("training", "distributed")),
    (
        "routers",
        (
            "explain",
            "base",
            "router",
            "baselines",
            "users",
            "state",
            "onboarding",
            "probes",
            "prior",
            "inference",
            "replay",
            "_serialization",
            "tuning",
            "uncertainty",
            "fallback",
            "exploration",
        ),
    ),
    ("evaluation", ("metrics", "evaluation", "ope", "learning", "bench")),
    ("apps", ("cli", "__init__")),
]


def modules() -> dict[str, Path]:
    found = {}
    for package in ("graphroute", "serving"):
        for path in (ROOT / package).rglob("*.py"):
            found[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return found


def layer_of(module: str) -> int:
    if module == "graphroute" or module.startswith("serving"):
        return len(LAYERS) - 1
    first = module.split(".")[1]
    return next(i for i, (_, names) in enumerate(LAYERS) if first in names)


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            }
    return {name for name in out if name in known}


def test_every_module_has_a_layer() -> None:
    for module in modules():
        assert layer_of(module) >= 0, module


def test_imports_never_point_up() -> None:
    known = modules()
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, path in known.items()
        for target in imports(path, known)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    known = modules()
    graph = {module: imports(path, known) - {module} for module, path in known.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
