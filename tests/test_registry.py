import pytest

from bench.errors import UnknownNameError
from bench.interface import METHODS, Method
from bench.registry import Registry


class Base:
    pass


def make_registry() -> Registry:
    registry = Registry("widget", base=Base)

    @registry.register("plain", aliases=("p",), variants={"big": {"size": 2}})
    class Plain(Base):
        pass

    @registry.register("needs", variants={"a": {"k": 1}, "b": {"k": 2}}, variants_only=True)
    class Needs(Base):
        pass

    return registry


def test_names_variants_and_defaults():
    registry = make_registry()
    assert registry.names() == ["plain"]
    assert registry.names(with_variants=True) == ["needs:a", "needs:b", "plain", "plain:big"]
    assert registry.defaults() == ["needs:a", "needs:b", "plain"]
    assert registry.expand("plain:*") == ["plain", "plain:big"]
    assert registry.expand("needs:*") == ["needs:a", "needs:b"]


def test_resolve_returns_the_variants_fixed_arguments_and_follows_aliases():
    registry = make_registry()
    obj, fixed = registry.resolve("p:big")
    assert obj.__name__ == "Plain" and fixed == {"size": 2}


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("nope", "choose one of needs:a, needs:b, plain"),
        ("plain:small", "plain:big"),
        ("needs", "needs a variant"),
    ],
)
def test_unknown_names_list_the_valid_ones(name, hint):
    with pytest.raises(UnknownNameError, match=hint):
        make_registry().resolve(name)


def test_base_class_is_enforced():
    with pytest.raises(TypeError, match="must subclass Base"):
        make_registry().register("bad")(int)


def test_builtin_methods_are_registered_with_summaries_and_origin():
    assert {"late-fusion", "moddrop", "unimodal:m1", "unimodal:m2"} <= set(METHODS.defaults())
    for name in METHODS.names(with_variants=True):
        cls, _ = METHODS.resolve(name)
        assert issubclass(cls, Method) and cls.summary and cls.citation
    assert METHODS.origin("late-fusion").endswith(
        "late_fusion.py:" + METHODS.origin("late-fusion").rsplit(":", 1)[1]
    )
