"""minirun/codecache.py: modules served from one file, checked against their sources
like .pyc files. Each case builds a small package of its own in a temp dir and
imports it in a fresh interpreter, so the checkout's own cache is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from minirun import codecache

REPO = Path(__file__).resolve().parents[2]

MODULES = {
    "__init__.py": '"""the package"""\n',
    "a.py": '''
        """module a's docstring"""
        from . import b
        from .d import checked  # noqa: F401


        def f():
            """f's docstring"""
            return b.VALUE


        class K:
            """K's docstring"""
    ''',
    "d.py": '''
        """d: a module with an assert"""


        def checked(x):
            assert x > 0, "asserts stay"
            return x
    ''',
    "b.py": "VALUE = 1\n",
    "e.py": '''
        """e: postponed annotations"""
        from __future__ import annotations


        def g(x: NotDefinedAnywhere) -> None:
            return x


        class Rec:
            field: NotDefinedEither
    ''',
    "h.py": '''
        """h: reads its functions' annotations (as typer does, with get_type_hints)"""
        from __future__ import annotations


        def g(x: int) -> str:
            return str(x)
    ''',
    "c.py": '''
        """usage: c prints its own docstring"""
        TEXT = __doc__
    ''',
}

# imports the package with its cache installed, optionally saves, and reports what it saw
PROBE = textwrap.dedent('''
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, sys.argv[2])
    from minirun import codecache
    cache = codecache.Cache(os.path.join(sys.argv[1], "pkg"), "pkg")
    sys.meta_path.insert(0, cache)
    import pkg.a, pkg.c, pkg.e, pkg.h
    try:
        pkg.a.checked(0)
        asserted = False
    except AssertionError:
        asserted = True
    report = {"served": sorted(cache.served), "entries": sorted(cache.entries),
              "value": pkg.a.f(), "f_doc": pkg.a.f.__doc__, "k_doc": pkg.a.K.__doc__,
              "a_doc": pkg.a.__doc__, "c_text": pkg.c.TEXT, "asserted": asserted,
              "file": pkg.a.__file__, "f_file": pkg.a.f.__code__.co_filename, "future": "__future__" in sys.modules,
              "e_annotations": pkg.e.g.__annotations__, "e_line": pkg.e.g.__code__.co_firstlineno,
              "e_class_annotations": pkg.e.Rec.__annotations__, "h_annotations": pkg.h.g.__annotations__}
    if sys.argv[3] == "save":
        cache.save()
    print(json.dumps(report))
