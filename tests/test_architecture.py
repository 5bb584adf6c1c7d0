"""The layout's promises, read from the source: modules stay small, and imports flow one way,

    cli -> server -> training -> callbacks -> saving -> models -> plan -> layers -> maths -> backend / kernels

with no cycle. An import inside a function runs late, so it can point up without a cycle; the
only ones allowed are the model handing ``fit``, ``save``, ``export`` and Keras's files
(``keras_format``) to the rooms above it."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_LINES = 400

# Rank of each module (by dotted prefix; the longest match wins): an import may point only to
# an equal or lower rank. Equal ranks are one room (ops.* among themselves, say).
RANKS = {
    "minicnn.kernels": 0,
    "minicnn.backend": 1,
    "minicnn.fileio": 1,
    "minicnn._malloc": 1,
    "minicnn._threads": 1,
    "minicnn._version": 1,
    "minicnn.configurable": 1,  # get_config/from_config/repr shared by the small Keras objects
    "minicnn._missing": 1,
    "minicnn.tuning": 1,
    "minicnn.maths": 2,
    "minicnn.activations": 3,
    "minicnn.initializers": 3,
    "minicnn.regularizers": 3,
    "minicnn.constraints": 3,
    "minicnn.losses": 3,
    "minicnn.optimizers": 3,
    "minicnn.progbar": 3,
    "minicnn.data": 3,
    "minicnn.data_adapters": 3,  # generators and PyDatasets as sources, and Keras's epoch rules
    "minicnn.utils": 3,
    "minicnn.metrics": 3,
    "minicnn.state": 3,
    "minicnn.variables": 3,  # Keras's variable-like views of a layer's weights
    "minicnn.layers": 4,
    "minicnn.ops": 4,  # keras.ops: beside the layers (its ops are layer-like graph nodes)
    "minicnn.plan": 5,
    "minicnn.models": 6,
    "minicnn.saving": 7,
    "minicnn.keras_format": 7,  # Keras 3's files: .keras, .weights.h5, the config JSON
    "minicnn.keras_format.errors": 1,  # ModelFileError and the h5py check: imports nothing
    "minicnn.keras_format.registry": 3,  # custom objects by name, for utils and saving alike
    "minicnn.export": 7,
    "minicnn.export_layers": 7,  # the exporters of the activations and the newer layers
    "minicnn.callbacks": 8,
    "minicnn.training": 9,
    "minicnn.datasets": 9,
    "minicnn.preprocessing": 9,
    "minicnn.imagefile": 9,  # the bytes of one image, read for preprocessing
    "minicnn.plots": 9,
    "minicnn.server": 10,
    "minicnn.jsonhttp": 10,  # the server's HTTP layer: JSON answers and time limits
    "minicnn.distributed": 10,
    "minicnn.recipes": 10,
    "minicnn.runs": 10,  # a training run's checks and records, for the CLI
    "minicnn.cli": 11,  # the top, beside the package face it imports
    "minicnn": 11,  # the package's __init__: imports the public face of everything
}
LATE_UPWARD_ALLOWED = {
    ("minicnn.models", "minicnn.training"),
    ("minicnn.models", "minicnn.saving"),
    ("minicnn.models", "minicnn.export"),
    ("minicnn.models", "minicnn.keras_format"),  # save_weights, load_weights, to_json, clone_model
}


def _modules():
    """{dotted name: path} for every module of the installed package (kernels/ is minicnn.kernels)."""
    found = {}
    for base, prefix in ((ROOT / "minicnn", "minicnn"), (ROOT / "kernels", "minicnn.kernels")):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([prefix, *parts])] = path
    return found


MODULES = _modules()


def _rank(module: str) -> int:
    best = max((p for p in RANKS if module == p or module.startswith(p + ".")), key=len)
    return RANKS[best]


def _package(module: str, path: pathlib.Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str, path: pathlib.Path):
    """(target module, at module level?) for each import of a minicnn module in ``path``."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    top_level |= {id(n) for node in tree.body if isinstance(node, ast.If) for n in node.body}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _package(module, path).split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            for a in node.names:  # `from pkg import name`: the submodule if there is one
                sub = f"{base}.{a.name}"
                names.append(sub if sub in MODULES else base)
        for name in names:
            if name.startswith("minicnn"):
                yield name, id(node) in top_level


def test_every_module_is_placed():
    unplaced = [m for m in MODULES if not any(m == p or m.startswith(p + ".") for p in RANKS)]
    assert not unplaced, f"give these modules a rank in RANKS: {unplaced}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines (at most {MAX_LINES})"


def test_imports_flow_one_way():
    wrong = []
    for module, path in MODULES.items():
        for target, top in _imports(module, path):
            late_ok = not top and any(
                (module == a or module.startswith(a + "."))
                and (target == b or target.startswith(b + "."))
                for a, b in LATE_UPWARD_ALLOWED
            )
            if _rank(target) > _rank(module) and not late_ok:
                wrong.append(f"{module} -> {target}{'' if top else ' (in a function)'}")
    assert not wrong, "imports pointing up the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle():
    graph = {
        m: {t for t, top in _imports(m, p) if top and t in MODULES} for m, p in MODULES.items()
    }
    done, path = set(), []

    def visit(m):
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m) :] + [m]))
        if m in done:
            return
        path.append(m)
        for t in sorted(graph[m]):
            if t != m:
                visit(t)
        path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


def test_the_checks_can_fail(tmp_path, monkeypatch):
    """The rank rule catches an upward import, and the cycle search a cycle."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from minicnn import training\n")
    assert list(_imports("minicnn.maths.x", a)) == [("minicnn.training", True)]
    assert _rank("minicnn.training") > _rank("minicnn.maths.x")
    b.write_text("def f():\n    from minicnn.maths import conv\n")
    assert list(_imports("minicnn.models", b)) == [("minicnn.maths.conv", False)]
    monkeypatch.setitem(MODULES, "minicnn.maths.p", tmp_path / "p.py")
    monkeypatch.setitem(MODULES, "minicnn.maths.q", tmp_path / "q.py")
    (tmp_path / "p.py").write_text("from minicnn.maths import q\n")
    (tmp_path / "q.py").write_text("from minicnn.maths import p\n")
    with pytest.raises(AssertionError, match="import cycle"):
        test_no_import_cycle()
