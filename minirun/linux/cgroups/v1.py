"""cgroup v1: one hierarchy per controller, so one directory per controller,
<root>/<controller>/minirun/<id> (Documentation/admin-guide/cgroup-v1/)."""

from __future__ import annotations

import os

from .files import CgroupHandle, _Driver, _apply, _missing
from .limits import Limits, plan

V1_CONTROLLERS = ("memory", "pids", "cpu")


class V1Driver(_Driver):
    """One directory per controller: <root>/<controller>/minirun/<id>."""
    version = "v1"

    def _create(self, container_id: str, limits: Limits, made: list[str]) -> CgroupHandle:
        paths, memory = [], None
        for controller, settings in plan(limits, "v1").items():
            hierarchy = os.path.join(self.root, controller)
            if not os.path.exists(os.path.join(hierarchy, "cgroup.procs")):
                if settings:
                    raise _missing(controller, "v1")
                continue
            path = self._make(hierarchy, container_id, made)
            _apply(self.fs, path, settings)
            paths.append(path)
            memory = path if controller == "memory" else memory
        return CgroupHandle("v1", paths, memory, self.fs)
