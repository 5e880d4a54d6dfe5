"""Seccomp profiles in Docker's JSON format, read and checked, and the rules that
apply to one container chosen from them. Pure: no I/O, no libseccomp.

    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
     "architectures": ["SCMP_ARCH_X86_64"]   or   "archMap": [{"architecture", "subArchitectures"}],
     "flags": ["SECCOMP_FILTER_FLAG_LOG"],
     "syscalls": [{"names": [...], "action": "SCMP_ACT_ALLOW", "errnoRet": 1,
                   "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
                   "includes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["amd64"], "minKernel": "4.8"},
                   "excludes": {...}}]}

A rule applies when every condition of its includes holds (all the caps held,
the host's architecture listed, the kernel at least minKernel) and none of its
excludes does, as in Docker. Its args all hold at once (AND), except that args
naming the same index become one rule each (OR), as runc does: libseccomp
takes one comparison per argument. Unknown fields are ignored, as Docker does;
every value minirun reads is checked, and a profile that fails a check is
refused whole, with the field that failed named.

    parse(data, source) -> Profile
    select(profile, caps, arch, kernel) -> Selected        the rules for one container
"""

from __future__ import annotations

import json

from ..errors import UsageError
from ..lib.frozen import dataclass

MAX_PROFILE_BYTES = 1 << 20        # Docker's default profile is ~20 KB
ALLOW, LOG = 0x7FFF0000, 0x7FFC0000
ERRNO, TRACE = 0x00050000, 0x7FF00000
ACTIONS = {"SCMP_ACT_KILL": 0, "SCMP_ACT_KILL_THREAD": 0, "SCMP_ACT_KILL_PROCESS": 0x80000000,
           "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": ERRNO, "SCMP_ACT_TRACE": TRACE,
           "SCMP_ACT_LOG": LOG, "SCMP_ACT_ALLOW": ALLOW}
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
       "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
MAX_ERRNO = 4095


@dataclass(frozen=True)
class Arg:
    index: int
    value: int
    value_two: int
    op: int


@dataclass(frozen=True)
class Condition:
    caps: frozenset = frozenset()         # lower-case, without CAP_: sys_admin
    arches: tuple = ()
    min_kernel: tuple | None = None


@dataclass(frozen=True)
class Rule:
    names: tuple
    action: int
    args: tuple = ()
    includes: Condition = Condition()
    excludes: Condition = Condition()


@dataclass(frozen=True)
class Profile:
    source: str
    default_action: int
    architectures: tuple = ()
    arch_map: tuple = ()                  # ((arch, (sub, ...)), ...)
    flags: int = 0
    rules: tuple = ()


@dataclass(frozen=True)
class Call:
    """One libseccomp rule: a syscall name, an action, the comparisons that all hold."""
    name: str
    action: int
    args: tuple = ()


@dataclass(frozen=True)
class Selected:
    source: str
    default_action: int
    architectures: tuple
    arch_map: tuple
    flags: int
    rules: tuple


class ProfileError(UsageError):
    pass


_JSON_KINDS = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
               bool: "true or false"}


def parse(data: bytes, source: str) -> Profile:
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"seccomp profile {source}: too big ({len(data)} bytes, at most "
                           f"{MAX_PROFILE_BYTES})", "a profile lists syscalls; Docker's default is ~20 KB")
    try:
        doc = json.loads(data.decode("utf-8"))     # json, not jsonio: a miss path, and its errors are exact
    except UnicodeDecodeError:
        raise ProfileError(f"seccomp profile {source}: not UTF-8 text", "give a JSON profile") from None
    except ValueError as exc:
        raise ProfileError(f"seccomp profile {source}: not valid JSON: {getattr(exc, 'msg', exc)} "
                           f"(line {getattr(exc, 'lineno', '?')})", "fix the JSON syntax") from None
    except RecursionError:
        raise ProfileError(f"seccomp profile {source}: not valid JSON: nested too deeply",
                           "a profile is a flat object of rules") from None
    check = _Checker(source)
    check.kind(doc, dict, "the profile", "an object")
    if "architectures" in doc and "archMap" in doc:
        check.fail("both architectures and archMap are given", "use one of them")
    default = check.action(doc.get("defaultAction"), doc.get("defaultErrnoRet"), "defaultAction",
                           "defaultErrnoRet")
    arches = tuple(check.strings(doc.get("architectures"), "architectures"))
    arch_map = tuple((check.string(entry.get("architecture"), f"archMap[{i}].architecture"),
                      tuple(check.strings(entry.get("subArchitectures"), f"archMap[{i}].subArchitectures")))
                     for i, entry in enumerate(check.objects(doc.get("archMap"), "archMap")))
    flags = 0
    for name in check.strings(doc.get("flags"), "flags"):
        if name not in FLAGS:
            check.fail(f"unknown flag {name!r}", f"flags are {', '.join(FLAGS)}")
        flags |= FLAGS[name]
    rules = tuple(check.rule(entry, i) for i, entry in enumerate(check.objects(doc.get("syscalls"), "syscalls")))
    return Profile(source, default, arches, arch_map, flags, rules)


