"""Every public name of the package has a docstring, and so has every
public method and property of its classes (the issue's "docstrings on every
public name"), including those the native module defines."""

import inspect

import shmring


def _undocumented():
    missing = []
    for name in shmring.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(shmring, name)
        if not (getattr(obj, "__doc__", None) or "").strip():
            missing.append(name)
        if not inspect.isclass(obj):
            continue
        for attr in dir(obj):
            if attr.startswith("_"):
                continue
            owner = next((k for k in inspect.getmro(obj) if attr in vars(k)), None)
            if owner is None or owner.__module__ == "builtins":
                continue
            static = inspect.getattr_static(obj, attr)
            if isinstance(static, (classmethod, staticmethod)):
                static = static.__func__
            if not (callable(static) or isinstance(static, property)
                    or type(static).__name__ == "getset_descriptor"):
                continue
            if not (getattr(static, "__doc__", None) or "").strip():
                missing.append("%s.%s" % (name, attr))
    return missing


def test_every_public_name_has_a_docstring():
    assert _undocumented() == []


def test_the_check_sees_a_missing_docstring():
    class Undocumented:
        def method(self):
            pass

    shmring.Undocumented = Undocumented
    shmring.__all__.append("Undocumented")
    try:
        assert set(_undocumented()) == {"Undocumented", "Undocumented.method"}
    finally:
        shmring.__all__.remove("Undocumented")
        del shmring.Undocumented
