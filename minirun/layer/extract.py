"""Write one layer's tar entries into an empty directory, safely.

Names from the tar are untrusted. Two independent lines of defence keep every
write inside the layer directory:

1. Bookkeeping. safe_name() normalises a name and refuses '..' and NUL; the
   Extractor records what it made at each path (this extraction is the only
   writer of its staging dir), so a parent that is a symlink, file, device or
   whiteout is refused by name before any syscall, and a hard link may only
   point at an earlier non-directory entry of the same layer.
2. The kernel. Every syscall is relative to a directory fd from safeopen.DirFds
   (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS, or an O_NOFOLLOW walk), and
   acts on the final component without following it: O_NOFOLLOW | O_EXCL for
   files, mkdirat / mknodat / symlinkat / linkat (no AT_SYMLINK_FOLLOW), and
   attrs.py for owner, mode, xattrs and times. So even a bookkeeping mistake
   cannot make extraction follow a symlink it (or anyone) wrote.

A later entry replaces an earlier one at the same path (a directory over a
directory keeps it and its children); removing is unlink, or remove_tree on a
directory, which never follows symlinks either. Device nodes and fifos are made
with mknod and never opened. Directory owners, modes and times are applied in
finish(), deepest first, because creating children changes a directory's mtime.
"""

from __future__ import annotations

import os
import stat
import tarfile

from ..errors import BadImage, named
from ..lib.fsutil import remove_tree
from . import attrs, whiteout
from .contenthash import ContentHashes, hasher
from .safeopen import DIR_FLAGS, DirFds, proc_path

CHUNK = 1 << 20
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
LINKABLE = ("file", "link", "other")
_HINT = "rebuild the image; this layer's tar is damaged or hostile"


def safe_name(unsafe_name: str) -> str:
    """Normalise a tar entry name to a relative path inside the layer, or raise."""
    if "\0" in unsafe_name:
        raise BadImage(f"entry {named(unsafe_name)}: a NUL byte in the name", _HINT)
    parts = [part for part in unsafe_name.split("/") if part and part != "."]
    if ".." in parts:
        raise BadImage(f"entry {named(unsafe_name)}: path escapes the layer with '..'", _HINT)
    return "/".join(parts)


