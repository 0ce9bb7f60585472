"""Device discovery through the ``codesign.devices`` entry-point group.

Built-in devices register in our own ``pyproject.toml`` exactly as a third-party plugin does
(xarray's backend pattern): entry points are read lazily and cached; a plugin that fails to
import (e.g. an optional dependency is missing) is skipped and remembered, not fatal; an unknown
name is an error that lists what is installed. A device class that loads but breaks the cheap
part of the contract (:func:`codesign.devices.testing.static_checks`: a cost without
``latency_ns``, a search-space key that is no config field...) is listed as failed too, with the
reason, instead of failing later inside a search.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any, Mapping

from codesign.errors import ConfigError

from .base import Device
from .testing import static_checks

GROUP = "codesign.devices"


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict:
    eps = {}
    for ep in entry_points(group=GROUP):
        eps.setdefault(ep.name, ep)
    return eps


_loaded: dict[str, type[Device]] = {}
_broken: dict[str, str] = {}


def refresh() -> None:
    """Forget the cached entry points (after installing a plugin in the same process)."""
    _entry_points.cache_clear()
    _loaded.clear()
    _broken.clear()


def _load(name: str) -> type[Device] | None:
    if name in _loaded:
        return _loaded[name]
    ep = _entry_points().get(name)
    if ep is None or name in _broken:
        return None
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must not take the platform down
        _broken[name] = f"{type(exc).__name__}: {exc}"
        return None
    if not (isinstance(cls, type) and issubclass(cls, Device)):
        _broken[name] = f"entry point {ep.value} is not a codesign.devices.base.Device subclass"
        return None
    try:
        static_checks(cls)
    except Exception as exc:  # a contract violation, or a crash while checking it
        _broken[name] = f"{type(exc).__name__}: {exc}"
        return None
    _loaded[name] = cls
    return cls


def list_devices() -> list[str]:
    """Names of the installed devices that load, sorted."""
    return sorted(n for n in _entry_points() if _load(n) is not None)


def broken_devices() -> dict[str, str]:
    """Installed plugins that failed to load, with the reason."""
    for n in _entry_points():
        _load(n)
    return dict(_broken)


def get_device_class(name: str) -> type[Device]:
    """The device class registered as ``name``; unknown names list the installed ones."""
    cls = _load(name)
    if cls is None:
        known = ", ".join(list_devices()) or "(none)"
        why = f" (it failed to load: {_broken[name]})" if name in _broken else ""
        raise ConfigError(f"unknown device {name!r}{why}; installed devices: {known}")
    return cls


def create_device(
    name: str, overrides: Mapping[str, Any] | None = None, *, preset: str | None = None
) -> Device:
    """Build device ``name``: its default config, then preset ``preset``, then ``overrides``.

    Args:
        name: an installed device (:func:`list_devices`).
        overrides: ``{config field: value}``; strings are converted to the field's type.
        preset: a named config of a published chip (``get_device_class(name).presets()``).

    Raises:
        ConfigError: an unknown device or preset (the message lists the valid names), or a bad
            override.
    """
    cls = get_device_class(name)
    if preset is not None:
        return cls.from_preset(preset, overrides)
    device = cls()
    return device.with_overrides(overrides) if overrides else device
