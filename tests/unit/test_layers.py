"""The package graph points one way (docs/architecture.md, "Layers").

Why a test: a cycle between packages is invisible in review (each import looks
harmless on its own) and it is what makes a package impossible to reuse or test
alone; six packages had grown into one loop before this test existed.

How: the graph is computed from the source with `ast`, not by importing it.
Counted: every import that runs, module-level or inside a function, relative ones
resolved. Not counted: imports under ``if TYPE_CHECKING:`` (annotations only),
and names a module imports by string (`importlib.import_module`). A package is a
folder of ``postier/`` or a top-level module (``metrics.py``); ``postier`` is the
package root itself (``postier/__init__.py``).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "postier"

#: bottom first; a package may import its own layer or a lower one, and no two
#: packages may import each other, even through others (within a layer too)
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("nouns", frozenset({"mail", "postier"})),
    ("base", frozenset({"config", "mime", "dns", "durable", "deadline", "offload", "metrics"})),
    ("storage", frozenset({"store"})),
    (
        "protocols and policies",
        frozenset({"mailauth", "auth", "filters", "queue", "smtp", "imap", "pop3", "ops"}),
    ),
    ("adapters and composition root", frozenset({"server", "web"})),
    ("command line", frozenset({"cli", "__main__"})),
)
#: packages that import no other postier package at all
LEAVES = frozenset({"mail"})

Edges = dict[tuple[str, str], list[str]]  # (importer, imported) -> ["file:line", ...]


def _module_name(path: Path, root: Path) -> list[str]:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _package_of(module: list[str], root: Path) -> str:
    """The package a dotted module name (starting with the root's name) is in."""
    if len(module) == 1:
        return root.name
    return module[1]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that runs, skipping the bodies of ``if TYPE_CHECKING:``
    (their ``else:`` runs, so it is kept)."""
    out: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _targets(
    node: ast.Import | ast.ImportFrom, module: list[str], is_pkg: bool, root: Path
) -> list[list[str]]:
    """The dotted names (as lists) one import statement loads from the root package."""
    if isinstance(node, ast.Import):
        return [a.name.split(".") for a in node.names if a.name.split(".")[0] == root.name]
    if node.level:
        base = module if is_pkg else module[:-1]
        base = base[: len(base) - (node.level - 1)]
        if not base:
            raise ValueError(f"relative import beyond the root in {'.'.join(module)}")
        mod = base + (node.module.split(".") if node.module else [])
    else:
        mod = (node.module or "").split(".")
    if mod[0] != root.name:
        return []
    if len(mod) > 1:
        return [mod]
    # "from postier import x": x is a package or top-level module, or a name of the root
    out = []
    for alias in node.names:
        sub = root / alias.name
        if sub.is_dir() or sub.with_suffix(".py").is_file():
            out.append([root.name, alias.name])
        else:
            out.append([root.name])
    return out


def import_graph(root: Path) -> Edges:
    """Package-level import edges of the tree under `root`, each with where it is made."""
    edges: Edges = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        src = _package_of(module, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _runtime_imports(tree):
            for target in _targets(node, module, path.name == "__init__.py", root):
                dst = _package_of(target, root)
                if dst != src:
                    where = f"{path.relative_to(root.parent)}:{node.lineno}"
                    edges[(src, dst)].append(where)

    def key(where: str) -> tuple[str, int]:
        file, _, line = where.rpartition(":")
        return file, int(line)

    return {edge: sorted(set(where), key=key) for edge, where in edges.items()}


def cycles(edges: Edges) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    succ: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted({p for edge in edges for p in edge}):
        if v not in index:
            visit(v)
    return sorted(out)


def describe_cycles(edges: Edges) -> str:
    """Each cycle with the edges inside it and the files that make them."""
    lines = []
    for comp in cycles(edges):
        lines.append("cycle: " + ", ".join(comp))
        for (a, b), where in sorted(edges.items()):
            if a in comp and b in comp:
                lines.append(f"  {a} -> {b}: {', '.join(where)}")
    return "\n".join(lines)


def layer_problems(
    edges: Edges, layers: tuple[tuple[str, frozenset[str]], ...], leaves: frozenset[str]
) -> list[str]:
    """Packages missing from the table, imports pointing up, imports out of a leaf."""
    rank = {pkg: i for i, (_, pkgs) in enumerate(layers) for pkg in pkgs}
    names = [name for name, _ in layers]
    out = []
    for pkg in sorted({p for edge in edges for p in edge} - rank.keys()):
        out.append(f"{pkg}: in no layer (add it to LAYERS and to docs/architecture.md)")
    for (a, b), where in sorted(edges.items()):
        if a in leaves:
            out.append(f"{a} -> {b}: {a} imports no postier package: {', '.join(where)}")
        elif a in rank and b in rank and rank[b] > rank[a]:
            out.append(
                f"{a} ({names[rank[a]]}) -> {b} ({names[rank[b]]}): points up: {', '.join(where)}"
            )
    return out


def _packages(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()} | {
        p.stem for p in root.glob("*.py") if p.name != "__init__.py"
    }


def test_no_cycle_between_packages() -> None:
    edges = import_graph(ROOT)
    assert ("smtp", "mail") in edges  # the graph is not empty by mistake
    assert not cycles(edges), "\n" + describe_cycles(edges)


def test_imports_point_down_the_layers() -> None:
    problems = layer_problems(import_graph(ROOT), LAYERS, LEAVES)
    assert not problems, "\n" + "\n".join(problems)


def test_every_package_has_a_layer() -> None:
    placed = {pkg for _, pkgs in LAYERS for pkg in pkgs}
    assert _packages(ROOT) | {"postier"} == placed


# --- the checks themselves fail when they should --------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "postier"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for d in [pkg, *(p for p in pkg.rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    return pkg


def test_a_cycle_through_a_function_local_relative_import_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "a/x.py": "from postier.b import y\n",
            "b/y.py": "def f():\n    from ..a import x\n    return x\n",
            "c/z.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from postier.a import x\n",
            "a/w.py": "import typing\nif typing.TYPE_CHECKING:\n    from postier.c import z\n",
        },
    )
    edges = import_graph(root)
    assert edges == {("a", "b"): ["postier/a/x.py:1"], ("b", "a"): ["postier/b/y.py:2"]}
    assert cycles(edges) == [["a", "b"]]
    assert describe_cycles(edges) == (
        "cycle: a, b\n  a -> b: postier/a/x.py:1\n  b -> a: postier/b/y.py:2"
    )


def test_a_longer_cycle_and_the_else_of_type_checking_are_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "a/__init__.py": "from . import inner\nfrom postier import b\n",
            "a/inner.py": "",
            "b/__init__.py": "import postier.c.deep\n",
            "c/deep.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    pass\nelse:\n    from ..a import inner\n",
            "d.py": "from postier import a, __version__\n",
        },
    )
    (root / "__init__.py").write_text("__version__ = '0'\n")
    edges = import_graph(root)
    assert set(edges) == {("a", "b"), ("b", "c"), ("c", "a"), ("d", "a"), ("d", "postier")}
    assert cycles(edges) == [["a", "b", "c"]]


def test_layer_problems_name_upward_imports_leaves_and_unplaced_packages(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "mail/n.py": "from postier.low import q\n",
            "low/q.py": "from postier.high import h\n",
            "high/h.py": "from postier.low import q\nfrom postier.new import s\n",
            "new/s.py": "",
        },
    )
    layers = (("bottom", frozenset({"mail", "low"})), ("top", frozenset({"high"})))
    problems = layer_problems(import_graph(root), layers, frozenset({"mail"}))
    assert problems == [
        "new: in no layer (add it to LAYERS and to docs/architecture.md)",
        "low (bottom) -> high (top): points up: postier/low/q.py:1",
        "mail -> low: mail imports no postier package: postier/mail/n.py:1",
    ]


@pytest.mark.parametrize("level", [1, 2])
def test_a_relative_import_resolves_from_the_module_not_the_file(
    tmp_path: Path, level: int
) -> None:
    dots = "." * level
    root = _tree(tmp_path, {"a/sub/m.py": f"from {dots} import other\n", "a/sub/other.py": ""})
    # ".": postier.a.sub (same package a); "..": postier.a — neither leaves package a
    assert import_graph(root) == {}


def test_the_store_never_parses_a_message() -> None:
    """Intake parses each message once and hands the store its summary
    (`store.models.NewMessage`): no storage backend imports the parser."""
    where = import_graph(ROOT).get(("store", "mime"), [])
    # the one exception: schema migrations read stored ENVELOPEs (the Date: zone,
    # the Bcc: addresses of messages stored before the summary had them)
    migrations = ("postier/store/sqlite/schema.py:", "postier/store/postgres/schema.py:")
    assert [w for w in where if not w.startswith(migrations)] == []