class Extractor:
    """Writes tar entries under root; use as a context manager (it holds directory fds)."""

    def __init__(self, root: str):
        self.dirs = DirFds(root)
        self.kinds: dict[str, str] = {"": "dir"}   # rel path -> dir/file/link/other/whiteout
        self.children: dict[str, list[str]] = {}  # dir -> paths made in it (for removal)
        self.dir_attrs: dict[str, tuple] = {}   # (name, uid, gid, mode, mtime_ns), not TarInfos
        self.implied: dict[str, None] = {}      # ordered set of dirs the tar never declared
        self.files = 0
        self.size = 0
        self.hashes = ContentHashes()            # for the file manifest: see contenthash.py
        self.created = _creation_defaults(self.dirs.root_fd)

    def __enter__(self) -> "Extractor":
        return self

    def __exit__(self, *exc) -> None:
        self.hashes.close()
        self.dirs.close()

    # ------------------------------------------------------------ entry points

    def entry(self, member: tarfile.TarInfo, data) -> None:
        name = safe_name(member.name)
        attrs.check(member)
        if not name:
            if member.isdir():
                self.dir_attrs[""] = _dir_attrs(member)
                self._guard(member, lambda: attrs.set_xattrs(self.dirs.root_fd, member))
            return
        if whiteout.WH_PREFIX in name:            # both checks look for a part starting with it
            parts = name.split("/")
            if any(p.startswith(whiteout.WH_META_PREFIX) and p != whiteout.WH_OPAQUE for p in parts):
                return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): never part of the image
            for part in parts[:-1]:
                if part.startswith(whiteout.WH_PREFIX):
                    raise BadImage(f"entry {named(member.name)}: the whiteout name {named(part)} "
                                   "cannot be a directory", _HINT)
        parent, _, base = name.rpartition("/")
        try:
            self._dispatch(member, data, name, parent, base)
        except OSError as exc:
            raise BadImage(f"entry {named(member.name)}: {exc.strerror or exc}", _HINT) from exc
        except (ValueError, OverflowError) as exc:
            raise BadImage(f"entry {named(member.name)}: {exc}", _HINT) from exc

    def finish(self) -> None:
        """Apply directory attributes last: creating children changes a dir's mtime."""
        for rel in sorted(self.dir_attrs, key=lambda p: p.count("/"), reverse=True):
            name, uid, gid, mode, mtime_ns = self.dir_attrs[rel]
            try:
                fd = self.dirs.get(rel)
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            except OSError as exc:
                raise BadImage(f"entry {named(name)}: {exc.strerror or exc}", _HINT) from exc

    # ------------------------------------------------------------ one entry

    def _guard(self, member: tarfile.TarInfo, action) -> None:
        """Run action; a kernel refusal becomes a BadImage naming the entry."""
        try:
            action()
        except OSError as exc:
            raise BadImage(f"entry {named(member.name)}: {exc.strerror or exc}", _HINT) from exc
        except (ValueError, OverflowError) as exc:
            raise BadImage(f"entry {named(member.name)}: {exc}", _HINT) from exc

    def _dispatch(self, member, data, name: str, parent: str, base: str) -> None:
        self._ensure_dir(parent, member.name)
        pfd = self.dirs.get(parent)
        kind, target = whiteout.classify(base)
        if kind == "opaque":
            whiteout.mark_opaque(pfd)
        elif kind == "whiteout":
            self._whiteout(pfd, parent, target, member.name)
        elif member.isdir():
            self._dir(pfd, name, base, member)
        elif member.islnk():
            self._hardlink(pfd, name, base, member)
        else:
            self._nondir(pfd, name, base, member, data)

    def _ensure_dir(self, rel: str, unsafe_name: str) -> None:
        """Make every missing parent (in a loop: names may be thousands of levels deep)."""
        if self.kinds.get(rel) == "dir":
            return
        missing = []
        while self.kinds.get(rel) != "dir":
            kind = self.kinds.get(rel)
            if kind is not None:
                raise BadImage(f"entry {named(unsafe_name)}: parent {named(rel)} is a {kind}, not a directory", _HINT)
            missing.append(rel)
            rel = rel.rpartition("/")[0]
        for path in reversed(missing):
            parent, _, base = path.rpartition("/")
            pfd = self.dirs.get(parent)
            os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, DIR_FLAGS, dir_fd=pfd)
            self.dirs.adopt(path, fd)
            os.fchmod(fd, 0o755)                  # not left to the umask
            self._add(path, "dir")
            self.implied[path] = None

    def _whiteout(self, pfd: int, parent: str, target: str, unsafe_name: str) -> None:
        problem = whiteout.bad_target(target)
        if problem:
            raise BadImage(f"entry {named(unsafe_name)}: {problem}", _HINT)
        rel = f"{parent}/{target}" if parent else target
        if rel in self.kinds:
            return  # a whiteout only hides lower layers; this layer's own entry stays
        whiteout.make_whiteout(target, dir_fd=pfd)
        self._add(rel, "whiteout")
        self.files += 1

    def _dir(self, pfd: int, rel: str, base: str, member: tarfile.TarInfo) -> None:
        if self.kinds.get(rel) == "dir":
            self.implied.pop(rel, None)           # declared after all: keeps its children
        else:
            self._clear(pfd, rel, base)
            os.mkdir(base, 0o700, dir_fd=pfd)
            self._add(rel, "dir")
        self.dir_attrs[rel] = _dir_attrs(member)
        if member.pax_headers:
            attrs.set_xattrs(self.dirs.get(rel), member)

    def _nondir(self, pfd: int, rel: str, base: str, member: tarfile.TarInfo, data) -> None:
        self._clear(pfd, rel, base)
        if member.isreg():
            fd = os.open(base, FILE_FLAGS, member.mode & 0o777 & self.created[2], dir_fd=pfd)
            try:
                self._add(rel, "file")
                digest = self._write(fd, member, data)
                self._file_attrs(fd, member, digest)
            finally:
                os.close(fd)
            self.size += member.size
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=pfd)
            self._add(rel, "link")
            attrs.apply_at(pfd, base, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=pfd)
            self._add(rel, "other")
            attrs.apply_at(pfd, base, member)
        else:
            raise BadImage(f"entry {named(member.name)}: unsupported tar entry type {member.type!r}", _HINT)
        self.files += 1

    def _hardlink(self, pfd: int, rel: str, base: str, member: tarfile.TarInfo) -> None:
        try:
            target = safe_name(member.linkname)
        except BadImage:
            raise BadImage(f"entry {named(member.name)}: hard link target {named(member.linkname)} "
                           "escapes the layer with '..'", _HINT) from None
        if target == rel and self.kinds.get(rel) in LINKABLE:
            return  # tar writes a file added twice as a link to itself: nothing to do
        self._clear(pfd, rel, base)
        kind = self.kinds.get(target)
        if kind not in LINKABLE:
            raise BadImage(f"entry {named(member.name)}: hard link to {named(member.linkname)}, "
                           "which is not an earlier file of this layer", _HINT)
        tparent, _, tbase = target.rpartition("/")
        tfd = self.dirs.get(tparent)
        os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        self._add(rel, kind)
        self.files += 1
        self.hashes.relink(os.stat(base, dir_fd=pfd, follow_symlinks=False))

    def _write(self, fd: int, member: tarfile.TarInfo, data):
        """The data; returns its hash object (contenthash.hasher) when it was taken as
        the data went by: always, but for a plain file read from a stream other than
        the layer's Feed."""
        if member.sparse is not None:
            return self._write_sparse(fd, member, data)
        return _copy(fd, data, member.size, member, self.hashes)

    def _file_attrs(self, fd: int, member: tarfile.TarInfo, digest) -> None:
        """Owner, mode, xattrs and times of a regular file. A new file already has our
        owner and its mode less the umask: chown and chmod are skipped when those are
        what the entry asks, and the fstat that records the file's hash checks it,
        applying everything again if the guess was wrong."""
        uid, gid, umask_keep = self.created
        mode = stat.S_IMODE(member.mode)
        owned = member.uid == uid and member.gid == gid
        moded = mode == mode & 0o777 & umask_keep
        attrs.apply_fd(fd, member, owned=owned, moded=moded)
        st = os.fstat(fd)
        if (owned or moded) and (st.st_uid != member.uid or st.st_gid != member.gid
                                 or stat.S_IMODE(st.st_mode) != mode):
            self.created = (-1, -1, umask_keep)     # never guess again in this layer
            attrs.apply_fd(fd, member)
            st = os.fstat(fd)
        if digest is not None:
            self.hashes.record(st, digest)

    def _write_sparse(self, fd: int, member: tarfile.TarInfo, data):
        """Only the data segments: the holes stay holes on disk, and are hashed as the
        runs of zeros they are, never read. Seeks go to tarfile's unbuffered member
        reader, which moves forward in a stream without reading holes (the buffered one
        refuses to seek in a stream). An empty segment carries no data: GNU tar ends
        its maps with one at the file's size, and pads the old format's with (0, 0)."""
        data = getattr(data, "raw", data)
        digest = hasher(member.size)
        end = 0
        for offset, length in member.sparse:
            if length < 0 or offset < 0 or offset + length > member.size or (length and offset < end):
                raise BadImage(f"entry {named(member.name)}: its sparse map is out of order or runs past "
                               f"its size ({member.size})", _HINT)
            if not length:
                continue
            digest.zeros(offset - end)
            data.seek(offset)
            os.lseek(fd, offset, os.SEEK_SET)
            _copy(fd, data, length, member, update=digest.update)
            end = offset + length
        digest.zeros(member.size - end)
        os.ftruncate(fd, member.size)
        return digest

    # ------------------------------------------------------------ bookkeeping

    def _add(self, rel: str, kind: str) -> None:
        if rel not in self.kinds:
            self.children.setdefault(rel.rpartition("/")[0], []).append(rel)
        self.kinds[rel] = kind

    def _clear(self, pfd: int, rel: str, base: str) -> None:
        """Remove what this layer already put at rel."""
        kind = self.kinds.get(rel)
        if kind is None:
            return
        if kind == "dir":
            self.dirs.forget(rel)
            remove_tree(proc_path(pfd, base))
            self._forget_tree(rel)
        else:
            os.unlink(base, dir_fd=pfd)
            del self.kinds[rel]

    def _forget_tree(self, rel: str) -> None:
        """Drop rel and everything recorded below it: a dir that is gone borrows nothing."""
        stack = [rel]
        while stack:
            path = stack.pop()
            if self.kinds.pop(path, None) is None:
                continue
            self.dir_attrs.pop(path, None)
            self.implied.pop(path, None)
            stack.extend(self.children.pop(path, ()))


