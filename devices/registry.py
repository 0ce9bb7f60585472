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

from typing import Any, Mapping

from codesign.plugins import PluginRegistry

from .base import Device
from .testing import static_checks

GROUP = "codesign.devices"


def contract_problem(cls: Any, name: str) -> str | None:
    """Why ``cls`` cannot serve as device ``name`` (None if it can): the static checks."""
    if not (isinstance(cls, type) and issubclass(cls, Device)):
        return f"{cls!r} is not a codesign.devices.base.Device subclass"
    try:
        static_checks(cls)
    except Exception as exc:  # a contract violation, or a crash while checking it
        return f"{type(exc).__name__}: {exc}"
    return None


#: Every installed device (built-ins included), loaded on first use.
REGISTRY = PluginRegistry(GROUP, "device", "installed devices", contract_problem)


def refresh() -> None:
    """Forget the cached entry points (after installing a plugin in the same process)."""
    REGISTRY.refresh()


def list_devices() -> list[str]:
    """Names of the installed devices that load, sorted."""
    return REGISTRY.names()


def broken_devices() -> dict[str, str]:
    """Installed plugins that failed to load or break the static contract, with the reason."""
    return REGISTRY.failures()


def get_device_class(name: str) -> type[Device]:
    """The device class registered as ``name``; unknown names list the installed ones."""
    return REGISTRY.get(name)


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
