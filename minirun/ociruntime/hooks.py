"""The config's hooks (runtime-spec 1.1 config.md "POSIX-platform Hooks"), checked and run.

Each hook is {"path", "args", "env", "timeout"}: path is executed with args as its
argv (args[0] included; [path] when absent), env as its whole environment (the
runtime's own when absent, as runc does), and the container's state JSON on its
stdin. A hook that exits non-zero, cannot start, or outlives its timeout fails.
Where and when each kind runs (runtime-spec runtime.md "Lifecycle"):

    prestart, createRuntime  during create, in the runtime's namespaces, once the
                             container's namespaces and mounts exist, before pivot_root
    createContainer          in the container's namespaces, after those, before pivot_root
    startContainer           in the container, at start, before the program's exec
    poststart                after start has started the program
    poststop                 at delete, once the process has stopped

A failing prestart, createRuntime, createContainer or startContainer hook fails the
operation (create tears everything down; at start the program is not run);
poststart and poststop failures are warnings on stderr only, as the spec says.
"""

from __future__ import annotations

import os
import sys

from ..errors import RuntimeFailure, UsageError
from ..lib import jsonio as json    # json and subprocess cost every create ~8 ms: the latter only in _one

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
# the hooks create's parent runs while the init waits before pivot_root
PARENT_SIDE = ("prestart", "createRuntime")
WARN_ONLY = ("poststart", "poststop")


def check(hooks) -> None:
    """Refuse, by field, a hooks object that does not follow the spec's types."""
    def bad(field: str, what: str) -> UsageError:
        return UsageError(f"config.json: {field} {what}", "fix the bundle's config.json (runtime-spec 1.1 hooks)")
    if not isinstance(hooks, dict):
        raise bad("hooks", "must be an object")
    for kind, entries in hooks.items():
        if kind not in KINDS:
            continue                    # a property the spec does not define: ignored
        if not isinstance(entries, list):
            raise bad(f"hooks.{kind}", "must be a list")
        for i, hook in enumerate(entries):
            field = f"hooks.{kind}[{i}]"
            if not isinstance(hook, dict) or not isinstance(hook.get("path"), str) or not hook["path"]:
                raise bad(field, "needs a path")
            if not os.path.isabs(hook["path"]):
                raise bad(f"{field}.path", f"{hook['path']!r} is not absolute")
            for key in ("args", "env"):
                value = hook.get(key)
                if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                    raise bad(f"{field}.{key}", "must be a list of strings")
            timeout = hook.get("timeout")
            if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
                raise bad(f"{field}.timeout", "must be a whole number of seconds above 0")


def state(record: dict, status: str) -> dict:
    """The state a hook reads on its stdin (runtime-spec runtime.md "State")."""
    return {"ociVersion": "1.1.0", "id": record["id"], "status": status,
            "pid": record["pid"] if status != "stopped" else 0, "bundle": record["bundle"],
            "annotations": record.get("annotations") or {}}


def wanted(hooks: dict | None, kinds=KINDS) -> bool:
    return any((hooks or {}).get(kind) for kind in kinds)


def run(hooks: dict | None, kind: str, state: dict) -> None:
    """Run every hook of kind in order, state on each one's stdin. A failure raises
    RuntimeFailure naming the hook, or for poststart/poststop prints a warning."""
    for i, hook in enumerate((hooks or {}).get(kind) or []):
        try:
            _one(hook, state)
        except RuntimeFailure as exc:
            message = f"hooks.{kind}[{i}] ({hook['path']}): {exc.message}"
            if kind in WARN_ONLY:
                print(f"minirun-oci: warning: {message}", file=sys.stderr, flush=True)
                continue
            raise RuntimeFailure(message, "fix or remove the hook in config.json") from None


def _one(hook: dict, state: dict) -> None:
    import subprocess
    env = dict(e.split("=", 1) for e in hook["env"] if "=" in e) if hook.get("env") is not None else None
    try:
        child = subprocess.Popen(hook.get("args") or [hook["path"]], executable=hook["path"], env=env,
                                 stdin=subprocess.PIPE, close_fds=True)
    except OSError as exc:
        raise RuntimeFailure(f"cannot run it: {exc.strerror}", None) from None
    try:
        child.stdin.write(json.dumps(state).encode())
    except BrokenPipeError:
        pass                            # a hook need not read its stdin
    finally:
        try:
            child.stdin.close()
        except BrokenPipeError:
            pass
    try:
        code = child.wait(timeout=hook.get("timeout"))
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise RuntimeFailure(f"still running after its timeout of {hook['timeout']} s: killed", None) from None
    if code != 0:
        raise RuntimeFailure(f"exited with status {code}" if code > 0 else f"killed by signal {-code}", None)
