"""One registry for every kind of plugin (devices, dictionaries), read from an entry-point group.

xarray's backend pattern: built-ins and third-party plugins come through the same entry-point
group, read lazily and cached; a plugin that fails to import, or breaks its kind's static
contract, is remembered with the reason and listed as failed, never fatal; an unknown name is
an error that lists what is installed. :meth:`PluginRegistry.register` adds a class in this
process only (a notebook, a script, a test).
"""

from __future__ import annotations

import fnmatch
from importlib.metadata import entry_points
from typing import Any, Callable

from .errors import ConfigError

#: ``check(cls, name)``: why ``cls`` cannot serve as plugin ``name``, or None when it can.
ContractCheck = Callable[[Any, str], "str | None"]


class PluginRegistry:
    """The plugins of one entry-point group.

    Args:
        group: the entry-point group (``codesign.devices``).
        kind: what a plugin is, for messages (``device``).
        known: how the error for an unknown name introduces the list (``installed devices``).
        check: the static contract, run on every class before it is listed.
    """

    def __init__(self, group: str, kind: str, known: str, check: ContractCheck) -> None:
        self.group, self.kind, self.known, self.check = group, kind, known, check
        self._eps: dict | None = None
        self.loaded: dict[str, type] = {}
        self.broken: dict[str, str] = {}
        self.registered: dict[str, type] = {}

    def _entry_points(self) -> dict:
        if self._eps is None:
            eps: dict = {}
            for ep in entry_points(group=self.group):
                eps.setdefault(ep.name, ep)
            self._eps = eps
        return self._eps

    def refresh(self) -> None:
        """Forget the cached entry points (after installing a plugin in the same process)."""
        self._eps = None
        self.loaded.clear()
        self.broken.clear()

    def load(self, name: str) -> type | None:
        """The class registered as ``name``, or None (unknown, or failed to load: see :attr:`broken`)."""
        if name in self.registered:
            return self.registered[name]
        if name in self.loaded:
            return self.loaded[name]
        ep = self._entry_points().get(name)
        if ep is None or name in self.broken:
            return None
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the platform down
            self.broken[name] = f"{type(exc).__name__}: {exc}"
            return None
        try:
            problem = self.check(cls, name)
        except Exception as exc:  # noqa: BLE001 - a crash while checking is a reason too
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            self.broken[name] = f"entry point {ep.value}: {problem}"
            return None
        self.loaded[name] = cls
        return cls

    def names(self, pattern: str | None = None) -> list[str]:
        """Names of the plugins that load, sorted; ``pattern`` filters them (``"rb*"``)."""
        names = sorted(n for n in {*self._entry_points(), *self.registered} if self.load(n) is not None)
        return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]

    def failures(self) -> dict[str, str]:
        """Installed plugins that failed to load or break the contract, with the reason."""
        for n in self._entry_points():
            self.load(n)
        return dict(self.broken)

    def get(self, name: str) -> type:
        """The class registered as ``name``; an unknown name lists the installed ones."""
        cls = self.load(name) if isinstance(name, str) else None
        if cls is None:
            known = ", ".join(self.names()) or "(none)"
            why = f" (it failed to load: {self.broken[name]})" if isinstance(name, str) and name in self.broken else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{why}; {self.known}: {known}")
        return cls

    def register(self, cls: type) -> type:
        """Add ``cls`` under ``cls.name`` in this process; it must pass the contract and not
        shadow an installed plugin."""
        name = getattr(cls, "name", None)
        problem = self.check(cls, name)
        if problem:
            raise ConfigError(f"cannot register {self.kind} {name!r}: {problem}")
        ep = self._entry_points().get(name)
        if ep is not None:
            raise ConfigError(f"cannot register {self.kind} {name!r}: that name is installed ({ep.value})")
        self.registered[name] = cls
        return cls
