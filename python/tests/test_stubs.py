"""The type stubs match what the modules export: `_shmring.pyi` names every
public class and function of the extension module (and nothing else), and
the public stubs name everything in `shmring.__all__`."""

import ast
import os

import shmring
from shmring import _shmring

PKG = os.path.dirname(shmring.__file__)

#: Private hooks of the test suite (python/src/testhooks.rs): kept out of
#: the stubs on purpose.
TEST_HOOKS = {"_forbid_syscalls", "_held_count"}

PUBLIC_STUBS = ["queues.pyi", "connection.pyi", "state.pyi", "pool.pyi"]


def stub_names(name):
    """Top-level names a stub defines (classes, functions, assignments,
    annotated names, imports `as` themselves), with each class's members."""
    with open(os.path.join(PKG, name)) as f:
        tree = ast.parse(f.read(), name)
    top, members = set(), {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            top.add(node.name)
            members[node.name] = {
                n.name if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) else n.target.id
                for n in node.body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
            }
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            top.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top.add(node.target.id)
        elif isinstance(node, ast.Assign):
            top.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            top.update(a.asname for a in node.names if a.asname == a.name)
    return top, members


def exported(names):
    return {n for n in names if not (n.startswith("__") and n.endswith("__"))} - TEST_HOOKS


def test_extension_stub_matches_the_module():
    top, members = stub_names("_shmring.pyi")
    assert "__version__" in top
    runtime = exported(dir(_shmring))
    assert runtime == exported(top), (
        f"in _shmring but not in _shmring.pyi: {sorted(runtime - exported(top))}; "
        f"in _shmring.pyi but not in _shmring: {sorted(exported(top) - runtime)}"
    )
    for cls, stubbed in members.items():
        obj = getattr(_shmring, cls)
        if issubclass(obj, BaseException):
            continue
        # Members the class itself defines (not inherited from object).
        own = exported(vars(obj)) | ({"__new__", "__len__", "__enter__", "__exit__"} & set(vars(obj)))
        assert own == stubbed, (
            f"{cls}: missing from the stub: {sorted(own - stubbed)}; "
            f"stubbed but absent: {sorted(stubbed - own)}"
        )


def test_test_hooks_stay_private():
    top, _ = stub_names("_shmring.pyi")
    assert not TEST_HOOKS & top
    assert not TEST_HOOKS & set(getattr(_shmring, "__all__", ()))
    for name in PUBLIC_STUBS:
        assert not TEST_HOOKS & stub_names(name)[0]
    assert not TEST_HOOKS & set(shmring.__all__)


def test_package_stub_all_matches():
    """__init__.pyi spells out shmring.__all__ (built from the submodules'
    lists at run time, which type checkers cannot follow)."""
    with open(os.path.join(PKG, "__init__.pyi")) as f:
        tree = ast.parse(f.read())
    (value,) = [
        n.value for n in tree.body
        if isinstance(n, ast.Assign) and [t.id for t in n.targets] == ["__all__"]
    ]
    assert ast.literal_eval(value) == shmring.__all__


def test_public_stubs_cover_all():
    stubbed = set()
    for name in PUBLIC_STUBS:
        stubbed |= stub_names(name)[0]
    missing = set(shmring.__all__) - stubbed - {"__version__"}
    assert not missing, f"in shmring.__all__ but in no public stub: {sorted(missing)}"
