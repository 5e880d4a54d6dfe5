"""cgroup v2: one directory, <root>/minirun/<id>, below parents that pass the
controllers down (Documentation/admin-guide/cgroup-v2.rst)."""

from __future__ import annotations

import os

from ...errors import EnvironmentProblem
from .files import CgroupHandle, _Driver, _apply, _missing, _words
from .limits import Limits, plan


class V2Driver(_Driver):
    """One directory, <root>/minirun/<id>, below parents that pass the controllers down."""
    version = "v2"

    def _create(self, container_id: str, limits: Limits, made: list[str]) -> CgroupHandle:
        wanted = plan(limits, "v2")
        available = _words(os.path.join(self.root, "cgroup.controllers"))
        for controller, settings in wanted.items():
            if settings and controller not in available:
                raise _missing(controller, "v2")
        controllers = [c for c in wanted if c in available]
        self._enable(self.root, controllers)
        self._ensure(os.path.join(self.root, self.parent))
        self._enable(os.path.join(self.root, self.parent), controllers)
        path = self._make(self.root, container_id, made)
        for settings in wanted.values():
            _apply(self.fs, path, settings)
        return CgroupHandle("v2", [path], path if "memory" in controllers else None, self.fs)

    def _enable(self, directory: str, controllers: list[str]) -> None:
        """Pass controllers down to directory's children. A cgroup can only use the ones
        its parent enabled in cgroup.subtree_control (cgroup-v2.rst, "Top-down Constraint")."""
        control = os.path.join(directory, "cgroup.subtree_control")
        enabled = _words(control)
        missing = " ".join(f"+{c}" for c in controllers if c not in enabled)
        if not missing:
            return
        try:
            self.fs.write(control, missing)
        except OSError as err:
            raise EnvironmentProblem(f"cannot enable cgroup controllers {missing} in {control}: {err.strerror}",
                                     "another manager may own this cgroup tree; check its cgroup.subtree_control"
                                     ) from err
