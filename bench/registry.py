"""One small registry for every kind of plugin: methods, dataset adapters, metrics, image and
text encoders, executors.

Modelled on lm-evaluation-harness's registry and timm's ``register_model``: names map to
objects, optionally with aliases and named variants (``name:variant``, like timm's
``arch.tag``); third-party packages add entries through an entry-point group.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from bench.errors import UnknownNameError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its variants: named, frozen overrides of its arguments."""

    name: str
    obj: T
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    variants_only: bool = False  # True when the bare name is not a complete configuration


class Registry(Generic[T]):
    """Names -> objects, with aliases, variants, a base-class check and lazy discovery.

    ``builtin`` is a module imported on first lookup (its imports register the built-ins);
    ``group`` is the entry-point group scanned at the same time.
    """

    def __init__(
        self, kind: str, base: type | None = None, builtin: str | None = None, group: str = ""
    ) -> None:
        self.kind = kind
        self.base = base
        self._builtin = builtin
        self._group = group
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._discovered = False

    def register(
        self,
        name: str,
        *,
        aliases: Iterable[str] = (),
        variants: Mapping[str, Mapping[str, Any]] | None = None,
        variants_only: bool = False,
    ) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (names may not contain ':')."""
        if ":" in name:
            raise ValueError(f"{self.kind} name {name!r} may not contain ':' (used for variants)")

        def decorate(obj: T) -> T:
            if self.base is not None and not (inspect.isclass(obj) and issubclass(obj, self.base)):
                raise TypeError(f"{obj!r} must subclass {self.base.__name__} to be a {self.kind}")
            if name in self._entries and self._entries[name].obj is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, obj, dict(variants or {}), variants_only)
            for alias in aliases:
                self._aliases[alias] = name
            return obj

        return decorate

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        if self._builtin:
            import_module(self._builtin)
        if self._group:
            for ep in entry_points(group=self._group):
                try:
                    ep.load()
                except Exception as err:  # a broken plugin must not break the harness
                    log.warning("could not load %s plugin %s: %s", self.kind, ep.value, err)

    def unregister(self, name: str) -> None:
        """Remove ``name`` and its aliases: the undo of :meth:`register`, for entries added
        at run time (a test's toy plugin)."""
        name = self.entry(name).name
        del self._entries[name]
        self._aliases = {a: n for a, n in self._aliases.items() if n != name}

    def objects(self) -> list[T]:
        """Every registered object in registration order (built-ins, then plugins, then
        anything registered at run time), for kinds whose order is meaningful."""
        self._discover()
        return [entry.obj for entry in self._entries.values()]

    def names(self, with_variants: bool = False) -> list[str]:
        """Sorted names; with variants, each ``name:variant`` too."""
        self._discover()
        out: list[str] = []
        for name, entry in sorted(self._entries.items()):
            if not entry.variants_only:
                out.append(name)
            if with_variants:
                out += [f"{name}:{v}" for v in entry.variants]
        return out

    def defaults(self) -> list[str]:
        """What ``all`` means: each entry once, or all its variants if it needs one."""
        self._discover()
        out: list[str] = []
        for name, entry in sorted(self._entries.items()):
            if entry.variants_only:
                out += [f"{name}:{v}" for v in entry.variants]
            else:
                out.append(name)
        return out

    def entry(self, name: str) -> Entry[T]:
        self._discover()
        name = self._aliases.get(name, name)
        if name not in self._entries:
            valid = ", ".join(self.names(with_variants=True))
            raise UnknownNameError(f"unknown {self.kind} {name!r}: choose one of {valid}")
        return self._entries[name]

    def resolve(self, full_name: str) -> tuple[T, dict[str, Any]]:
        """``'name:variant'`` -> (object, the variant's fixed arguments)."""
        base, _, variant = full_name.partition(":")
        entry = self.entry(base)
        if not variant:
            if entry.variants_only:
                raise UnknownNameError(
                    f"{self.kind} {base!r} needs a variant: choose one of "
                    + ", ".join(f"{base}:{v}" for v in entry.variants)
                )
            return entry.obj, {}
        if variant not in entry.variants:
            valid = ", ".join(f"{base}:{v}" for v in entry.variants) or "none"
            raise UnknownNameError(
                f"unknown variant {full_name!r} of {self.kind} {base!r}: choose one of {valid}"
            )
        return entry.obj, dict(entry.variants[variant])

    def expand(self, selector: str) -> list[str]:
        """``name:*`` -> the name (if complete) and each of its variants; else ``[selector]``."""
        if not selector.endswith(":*"):
            self.resolve(selector)
            return [selector]
        base = selector[:-2]
        entry = self.entry(base)
        head = [] if entry.variants_only else [entry.name]
        return head + [f"{entry.name}:{v}" for v in entry.variants]

    def origin(self, name: str) -> str:
        """``file:line`` where ``name`` is defined."""
        obj = self.entry(name.partition(":")[0]).obj
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"  # type: ignore[arg-type]
