"""Code hashes follow exactly the code a rule runs (its imports), so partial reruns are exact."""

import pytest

from diffcomp.hashing import PACKAGE_ROOT, code_hash, import_closure, module_hash


def _pkg(tmp_path, files):
    root = tmp_path / "diffcomp"
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_closure_follows_imports_including_lazy_and_package_inits(tmp_path):
    root = _pkg(tmp_path, {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/a.py": "from . import b\n",
        "core/b.py": "import os\n",
        "core/unused.py": "",
        "plug/__init__.py": "",
        "plug/one.py": "from ..core.a import thing\ndef f():\n    from ..core import c\n",
        "plug/two.py": "import importlib\nimportlib.import_module('diffcomp.plug.one')\n",
        "core/c.py": "",
    })  # fmt: skip
    rel = lambda files: sorted(str(p.relative_to(root)) for p in files)  # noqa: E731
    assert rel(import_closure("diffcomp.plug.one", root=root)) == [
        "__init__.py", "core/__init__.py", "core/a.py", "core/b.py", "core/c.py", "plug/__init__.py", "plug/one.py"]
    assert rel(import_closure("diffcomp.plug.two", root=root)) == ["__init__.py", "plug/__init__.py", "plug/two.py"]
    assert "core/a.py" not in rel(import_closure("diffcomp.plug.one", skip=("diffcomp.core.a",), root=root))
    h = module_hash("diffcomp.plug.one", root=root)
    (root / "core/unused.py").write_text("x = 1\n")  # not imported: same hash
    (root / "plug/two.py").write_text("# another plug-in edited\n")
    assert module_hash("diffcomp.plug.one", root=root) == h
    (root / "core/b.py").write_text("import sys\n")  # imported two levels down: new hash
    from diffcomp import hashing

    hashing._module_hash.cache_clear()
    assert module_hash("diffcomp.plug.one", root=root) != h
    with pytest.raises(FileNotFoundError, match="no module"):
        import_closure("diffcomp.plug.nope", root=root)


def test_glob_hash_follows_file_contents_only(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    h1 = code_hash("a.py", root=tmp_path)
    (tmp_path / "b.py").write_text("y = 3\n")
    assert code_hash("a.py", root=tmp_path) == h1
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_hash("a.py", root=tmp_path) != h1
    with pytest.raises(FileNotFoundError, match="matches no file"):
        code_hash("methods/nope.py", root=tmp_path)


def test_no_plugin_hash_covers_another_plugin():
    """Every method's rule hash covers its own module and the core, never another method's module;
    the registries' own files never list a plug-in."""
    from diffcomp.calib.selectors import SELECTORS
    from diffcomp.distill.methods import DISTILLERS
    from diffcomp.methods import METHODS

    for registry, verb in ((METHODS, "quantize"), (DISTILLERS, "distill")):
        modules = {e.name: e.module for e in registry.entries()}
        for name, module in modules.items():
            files = {str(p.relative_to(PACKAGE_ROOT)) for p in import_closure(module, f"diffcomp.cli.{verb}")}
            own = module.removeprefix("diffcomp.").replace(".", "/")
            assert any(f.startswith(own) for f in files)
            for other, om in modules.items():
                if other != name and not module.startswith(om + "."):
                    assert not any(f.startswith(om.removeprefix("diffcomp.").replace(".", "/")) for f in files), (name, other)
    for entry in SELECTORS.entries():
        assert entry.module.startswith("diffcomp.calib.selectors.")


def test_the_package_has_no_import_cycle():
    """No module imports, at module level or inside a function, a module that imports it back (a
    package may import its own submodules lazily: that is how plug-in factories load their code)."""
    import ast

    graph = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        mod = "diffcomp." + ".".join(path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
        mod = mod.removesuffix(".__init__")
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        graph[mod] = set()

        def visit(node, lazy, mod=mod, pkg=pkg):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lazy = True
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("diffcomp"):
                    for d in [target] + [f"{target}.{a.name}" for a in node.names]:
                        if d != mod and not (lazy and d.startswith(mod + ".")):
                            graph[mod].add(d)
            for child in ast.iter_child_nodes(node):
                visit(child, lazy)

        visit(ast.parse(path.read_text()), False)

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            for d in graph.get(m, ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    cycles = [m for m in graph if m in reach(m)]
    assert not cycles, cycles
