"""The code cache: the compiled modules a quick command imports, in one file.

`minirun run` is a cold start every time, and a third of its Python start-up
went to importing minirun's own ~50 modules one file at a time: for each, the
path finder's look-up, a stat of the source, an open and read of its .pyc and
an unmarshal. This module owns one file, `minirun/__pycache__/codecache.<tag>.bin`
beside the .pyc files, which holds the code of the minirun modules that
commands imported, compiled without their docstrings (a module with an assert,
as it is) and their functions' annotations (see _compile). The launchers
(bin/minirun, bin/minirun-oci) call install() first; a finder at the front of
sys.meta_path then serves those modules from the one file, mapped into memory,
~3 ms sooner per command than the .pyc files (benchmarks/start.py).

It is a cache, never the truth, and it is checked as Python checks a .pyc:
each entry carries the size and mtime of its source, and an entry whose source
is gone or differs is not used (the module is imported from its source as
usual). A file from another Python (its magic number), a damaged file, or one
that is not a regular file owned by root (or the user running it) and writable
by no one else is ignored whole. save(), called by the CLI just
before it exits, writes a new file when a minirun module came from its source
(the first run after an install or an edit): compiled again from the sources,
written to a temporary name and renamed, so a reader sees the old file or the
new one (entries still true to their sources are copied over, not compiled
again). It writes nothing when Python may not write bytecode
(PYTHONDONTWRITEBYTECODE, -B) or the directory is not writable; any error
there is dropped, as Python drops a .pyc it cannot write.

Imports only what the interpreter has already loaded at start (os, sys,
marshal and the import system's own frozen modules), and mmap: it runs before
anything else of minirun.
"""

import _frozen_importlib as _bootstrap
import _frozen_importlib_external as _external
import _imp
import marshal
import os
import sys

_FORMAT = b"minirun-codecache/4\0" + _external.MAGIC_NUMBER
_MAX_BYTES = 16 << 20           # bounded, like every file minirun reads


class _Loader:
    """Executes a module's code from the cache."""

    def __init__(self, code: "_Slice", origin: str):
        self._code, self._origin = code, origin

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        code = marshal.loads(self._code.get())
        # the file the code was compiled from may have moved with the tree (cp -a): its
        # tracebacks name the source where it is now, as a .pyc's do
        _imp._fix_co_filename(code, self._origin)
        exec(code, module.__dict__)   # noqa: S102 - our own compiled modules


class _Slice:
    """One module's marshalled code: a range of the mapped file, read only when the
    module is imported (a command imports ~50 of the ~90 modules the file holds),
    and then through a memoryview, not copied (~0.15 ms of a run)."""
    __slots__ = ("view", "start", "end")

    def __init__(self, view, start: int, end: int):
        self.view, self.start, self.end = view, start, end

    def get(self) -> memoryview:
        return self.view[self.start:self.end]


class Cache:
    """The cache file of one package (minirun; a test's own package in the tests):
    a finder for sys.meta_path, and the writer of a new file."""

    def __init__(self, root: str, package: str):
        self.root, self.package = root, package
        self.file = os.path.join(root, "__pycache__", f"codecache.{sys.implementation.cache_tag}.bin")
        self.entries = read(self.file)   # name -> (relative path, is package, size, mtime_ns, code)
        self.served: set[str] = set()

    def find_spec(self, name, path=None, target=None):
        entry = self.entries.get(name)
        if entry is None:
            return None
        relative, package, size, mtime, code = entry
        origin = os.path.join(self.root, relative)
        try:
            st = os.stat(origin)
        except OSError:
            return None
        if st.st_size != size or st.st_mtime_ns != mtime:
            return None
        spec = _bootstrap.ModuleSpec(name, _Loader(code, origin), origin=origin, is_package=package)
        spec.has_location = True
        if package:
            spec.submodule_search_locations = [os.path.dirname(origin)]
        self.served.add(name)
        return spec

    def save(self) -> None:
        """A new file if a module of the package was imported from its source."""
        if sys.dont_write_bytecode:
            return
        folder = os.path.dirname(self.file)
        if not os.access(folder if os.path.isdir(folder) else self.root, os.W_OK):
            return              # checked first: compiling every module costs ~0.1 s
        wanted = {}
        for name, module in list(sys.modules.items()):
            if name in self.served or name == __name__ or not name.startswith(self.package + "."):
                continue
            origin = getattr(getattr(module, "__spec__", None), "origin", None)
            if isinstance(origin, str) and origin.endswith(".py") and origin.startswith(self.root + os.sep):
                wanted[name] = origin
        if not wanted:
            return
        kept = {}                       # entries still true to their source: not compiled again
        for name, (relative, package, size, mtime, code) in self.entries.items():
            if name in wanted:
                continue
            origin = os.path.join(self.root, relative)
            try:
                st = os.stat(origin)
            except OSError:
                continue
            if st.st_size == size and st.st_mtime_ns == mtime:
                kept[name] = (relative, package, size, mtime, code.get())
            else:
                wanted[name] = origin
        try:
            self._write({**kept, **{name: _compile(origin, self.root) for name, origin in wanted.items()}})
        except (OSError, SyntaxError, ValueError):
            pass

    def _write(self, entries: dict) -> None:
        """The file: _FORMAT, the index's length (4 bytes, little-endian), the index
        (marshalled: name -> relative path, is package, size, mtime_ns, start, end,
        start and end counted from the end of the index), then each module's code."""
        index, blobs, at = {}, [], 0
        for name, (relative, package, size, mtime, code) in entries.items():
            index[name] = (relative, package, size, mtime, at, at + len(code))
            blobs.append(code)
            at += len(code)
        head = marshal.dumps(index)
        os.makedirs(os.path.dirname(self.file), mode=0o755, exist_ok=True)
        temporary = f"{self.file}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_FORMAT + len(head).to_bytes(4, "little") + head + b"".join(blobs))
            os.rename(temporary, self.file)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise


