"""The package layout's import rules, read from the AST of every module in shipit/.

- no import cycles between shipit's modules (imports inside functions count too);
- docker-py is imported only under shipit/adapters/engine/, boto3 and botocore only under
  shipit/adapters/ecr/;
- imports point down: cli -> services -> output -> adapters, context, config -> model, errors;
- no function in shipit/ over 60 lines, no class over 300 (decorators and docstrings count);
- the process environment is read only in shipit/settings.py (everything else takes a mapping).

`layout_violations(package_dir)` takes any checkout's shipit/ folder, so the rules can be held
against an older tree as well (`git worktree add /tmp/old <commit>`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "shipit"

# Third-party top-level packages and the one folder allowed to import them.
CONFINED = {
    "docker": "shipit.adapters.engine",
    "boto3": "shipit.adapters.ecr",
    "botocore": "shipit.adapters.ecr",
    "mypy_boto3_ecr": "shipit.adapters.ecr",
    "mypy_boto3_sts": "shipit.adapters.ecr",
    "mypy_boto3_iam": "shipit.adapters.ecr",
}

# Layers from the top; a module may import its own layer or any layer below it.
LAYERS: list[tuple[str, ...]] = [
    ("shipit.__main__", "shipit.cli"),
    ("shipit.services",),
    ("shipit.output",),
    ("shipit.adapters", "shipit.context", "shipit.config", "shipit.settings"),
    (
        "shipit.model",
        "shipit.errors",
        "shipit.reference",
        "shipit.platforms",
        "shipit.text",
        "shipit",
    ),
]


def module_names(package_dir: Path) -> dict[str, Path]:
    """Every module under `package_dir` by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(dotted name, line) of every import in the module, wherever it stands."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
            yield base, node.lineno


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {shipit module it imports: line}; `from pkg import sub` counts as `pkg.sub`."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        names = list(imported_names(module, path))
        for name, line in names:
            if name in modules and name != module:
                edges.setdefault(name, line)
        # `from pkg import name` yields both `pkg.name` and `pkg`: keep `pkg` only when no
        # submodule of it was named by that statement.
        for name, line in names:
            if name in edges and any(
                other.startswith(name + ".") and other in edges and edges[other] == line
                for other in edges
            ):
                del edges[name]
        graph[module] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def layer_of(module: str) -> int:
    """The layer's rank from the top; len(LAYERS) for a module outside every layer."""
    best = (-1, len(LAYERS))
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            nested = prefix != "shipit" and module.startswith(prefix + ".")
            if (module == prefix or nested) and len(prefix) > best[0]:
                best = (len(prefix), rank)
    return best[1]


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layout_violations(package_dir: Path) -> list[str]:
    """Every broken rule, one line each, for the shipit package at `package_dir`."""
    modules = module_names(package_dir)
    graph = import_graph(modules)
    problems = [f"import cycle: {' <-> '.join(cycle)}" for cycle in find_cycles(graph)]
    for module, path in modules.items():
        for name, line in imported_names(module, path):
            top = name.split(".")[0]
            home = CONFINED.get(top)
            if home and not within(module, home):
                problems.append(f"{module}:{line} imports {top} outside {home}")
        for target, line in graph[module].items():
            if layer_of(target) < layer_of(module) < len(LAYERS):
                problems.append(f"{module}:{line} imports {target}, a layer above it")
    return sorted(set(problems))


MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 300


def oversized(package_dir: Path) -> list[str]:
    """Every function over MAX_FUNCTION_LINES and class over MAX_CLASS_LINES, one line each."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                limit, kind = MAX_FUNCTION_LINES, "function"
            elif isinstance(node, ast.ClassDef):
                limit, kind = MAX_CLASS_LINES, "class"
            else:
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = (node.end_lineno or node.lineno) - first + 1
            if lines > limit:
                where = path.relative_to(package_dir.parent)
                found.append(f"{where}:{node.lineno} {kind} {node.name}: {lines} lines")
    return found


def test_no_function_over_60_lines_and_no_class_over_300() -> None:
    assert oversized(PACKAGE) == []


def test_the_size_rule_catches_a_long_function_and_a_long_class(tmp_path: Path) -> None:
    package = tmp_path / "shipit"
    package.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    (package / "a.py").write_text(f"def long():\n{body}\n\ndef short():\n    return 1\n")
    methods = "".join(f"    def m{i}(self):\n        return {i}\n\n" for i in range(101))
    (package / "b.py").write_text(f"class Big:\n{methods}class Small:\n    pass\n")
    assert oversized(package) == [
        "shipit/a.py:1 function long: 61 lines",
        "shipit/b.py:1 class Big: 303 lines",
    ]


def environment_reads(package_dir: Path) -> list[str]:
    """Every `os.environ` / `os.getenv` outside shipit/settings.py, as path:line."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        if path == package_dir / "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            name = (
                node.attr
                if isinstance(node, ast.Attribute)
                else node.name
                if isinstance(node, ast.alias)
                else None
            )
            if name in ("environ", "getenv", "environb", "getenvb"):
                found.append(f"{path.relative_to(package_dir.parent)}:{node.lineno}")
    return found


def test_the_environment_is_read_only_in_settings(tmp_path: Path) -> None:
    assert environment_reads(PACKAGE) == []
    (tmp_path / "shipit").mkdir()
    (tmp_path / "shipit/settings.py").write_text("import os\nENV = dict(os.environ)\n")
    (tmp_path / "shipit/a.py").write_text("import os\nX = os.getenv('HOME')\n")
    (tmp_path / "shipit/b.py").write_text("from os import environ\n")
    assert environment_reads(tmp_path / "shipit") == ["shipit/a.py:2", "shipit/b.py:1"]


def test_the_layout_has_no_import_cycles_and_confines_docker_and_boto3() -> None:
    assert layout_violations(PACKAGE) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"shipit/a.py": "import shipit.b\n", "shipit/b.py": "def f():\n    import shipit.a\n"},
            "import cycle: shipit.a <-> shipit.b",
        ),
        ({"shipit/services/x.py": "import docker\n"}, "shipit.services.x:1 imports docker"),
        ({"shipit/cli/x.py": "from botocore import exceptions\n"}, "imports botocore outside"),
        ({"shipit/model.py": "from shipit.services import build\n"}, "a layer above it"),
        ({"shipit/output/x.py": "from ..cli import app\n"}, "shipit.output.x:1 imports shipit.cli"),
    ],
)
def test_each_rule_catches_its_violation(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    for name in ("shipit/__init__.py", "shipit/services/__init__.py", "shipit/cli/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "shipit/services/build.py").write_text("")
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    problems = layout_violations(tmp_path / "shipit")
    assert any(expected in problem for problem in problems), problems


def test_adapters_may_import_docker_and_boto3_in_their_own_packages(tmp_path: Path) -> None:
    for name, text in {
        "shipit/__init__.py": "",
        "shipit/adapters/__init__.py": "",
        "shipit/adapters/engine/__init__.py": "",
        "shipit/adapters/engine/client.py": "import docker.errors\n",
        "shipit/adapters/ecr/__init__.py": "import boto3\nfrom botocore.config import Config\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert layout_violations(tmp_path / "shipit") == []