class _Checker:
    """The checks, each failing with one line that names the profile and the field."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, what: str, hint: str = "see Docker's seccomp profile format"):
        raise ProfileError(f"seccomp profile {self.source}: {what}", hint)

    def kind(self, value, types, field: str, described: str):
        if value is None:
            self.fail(f"{field} is missing: it must be {described}")
        if not isinstance(value, types) or isinstance(value, bool) and types is not bool:
            self.fail(f"{field} must be {described}, not {_JSON_KINDS.get(type(value), type(value).__name__)}")
        return value

    def string(self, value, field: str) -> str:
        return self.kind(value, str, field, "a string")

    def strings(self, value, field: str) -> list:
        if value is None:
            return []
        return [self.string(item, f"{field}[{i}]") for i, item in enumerate(self.kind(value, list, field, "a list"))]

    def objects(self, value, field: str) -> list:
        if value is None:
            return []
        return [self.kind(item, dict, f"{field}[{i}]", "an object")
                for i, item in enumerate(self.kind(value, list, field, "a list"))]

    def number(self, value, field: str, top: int) -> int:
        self.kind(value, int, field, "a whole number")
        if not 0 <= value <= top:
            self.fail(f"{field} is {value}, out of range 0..{top}")
        return value

    def action(self, name, ret, field: str, ret_field: str) -> int:
        name = self.string(name, field)
        if name == "SCMP_ACT_NOTIFY":
            self.fail(f"{field} SCMP_ACT_NOTIFY needs a listener, which minirun does not run",
                      "use SCMP_ACT_ERRNO or SCMP_ACT_KILL_PROCESS")
        if name not in ACTIONS:
            self.fail(f"unknown {field} {name!r}", f"actions are {', '.join(ACTIONS)}")
        value = ACTIONS[name]
        if value in (ERRNO, TRACE):
            value |= 1 if ret is None else self.number(ret, ret_field, MAX_ERRNO)   # EPERM unless given
        return value

    def condition(self, value, field: str) -> Condition:
        value = self.kind(value if value is not None else {}, dict, field, "an object")
        caps = frozenset(c.upper().removeprefix("CAP_").lower()
                         for c in self.strings(value.get("caps"), f"{field}.caps"))
        arches = tuple(self.strings(value.get("arches"), f"{field}.arches"))
        minimum = value.get("minKernel")
        if minimum is not None:
            parts = self.string(minimum, f"{field}.minKernel").split(".")
            if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
                self.fail(f"{field}.minKernel {minimum!r} is not MAJOR.MINOR", "e.g. \"4.8\"")
            minimum = (int(parts[0]), int(parts[1]))
        return Condition(caps, arches, minimum)

    def rule(self, entry: dict, i: int) -> Rule:
        field = f"syscalls[{i}]"
        names = self.strings(entry.get("names"), f"{field}.names")
        if entry.get("name") is not None:
            if names:
                self.fail(f"{field} has both name and names", "use names")
            names = [self.string(entry["name"], f"{field}.name")]
        if not names:
            self.fail(f"{field} names no syscall", "give names: [\"...\"]")
        for name in names:
            if not name or not all(c.isascii() and (c.isalnum() or c == "_") for c in name):
                self.fail(f"{field}: {name!r} is not a syscall name")
        action = self.action(entry.get("action"), entry.get("errnoRet"), f"{field}.action", f"{field}.errnoRet")
        args = []
        for j, arg in enumerate(self.objects(entry.get("args"), f"{field}.args")):
            where = f"{field}.args[{j}]"
            op = self.string(arg.get("op"), f"{where}.op")
            if op not in OPS:
                self.fail(f"unknown {where}.op {op!r}", f"operators are {', '.join(OPS)}")
            args.append(Arg(self.number(arg.get("index"), f"{where}.index", 5),
                            self.number(arg.get("value", 0), f"{where}.value", 2**64 - 1),
                            self.number(arg.get("valueTwo", 0), f"{where}.valueTwo", 2**64 - 1), OPS[op]))
        return Rule(tuple(names), action, tuple(args), self.condition(entry.get("includes"), f"{field}.includes"),
                    self.condition(entry.get("excludes"), f"{field}.excludes"))


# ---------------------------------------------------------------- selection

def applies(rule: Rule, caps: frozenset, arch: str, kernel: tuple) -> bool:
    """Docker's rule: every condition the includes set holds (all of its caps are
    held), and none of the excludes' does (any one of its caps held excludes)."""
    inc, exc = rule.includes, rule.excludes
    included = ((not inc.caps or inc.caps <= caps) and (not inc.arches or arch in inc.arches)
                and (inc.min_kernel is None or kernel >= inc.min_kernel))
    excluded = (bool(exc.caps & caps) or arch in exc.arches
                or (exc.min_kernel is not None and kernel >= exc.min_kernel))
    return included and not excluded


def select(profile: Profile, caps: frozenset, arch: str, kernel: tuple[int, int]) -> Selected:
    """The libseccomp rules for a container holding caps (names like sys_admin) on a
    host of Go architecture arch (amd64, arm64, ...) with kernel (major, minor)."""
    calls = []
    for rule in profile.rules:
        if not applies(rule, caps, arch, kernel):
            continue
        indexes = [a.index for a in rule.args]
        groups = [(a,) for a in rule.args] if len(set(indexes)) < len(indexes) else [rule.args]
        for name in rule.names:
            calls += [Call(name, rule.action, args) for args in groups]
    return Selected(profile.source, profile.default_action, profile.architectures, profile.arch_map,
                    profile.flags, tuple(calls))