_cache: Cache | None = None


def install() -> None:
    """Serve minirun's modules from its cache file, if there is a usable one."""
    global _cache
    if _cache is None:
        _cache = Cache(os.path.dirname(os.path.abspath(__file__)), __name__.partition(".")[0])
        sys.meta_path.insert(0, _cache)


def save() -> None:
    """Called as the CLI exits: a new cache file when it is out of date."""
    if _cache is not None:
        _cache.save()


def read(file: str) -> dict:
    """The entries of a cache file (name -> relative path, is package, size, mtime_ns,
    _Slice of its code); {} for a missing, foreign, damaged or unsafe one. The file is
    mapped, not read: only the index and the modules imported are unmarshalled (the
    whole file's read and unmarshal cost each command ~1.2 ms). Our descriptor is
    closed at once; Python's mmap keeps a close-on-exec duplicate of its own, which
    a container's child closes with every other descriptor of ours as it starts
    (sandbox/process.py), so none reaches a container's process."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not (st.st_mode & 0o170000 == 0o100000 and st.st_uid in (0, os.geteuid())
                and not st.st_mode & 0o022 and len(_FORMAT) + 4 <= st.st_size <= _MAX_BYTES):
            return {}
        import mmap
        view = mmap.mmap(fd, st.st_size, mmap.MAP_PRIVATE, mmap.PROT_READ)
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)
    try:
        if view[:len(_FORMAT)] != _FORMAT:
            return {}
        length = int.from_bytes(view[len(_FORMAT):len(_FORMAT) + 4], "little")
        base = len(_FORMAT) + 4 + length
        index = marshal.loads(view[len(_FORMAT) + 4:base]) if base <= st.st_size else None
        pages = memoryview(view)
        if not isinstance(index, dict):
            return {}
        entries = {}
        for name, (relative, package, size, mtime, start, end) in index.items():
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= st.st_size - base):
                return {}
            entries[name] = (relative, package, size, mtime, _Slice(pages, base + start, base + end))
        return entries
    except (EOFError, ValueError, TypeError):
        return {}


# a module that reads its functions' annotations (typer's commands, inspect) keeps them
_READS_ANNOTATIONS = (b"typer", b"__annotations__", b"get_type_hints", b"signature")


def _compile(origin: str, root: str) -> tuple:
    """One entry: the module's code compiled as -OO does, without docstrings, unless
    it has an assert or reads a docstring (then as it is); and without the
    annotations of its functions' parameters and results, which nothing reads at
    run time but typer (a module that may read them keeps them): unmarshalling
    their strings was ~20% of a run's unmarshal. A class body's annotations stay
    (they are lib/frozen.py's fields). `from __future__ import annotations`
    becomes the compiler flag it stands for: the statement itself imports the
    __future__ module (~0.15 ms of a run) to bind a global no module reads.
    Only here, where a stale cache is rewritten, is ast imported."""
    import ast
    import __future__
    with open(origin, "rb") as f:
        st = os.fstat(f.fileno())
        source = f.read()
    keep_docs = b"assert" in source or b"__doc__" in source or b"__debug__" in source
    tree = ast.parse(source, origin)
    flags = 0
    for node in list(tree.body):
        if isinstance(node, ast.ImportFrom) and node.module == "__future__" and \
                [a.name for a in node.names] == ["annotations"] and node.level == 0:
            tree.body.remove(node)
            flags = __future__.annotations.compiler_flag
    if not any(word in source for word in _READS_ANNOTATIONS):
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                node.returns = None
                args = node.args
                for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
                    if arg is not None:
                        arg.annotation = None
    code = compile(tree, origin, "exec", flags=flags, dont_inherit=True, optimize=0 if keep_docs else 2)
    return (os.path.relpath(origin, root), os.path.basename(origin) == "__init__.py",
            st.st_size, st.st_mtime_ns, marshal.dumps(code))
