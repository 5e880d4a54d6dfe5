"""lib/frozen.py: the records every module builds on behave as the stdlib's
dataclasses would, for the part minirun uses, and carry the type checkers' marker."""

from __future__ import annotations

import ast
import inspect

import pytest

from minirun.lib import frozen
from minirun.lib.frozen import Field, FrozenInstanceError, asdict, dataclass, field, replace


@dataclass(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: list = field(default_factory=list, compare=False)
    note: str = field(default="", repr=False)


@dataclass
class Mutable:
    a: int = 1


@dataclass(frozen=True)
class Point3(Point):
    z: int = 0
    x: int = 5                  # a redefinition keeps its place (first)


def test_positional_keyword_and_default_construction():
    assert (Point(1).x, Point(1).y, Point(1, 2).y, Point(x=3, y=4).y) == (1, 0, 2, 4)
    assert Point(1).tags == [] and Point(1).tags is not Point(1).tags


@pytest.mark.parametrize("make,said", [
    (lambda: Point(), "missing argument 'x'"),
    (lambda: Point(1, 2, [], "", 9), "takes 4 arguments"),
    (lambda: Point(1, x=2), "multiple values for 'x'"),
    (lambda: Point(1, w=2), "unexpected arguments ['w']"),
])
def test_wrong_arguments_are_a_type_error_naming_them(make, said):
    with pytest.raises(TypeError) as err:
        make()
    assert said in str(err.value)


def test_frozen_refuses_assignment_and_deletion_and_hashes_compared_fields():
    p = Point(1, 2)
    with pytest.raises(FrozenInstanceError):
        p.x = 3
    with pytest.raises(FrozenInstanceError):
        del p.y
    assert hash(p) == hash(Point(1, 2, ["other"]))
    assert p == Point(1, 2, ["other"]) and p != Point(1, 3)


def test_mutable_records_assign_and_are_unhashable():
    m = Mutable()
    m.a = 2
    assert m == Mutable(2)
    with pytest.raises(TypeError):
        hash(m)


def test_eq_is_only_between_records_of_the_same_class():
    assert Point(1) != Point3(1) and (Point(1) == (1, 0)) is False


def test_repr_shows_the_repr_fields():
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=[])"


def test_inherited_fields_come_first_and_a_redefinition_keeps_its_place():
    assert [f.name for f in Point3.__record_fields__] == ["x", "y", "tags", "note", "z"]
    assert Point3().x == 5


def test_a_required_field_after_a_default_one_is_refused():
    with pytest.raises(TypeError, match="non-default field 'b'"):
        @dataclass
        class Bad:
            a: int = 0
            b: int


def test_both_default_and_factory_are_refused():
    with pytest.raises(ValueError):
        field(default=1, default_factory=list)


def test_methods_the_class_defines_are_kept():
    @dataclass(frozen=True)
    class Own:
        a: int

        def __repr__(self):
            return "own"
    assert repr(Own(1)) == "own"


def test_asdict_and_replace():
    p = Point(1, 2, ["t"], "n")
    assert asdict(p) == {"x": 1, "y": 2, "tags": ["t"], "note": "n"}
    q = replace(p, y=7)
    assert (q.x, q.y, q.tags, p.y) == (1, 7, ["t"], 2)
    with pytest.raises(TypeError):
        replace(p, w=1)


def test_the_type_checkers_marker_is_there_and_typing_is_not_imported():
    """dataclass() is decorated with dataclass_transform, imported only where a type
    checker looks (a module-level TYPE_CHECKING that is False at run time)."""
    tree = ast.parse(inspect.getsource(frozen))
    guarded = [node for node in tree.body if isinstance(node, ast.If) and
               isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"]
    assert guarded and "dataclass_transform" in ast.unparse(guarded[0].body[0])
    assert frozen.TYPE_CHECKING is False
    decorated = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "dataclass")
    assert [ast.unparse(d).split("(")[0] for d in decorated.decorator_list] == ["dataclass_transform"]


def test_a_plain_base_passes_its_records_fields_on_as_dataclasses_does():
    @dataclass
    class P:
        x: int = 1

    @dataclass
    class Q(P):
        x: int = 2

    class Plain(P):
        pass

    @dataclass
    class C(Plain, Q):
        y: int = 3
    assert (C().x, C().y) == (1, 3)        # the stdlib's dataclasses gives the same


def test_a_field_subclass_is_a_field():
    class Mine(Field):
        pass

    @dataclass
    class R:
        a: int = Mine(default=5)
    assert R().a == 5
