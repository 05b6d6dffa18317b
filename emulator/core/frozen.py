"""Frozen dataclasses built at the cost of plain ones, for the few made on every request.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (its own
``__setattr__`` refuses): about 0.15 µs a field, 3 µs for a `Task` of 21 fields, where a plain
slotted class's assignments cost 0.4 µs in all. ``builder(cls)`` is such a plain twin of
``cls`` (same fields, defaults and slots) whose instances turn into ``cls`` instances as their
``__init__`` ends (``__class__`` assignment, which Python allows between classes of the same
layout). What comes out is exactly what ``cls(...)`` makes: same type, fields, equality, hash,
and just as frozen. A twin that no longer matches its class fails on its first use
(``TypeError``: layouts differ), never quietly (tests/test_tasks.py builds each one).

Only where measured to matter (docs/profile.md): a submission's `Task`, `Schedule`, `Charge`
and `Submission`, and the `Task` each poll counts in the memory store.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, cast

T = TypeVar("T")


def builder(cls: type[T]) -> type[T]:
    """A class called like ``cls`` whose calls return ``cls`` instances, built faster.

    ``cls`` must be a frozen dataclass with ``slots=True`` and fields set only by its
    ``__init__`` (no ``__post_init__``, no ``init=False`` field).
    """
    params = cast(Any, cls).__dataclass_params__
    if not (params.frozen and "__slots__" in vars(cls)) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: builder() takes frozen, slotted dataclasses only")
    specs: list[tuple[str, Any, dataclasses.Field[Any]]] = []
    for spec in dataclasses.fields(cast(Any, cls)):
        if not spec.init:
            raise TypeError(f"{cls.__name__}.{spec.name}: builder() needs every field in init")
        specs.append(
            (
                spec.name,
                # Not the field's annotation (a string here): dataclass() would parse each one
                # with regular expressions (ClassVar? InitVar?), and the twin needs none.
                Any,
                dataclasses.field(
                    default=spec.default, default_factory=spec.default_factory, kw_only=spec.kw_only
                ),
            )
        )

    def __post_init__(self: Any) -> None:
        self.__class__ = cls  # the layouts are the same: the object is now a cls

    twin = dataclasses.make_dataclass(
        f"{cls.__name__}Builder",
        specs,
        # A docstring of its own: without one, dataclass() writes one from the class's
        # signature (inspect.signature), about a third of the twin's cost at every start.
        namespace={"__post_init__": __post_init__, "__doc__": f"Builds a `{cls.__name__}`."},
        eq=False,
        repr=False,
        match_args=False,
        slots=True,
    )
    twin.__module__ = cls.__module__
    return cast("type[T]", twin)


__all__ = ["builder"]
