"""Who may import whom in zkpy: the benchmark package stays a leaf of the tree, without cycles.

Every module under zkpy/ is parsed with ast (not imported) and every `import x` / `from x import
y` at any depth (inside functions too) counts, except under `if __name__ == "__main__":` (what
`python -m` runs is not an import of the module). Issue 16: the pseudo-cluster command does not
import the benchmark package, one harness (zkpy.testing.harness) starts servers for tests,
benchmarks and zkpy-cluster, one ensemble class (zkpy.testing.ensemble) builds on it, neither
imports pytest or kazoo, and the bench modules import each other without cycles.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "zkpy"


def _module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_main_guard(node):
    t = node.test
    return (isinstance(node, ast.If) and isinstance(t, ast.Compare)
            and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__"
                    for c in t.comparators))


def _walk(node):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_main_guard(child):
            continue
        yield child
        yield from _walk(child)


def imports(name, zkpy_only=True):
    """The zkpy modules `name` imports (a `from pkg import sub` names pkg.sub when it is one);
    every module it imports with zkpy_only=False."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = "%s.%s" % (base, a.name)
                found.add(sub if sub in MODULES else base)
    return {m for m in found if not zkpy_only or m == "zkpy" or m.startswith("zkpy.")}


def _in(name, package):
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("name", [n for n in MODULES if not _in(n, "zkpy.bench")])
def test_only_the_bench_package_imports_zkpy_bench(name):
    bad = sorted(m for m in imports(name) if _in(m, "zkpy.bench"))
    assert not bad, "%s imports %s: nothing outside zkpy/bench may" % (name, ", ".join(bad))


def test_zkpy_cluster_uses_the_harness_not_the_benchmark():
    deps = set()
    for name in MODULES:
        if _in(name, "zkpy.cli"):
            deps |= imports(name)
    assert "zkpy.testing.harness" in deps
    assert not any(_in(m, "zkpy.bench") for m in deps)


def test_harness_imports_nothing_from_zkpy():
    # It runs servers, it is not one: tests, zkpy.bench and zkpy-cluster build on it.
    assert imports("zkpy.testing.harness") == set()


def test_the_one_ensemble_builds_on_the_harness_without_pytest_or_kazoo():
    # Issue 16: zkpy.testing.ensemble is the ensemble of the tests, zkpy.bench and zkpy-cluster;
    # what needs pytest or kazoo stays in tests/compat.
    assert imports("zkpy.testing.ensemble") == {"zkpy.testing.harness", "zkpy.testing.proxy"}
    assert imports("zkpy.testing.proxy") == set()
    for name in ("zkpy.testing.harness", "zkpy.testing.ensemble", "zkpy.testing.proxy"):
        bad = sorted(m for m in imports(name, zkpy_only=False)
                     if m.split(".")[0] in ("pytest", "kazoo"))
        assert not bad, "%s imports %s" % (name, ", ".join(bad))


def _cycle(graph):
    """One import cycle of `graph` ({module: {module}}) as a list of modules, or None."""
    state = {}                      # 1: on the DFS stack, 2: done

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, stack)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_bench_modules_have_no_import_cycles():
    bench = {n: {m for m in imports(n) if _in(m, "zkpy.bench") and m != "zkpy.bench"}
             for n in MODULES if _in(n, "zkpy.bench")}
    cycle = _cycle(bench)
    assert cycle is None, "import cycle: %s" % " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_workers_have_a_folder_and_the_server_starts_them_in_one_place():
    """Issue 16: worker processes, the supervisor and their IPC live in zkpy.workers; below the
    CLI only the core's process shell (zkpy.server.standalone) starts them, and nothing below
    the CLI imports the CLI."""
    for gone in ("zkpy.server.worker", "zkpy.server.supervisor", "zkpy.server.ipc"):
        assert gone not in MODULES, gone
    users = sorted(name for name in MODULES
                   if not name.startswith(("zkpy.workers", "zkpy.cli"))
                   and any(m.startswith("zkpy.workers") for m in imports(name)))
    assert users == ["zkpy.server.standalone"], users
    below_cli = sorted(name for name in MODULES if not name.startswith("zkpy.cli")
                       and any(m.startswith("zkpy.cli") for m in imports(name)))
    assert below_cli == [], below_cli