''')


def make_package(tmp_path: Path) -> Path:
    package = tmp_path / "pkg"
    package.mkdir()
    for name, text in MODULES.items():
        (package / name).write_text(textwrap.dedent(text))
    return package


def probe(tmp_path: Path, save: bool = True, *flags: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run([sys.executable, *flags, "-c", PROBE, str(tmp_path), str(REPO),
                           "save" if save else "no"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def cache_file(tmp_path: Path) -> Path:
    return Path(codecache.Cache(str(tmp_path / "pkg"), "pkg").file)


def test_a_second_run_imports_from_the_cache_without_docstrings(tmp_path):
    make_package(tmp_path)
    first = probe(tmp_path)
    assert first["served"] == [] and first["f_doc"] == "f's docstring"
    assert cache_file(tmp_path).is_file()
    second = probe(tmp_path)
    assert second["served"] == ["pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.e", "pkg.h"]
    assert second["value"] == 1
    assert second["f_doc"] is None and second["k_doc"] is None and second["a_doc"] is None
    # a module that reads its own docstring keeps it, and one with an assert keeps that
    assert second["c_text"] == "usage: c prints its own docstring"
    assert second["asserted"] is True
    assert second["file"] == str(tmp_path / "pkg" / "a.py")


def test_annotations_without_importing_future_and_only_where_read(tmp_path):
    """`from __future__ import annotations` is compiled in as its flag: the __future__
    module is never imported, a class's annotations (lib/frozen.py's fields) stay
    strings, and the lines stay where they were. A function's annotations are
    dropped, unless its module may read them (typer's commands)."""
    make_package(tmp_path)
    first = probe(tmp_path)
    second = probe(tmp_path)
    assert first["future"] is True and second["future"] is False
    assert first["e_annotations"] == {"x": "NotDefinedAnywhere", "return": "None"}
    assert second["e_annotations"] == {}
    assert second["e_class_annotations"] == first["e_class_annotations"] == {"field": "NotDefinedEither"}
    assert second["h_annotations"] == first["h_annotations"] == {"x": "int", "return": "str"}
    assert second["e_line"] == first["e_line"]


def test_an_edited_module_comes_from_its_source_until_the_cache_is_written_again(tmp_path):
    package = make_package(tmp_path)
    probe(tmp_path)
    time.sleep(0.01)
    (package / "b.py").write_text("VALUE = 22\n")
    edited = probe(tmp_path)
    assert edited["value"] == 22
    assert "pkg.b" not in edited["served"] and "pkg.a" in edited["served"]
    again = probe(tmp_path)
    assert again["value"] == 22 and "pkg.b" in again["served"]


def test_a_removed_module_is_not_served(tmp_path):
    package = make_package(tmp_path)
    probe(tmp_path)
    (package / "c.py").unlink()
    entries = codecache.read(str(cache_file(tmp_path)))
    assert "pkg.c" in entries
    cache = codecache.Cache(str(package), "pkg")
    assert cache.find_spec("pkg.c") is None
    assert cache.find_spec("pkg.b") is not None


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other-python", "not-a-dict"])
def test_a_damaged_cache_file_is_ignored(tmp_path, damage):
    make_package(tmp_path)
    probe(tmp_path)
    file = cache_file(tmp_path)
    data = file.read_bytes()
    header = data[:data.index(b"\0") + 1 + 4]
    import marshal
    file.write_bytes({"garbage": b"\x00\xff" * 100, "truncated": data[:len(data) // 2], "empty": b"",
                      "other-python": data[:len(header) - 4] + b"\x00\x00\r\n" + data[len(header):],
                      "not-a-dict": header + marshal.dumps([1, 2])}[damage])
    assert codecache.read(str(file)) == {}
    report = probe(tmp_path, False)
    assert report["served"] == [] and report["value"] == 1


def test_a_cache_file_others_can_write_or_a_symlink_is_ignored(tmp_path):
    make_package(tmp_path)
    probe(tmp_path)
    file = cache_file(tmp_path)
    os.chmod(file, 0o666)
    assert codecache.read(str(file)) == {}
    os.chmod(file, 0o644)
    assert codecache.read(str(file)) != {}
    elsewhere = tmp_path / "elsewhere.bin"
    file.rename(elsewhere)
    file.symlink_to(elsewhere)
    assert codecache.read(str(file)) == {}


def test_nothing_is_written_when_python_may_not_write_bytecode(tmp_path):
    make_package(tmp_path)
    probe(tmp_path, True, "-B")
    assert not cache_file(tmp_path).exists()


def test_the_launchers_install_the_cache_before_importing_minirun():
    for launcher in ("bin/minirun", "bin/minirun-oci"):
        text = (REPO / launcher).read_text()
        assert text.index("codecache.install()") < text.index("import main")


def test_a_read_only_package_is_not_compiled_at_every_exit(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    package = make_package(tmp_path)
    os.chmod(package, 0o555)
    try:
        if os.access(package, os.W_OK):     # root: a read-only bind mount instead
            subprocess.run(["mount", "--bind", str(package), str(package)], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", str(package)], check=True)
        cache = codecache.Cache(str(package), "pkg")
        calls = []
        cache._write = lambda entries: calls.append(entries)
        sys.path.insert(0, str(tmp_path))
        try:
            import pkg.b  # noqa: F401
            cache.save()
        finally:
            sys.path.remove(str(tmp_path))
            for name in [n for n in sys.modules if n == "pkg" or n.startswith("pkg.")]:
                del sys.modules[name]
        assert calls == []
    finally:
        subprocess.run(["umount", str(package)], capture_output=True)
        os.chmod(package, 0o755)


def test_a_moved_tree_names_its_sources_where_they_are_now(tmp_path):
    """cp -a keeps sizes and mtimes, so the cache stays valid in the copy: its code
    must still name the copy's files (tracebacks, linecache), as a .pyc's does."""
    import shutil
    (tmp_path / "one").mkdir()
    make_package(tmp_path / "one")
    probe(tmp_path / "one")
    assert probe(tmp_path / "one")["served"]
    shutil.copytree(tmp_path / "one", tmp_path / "two", copy_function=shutil.copy2)
    moved = probe(tmp_path / "two", save=False)
    assert moved["served"] and moved["file"] == str(tmp_path / "two" / "pkg" / "a.py")
    assert moved["f_file"] == str(tmp_path / "two" / "pkg" / "a.py")