def _dir_attrs(member: tarfile.TarInfo) -> tuple:
    return member.name, member.uid, member.gid, stat.S_IMODE(member.mode), attrs.mtime_ns(member)


def _creation_defaults(root_fd: int) -> tuple[int, int, int]:
    """(uid, gid, permission bits kept) of what this process creates below root: its
    euid and egid (no directory is setgid while extracting: modes are set in finish(),
    so only a setgid root could hand its group down), and the umask's complement."""
    keep = 0o777 & ~_umask()
    if os.fstat(root_fd).st_mode & stat.S_ISGID:
        return -1, -1, keep
    return os.geteuid(), os.getegid(), keep


def _umask() -> int:
    """The process's umask, read without changing it (other threads may create files)."""
    from ..linux.procfs import status_field
    try:
        return int(status_field("Umask") or "", 8)
    except ValueError:
        return 0o777          # unknown: never skip a chmod


def _copy(fd: int, data, size: int, member: tarfile.TarInfo, hashes: ContentHashes | None = None,
          update=None):
    """Write size bytes of data; their hash object when data is the layer's Feed (else
    each chunk goes to `update`, when given)."""
    if hasattr(data, "view"):             # the layer's Feed: its chunks, not copies of them
        digest, update = hashes.updater(size)
        for piece in data.view(size):
            _write_all(fd, piece)
            update(piece)
            size -= len(piece)
        if size:              # as tarfile's own reader says it (the unpacker names the entry)
            raise tarfile.ReadError("unexpected end of data")
        return digest
    remaining = size
    while remaining > 0:
        chunk = data.read(min(CHUNK, remaining))
        if not chunk:
            raise BadImage(f"entry {named(member.name)}: data ends before its declared size", _HINT)
        _write_all(fd, chunk)
        if update is not None:
            update(chunk)
        remaining -= len(chunk)
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
