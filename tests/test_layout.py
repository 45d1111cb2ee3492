"""The package's shape: no import circles, and inference never loads training code."""

import ast
import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
INFERENCE = ["emovox.predict", "emovox.serve", "emovox.export", "emovox.live", "emovox.segment", "emovox.models",
             "emovox.bundled", "emovox.batch"]
TRAINING = {"emovox.train", "emovox.experiment", "emovox.dataset", "emovox.settings", "emovox.cache",
            "emovox.splits", "emovox.baseline", "emovox.calibrate", "emovox.augment", "emovox.corpora",
            "emovox.evaluate", "emovox.plots", "emovox.distributed", "emovox.cli", "emovox.conditions"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "emovox").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """emovox modules that ``name`` imports anywhere (top level or inside functions),
    except under ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.dump(node.test):
                for child in node.orelse:
                    self.visit(child)
            else:
                self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names if a.name.split(".")[0] == "emovox")

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "emovox":
                return
            for alias in node.names:  # `from emovox import audio` imports the module emovox.audio
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in known else module)

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_circle_in_the_package():
    graph = _graph()
    circles = sorted(name for name in graph if name in _reach(graph, name) and name != "emovox")
    assert circles == [], f"modules that import themselves through others: {circles}"


def test_inference_modules_reach_no_training_module_even_lazily():
    graph = _graph()
    for name in INFERENCE:
        reached = {m for m in _reach(graph, name) if m.split(".")[:2] != ["emovox", "serve"]} | {name}
        bad = sorted(m for m in reached if m in TRAINING or m.rpartition(".")[0] in TRAINING)
        assert bad == [], f"{name} imports training code: {bad}"


def test_importing_inference_modules_loads_no_training_module():
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in INFERENCE)
            + "print(json.dumps(sorted(m for m in sys.modules if m.startswith('emovox'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert set(INFERENCE) <= loaded
    bad = sorted(m for m in loaded if m in TRAINING or m.rpartition(".")[0] in TRAINING)
    assert bad == [], f"importing the inference modules loaded training code: {bad}"
