"""dataclass() and field(): the part of the stdlib's dataclasses that minirun uses,
without its import cost.

Why: `minirun run` must start faster than runc, and importing dataclasses (it
pulls in inspect, ast and dis) plus generating each class's methods with exec()
cost ~15 ms of every start. These records build no code: one generic __init__,
__repr__, __eq__ and __hash__ read the class's field list.

Supported, as in dataclasses: @dataclass and @dataclass(frozen=True); fields from
the class's own annotations after its bases' (a redefinition keeps its place);
defaults; field(default=, default_factory=, compare=, hash=, repr=); positional
or keyword construction; eq comparing the compare fields of the same class;
frozen records that refuse attribute assignment and hash their compare fields;
methods the class defines itself are never replaced. asdict() gives a shallow
dict of the fields; replace() a copy with some fields changed.

Type checkers see the fields because dataclass() is marked with PEP 681's
typing.dataclass_transform. typing itself must not be imported at run time (it
costs `minirun run` ~2 ms, and the run's import list is pinned by
tests/integration/test_run.py), so the marker is imported under a local
`TYPE_CHECKING = False`: mypy and pyright treat any name TYPE_CHECKING as true
and read the import; the interpreter never runs it and uses the no-op below.
"""

from __future__ import annotations

__all__ = ["FrozenInstanceError", "asdict", "dataclass", "field", "replace"]

TYPE_CHECKING = False           # true for type checkers only: see the module docstring
if TYPE_CHECKING:
    from typing import dataclass_transform
else:
    def dataclass_transform(**_):
        return lambda decorated: decorated

_MISSING = object()
MISSING = _MISSING              # a Field's default when it has none


class FrozenInstanceError(AttributeError):
    pass


class Field:
    __slots__ = ("name", "default", "default_factory", "compare", "hash", "repr")

    def __init__(self, default=_MISSING, default_factory=_MISSING, compare=True, hash=None, repr=True):
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default, self.default_factory = default, default_factory
        self.compare, self.hash, self.repr = compare, hash, repr


def field(*, default=_MISSING, default_factory=_MISSING, compare=True, hash=None, repr=True) -> Field:
    return Field(default, default_factory, compare, hash, repr)


@dataclass_transform(field_specifiers=(field, Field))
def dataclass(cls=None, *, frozen: bool = False):
    def wrap(cls):
        _make(cls, frozen)
        return cls
    return wrap if cls is None else wrap(cls)


def asdict(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in obj.__record_fields__}


def replace(obj, **changes):
    """A copy of the record obj with changes made (a frozen record cannot be changed
    in place); an unknown name is a TypeError, as a misspelt keyword would be."""
    return type(obj)(**{**asdict(obj), **changes})


# ---------------------------------------------------------------- building a class

def _make(cls, frozen: bool) -> None:
    # Every start of a container builds ~30 records: this runs without generators
    # and without asking object for fields (getattr with a default raises inside).
    own = cls.__dict__
    fields: dict[str, Field] = {}
    for base in cls.__mro__[-2:0:-1]:              # the bases, farthest first, without object
        for f in getattr(base, "__record_fields__", ()):    # a plain base passes its records' on
            fields[f.name] = f
    for name in own.get("__annotations__", ()):
        value = own.get(name, _MISSING)
        if isinstance(value, Field):
            f = value
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        else:
            f = Field(value)
        f.name = name
        fields[name] = f
    ordered = tuple(fields.values())
    seen_default = False
    compared, hashed = [], []
    for f in ordered:
        if f.default is not _MISSING or f.default_factory is not _MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"{cls.__name__}: non-default field {f.name!r} follows a default one")
        if f.compare:
            compared.append(f.name)
        if f.compare if f.hash is None else f.hash:
            hashed.append(f.name)
    cls.__record_fields__ = ordered
    cls.__record_compared__ = tuple(compared)
    cls.__record_hashed__ = tuple(hashed)
    if "__init__" not in own:
        cls.__init__ = _init
    if "__repr__" not in own:
        cls.__repr__ = _repr
    if "__eq__" not in own:
        cls.__eq__ = _eq
    if own.get("__hash__") is None:
        cls.__hash__ = _hash if frozen else None
    if frozen:
        cls.__setattr__ = _refuse_set
        cls.__delattr__ = _refuse_del


def _init(self, *args, **kwargs) -> None:
    fields = type(self).__record_fields__
    if len(args) > len(fields):
        raise TypeError(f"{type(self).__name__}() takes {len(fields)} arguments, {len(args)} given")
    put = object.__setattr__
    for i, f in enumerate(fields):
        if i < len(args):
            if f.name in kwargs:
                raise TypeError(f"{type(self).__name__}() got multiple values for {f.name!r}")
            value = args[i]
        elif f.name in kwargs:
            value = kwargs.pop(f.name)
        elif f.default is not _MISSING:
            value = f.default
        elif f.default_factory is not _MISSING:
            value = f.default_factory()
        else:
            raise TypeError(f"{type(self).__name__}() missing argument {f.name!r}")
        put(self, f.name, value)
    if kwargs:
        raise TypeError(f"{type(self).__name__}() got unexpected arguments {sorted(kwargs)}")


def _repr(self) -> str:
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in type(self).__record_fields__ if f.repr)
    return f"{type(self).__qualname__}({shown})"


def _eq(self, other):
    if other.__class__ is not self.__class__:
        return NotImplemented
    names = self.__record_compared__
    return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)


def _hash(self) -> int:
    return hash(tuple(getattr(self, n) for n in self.__record_hashed__))


def _refuse_set(self, name, value):
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_del(self, name):
    raise FrozenInstanceError(f"cannot delete field {name!r}")
