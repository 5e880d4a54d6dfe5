"""Uniform read access, by relative name, to the files of an image archive (a
tar, compressed or not) or of a layout directory. Everything in it is
untrusted: a tar holds at most MAX_MEMBERS entries, each refused by its
declared size before tarfile moves past it; names are cleaned; links resolve
only inside the archive; a layout dir's files must be regular files."""

from __future__ import annotations

import errno
import os
import tarfile
from typing import BinaryIO

from .. import oci
from ..errors import BadImage, NotFound, named
from ..layer.limits import check_size, max_layer_bytes
from ..layer.safeopen import open_in_root, reopen_regular

MAX_MEMBERS = 100_000        # a docker-archive or OCI archive holds a few files per layer


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a GNU long name or a PAX record whole, at the size its header
    declares, before any check of ours sees the member: a few compressed megabytes
    could ask for gigabytes. Refused here over layer/limits.py's HEADER_BYTES, as
    the layer extractor refuses them."""

    __slots__ = ()

    def _proc_gnulong(self, tarfile):
        _check_extended(self)
        return super()._proc_gnulong(tarfile)

    def _proc_pax(self, tarfile):
        _check_extended(self)
        return super()._proc_pax(tarfile)


def _check_extended(info: tarfile.TarInfo) -> None:
    from ..layer.limits import HEADER_BYTES
    if info.size > HEADER_BYTES:
        raise BadImage(f"an extended tar header (a PAX record or GNU long name) declares {info.size} "
                       f"bytes, over the {HEADER_BYTES} allowed", "the archive is corrupt or hostile")


class ArchiveFiles:
    """Uniform read access to a directory or a tar archive by relative name."""

    def __init__(self, path: str, label: str = ""):
        self.path = label or path             # what messages call it ("stdin" for a spool)
        self.tar: tarfile.TarFile | None = None
        self.names: dict[str, tarfile.TarInfo] = {}
        if not os.path.isdir(path):
            try:
                self.tar = tarfile.open(path, "r:*", tarinfo=_BoundedTarInfo)
                self._index_members()
            except FileNotFoundError:
                raise NotFound(f"{self.path}: no such file or directory") from None
            except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
                # ValueError: tarfile's own, for malformed GNU sparse headers
                self.close()
                reason = str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
                raise BadImage(f"{self.path}: not a readable tar archive or OCI layout ({oci.brief(reason, 100)})",
                               "check that the file is complete; load takes docker-archive, "
                               "OCI archive or OCI layout") from None
            except BaseException:
                self.close()
                raise

    def _index_members(self) -> None:
        """Each member is refused by its declared size before tarfile moves past it:
        moving past a member of a compressed archive decompresses it, and reading one
        that is sparse (in this tar) makes its holes into zeros."""
        limit = max_layer_bytes()
        for member in self.tar:
            if len(self.names) >= MAX_MEMBERS:
                raise BadImage(f"{self.path}: the archive holds more than {MAX_MEMBERS} entries",
                               "an image archive holds a few files per layer; check the file")
            check_size(member.size, f"{self.path}: archive member {named(member.name)}", limit)
            self.names[clean_name(member.name)] = member

    def exists(self, name: str) -> bool:
        if self.tar is None:
            try:
                self._open_regular(name).close()
            except BadImage:
                return False
            return True
        return self._resolve(name) is not None

    def open(self, name: str) -> BinaryIO:
        if self.tar is None:
            return self._open_regular(name)
        member = self._resolve(name)
        if member is None:
            raise BadImage(f"{self.path}: missing {named(name)}")
        return self.tar.extractfile(member)

    def _open_regular(self, name: str) -> BinaryIO:
        """A file of a layout dir, resolved inside it (a symlink may lead to another of
        its files, never out of it: a layout someone else made could point a blob at
        a host file) and checked to be a regular file through an O_PATH descriptor
        before it is opened for reading: a FIFO would block, and the open of a device
        node is its driver's."""
        try:
            root = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise BadImage(f"{self.path}: cannot read the layout: {exc.strerror}") from None
        try:
            pinned = open_in_root(root, name)
        except FileNotFoundError:
            if os.path.islink(os.path.join(self.path, name)):    # resolved inside the layout: nothing there
                raise BadImage(f"{self.path}: cannot read {named(name)}: it is a symlink that leads out of "
                               "the layout (or to nothing)",
                               "a layout's index.json, oci-layout and blobs are files inside it") from None
            raise BadImage(f"{self.path}: missing {named(name)}") from None
        except OSError as exc:
            why = "it leads out of the layout" if exc.errno in (errno.EXDEV, errno.ELOOP) else exc.strerror
            raise BadImage(f"{self.path}: cannot read {named(name)}: {why}",
                           "a layout's index.json, oci-layout and blobs are files inside it") from None
        finally:
            os.close(root)
        try:
            fd = reopen_regular(pinned)
        finally:
            os.close(pinned)
        if fd < 0:
            raise BadImage(f"{self.path}: {named(name)} is not a regular file",
                           "a layout's index.json, oci-layout and blobs are plain files")
        return os.fdopen(fd, "rb")

    def _resolve(self, name: str, hops: int = 0) -> tarfile.TarInfo | None:
        """The regular file a name stands for; `docker save` links repeated layers
        to an earlier copy, by symlink or hard link, always inside the archive."""
        member = self.names.get(name)
        if member is None or hops > 8:
            return None
        if member.isfile():
            return member
        if member.issym():
            target = os.path.normpath(os.path.join(os.path.dirname(name), member.linkname))
        elif member.islnk():
            target = clean_name(member.linkname)
        else:
            return None
        if target.startswith("../") or target.startswith("/"):
            return None
        return self._resolve(target, hops + 1)

    def read(self, name: str, limit: int = oci.MAX_MANIFEST_BYTES) -> bytes:
        """The whole file, refused before reading when it is over limit."""
        with self.open(name) as f:
            size = os.fstat(f.fileno()).st_size if self.tar is None else self._resolve(name).size
            if size > limit:
                raise oci.too_large(f"{self.path}: {named(name)}", size, limit)
            data = f.read(limit + 1)
        if len(data) > limit:                  # it grew while we read
            raise oci.too_large(f"{self.path}: {named(name)}", len(data), limit)
        if self.tar is not None and len(data) != size:
            raise BadImage(f"{self.path}: {named(name)} is truncated")
        return data

    def size(self, name: str) -> int:
        if self.tar is None:
            with self._open_regular(name) as f:     # resolved inside the layout, as open()
                return os.fstat(f.fileno()).st_size
        return self._resolve(name).size

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def clean_name(name: str) -> str:
    return name[2:] if name.startswith("./") else name.lstrip("/")
