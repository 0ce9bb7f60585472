"""The device contract where a device runs: checked at first use, the verdict cached.

``distill``, ``search`` and ``export`` call :func:`require_device` before any work. The first time
a device is used, the whole shipped contract (:func:`codesign.devices.testing.check_device`, a
few seconds) runs on its default config; the verdict is cached per device, plugin version,
codesign version and source digest of the device's module (``CACHE/device-checks/``), so later
uses cost a file read and a changed plugin is checked again. A failing device is refused in one
line naming the device, its plugin, the failed check and the fix; ``codesign devices`` shows
every verdict (:func:`device_verdict` with ``run=False`` reads it without running the checks).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codesign.cache import atomic_write_json, cache_root
from codesign.errors import ConfigError

#: Folder of the cached verdicts, under the cache folder.
VERDICT_DIR = "device-checks"


@dataclass(frozen=True)
class Verdict:
    """What the contract said about one device.

    Attributes:
        device: the registered name.
        ok: True if every check passed; None if it has not been checked yet (``run=False``).
        message: the failed check's message ('' when it passed).
        plugin: the distribution that provides it (``codesign`` for the built-ins) and its version.
        codesign_version: the codesign version that checked it.
        seconds: how long the checks took.
        cached: True if read from the cache.
    """

    device: str
    ok: bool | None
    message: str
    plugin: str
    codesign_version: str
    seconds: float = 0.0
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _codesign_version() -> str:
    from codesign import __version__

    return __version__


def plugin_of(name: str, cls: type) -> str:
    """``"dist version"`` of the package whose entry point provides device ``name``
    (``"codesign X"`` for the built-ins, ``"module"`` for a class registered in-process)."""
    from .registry import REGISTRY

    ep = REGISTRY._entry_points().get(name)
    dist = getattr(ep, "dist", None) if ep is not None else None
    if dist is not None:
        meta = dist.metadata
        return f"{meta['Name']} {dist.version}"
    return f"{cls.__module__} (registered in this process)"


def _source_digest(cls: type) -> str:
    """SHA-256 of the files of the device's class hierarchy (a plugin edited in place is rechecked)."""
    h = hashlib.sha256()
    for klass in cls.__mro__:
        module = sys.modules.get(klass.__module__)
        try:
            path = inspect.getsourcefile(module) if module is not None else None
        except TypeError:
            path = None
        if path and Path(path).is_file():
            h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]


def _cache_file(name: str, cls: type, plugin: str, cache_dir: str | None) -> Path:
    key = hashlib.sha256(json.dumps([name, f"{cls.__module__}.{cls.__qualname__}", plugin, _codesign_version(),
                                     _source_digest(cls)]).encode()).hexdigest()[:16]
    return cache_root(cache_dir) / VERDICT_DIR / f"{name}-{key}.json"


def device_verdict(name: str, cache_dir: str | None = None, *, run: bool = True) -> Verdict:
    """The contract's verdict on device ``name``: cached, else run now (``run=False``: None, unchecked).

    Raises:
        ConfigError: an unknown device (the registry's message).
    """
    from .registry import get_device_class

    cls = get_device_class(name)
    plugin = plugin_of(name, cls)
    try:
        path = _cache_file(name, cls, plugin, cache_dir)
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        path, data = None, None
    if isinstance(data, dict) and isinstance(data.get("ok"), bool):
        return Verdict(name, data["ok"], str(data.get("message", "")), plugin, _codesign_version(),
                       float(data.get("seconds", 0.0)), cached=True)
    if not run:
        return Verdict(name, None, "", plugin, _codesign_version())
    from .testing import check_device

    t0 = time.perf_counter()
    try:
        check_device(cls)
        ok, message = True, ""
    except AssertionError as exc:  # DeviceContractError: names the device and the check
        ok, message = False, " ".join(str(exc).split())
    verdict = Verdict(name, ok, message, plugin, _codesign_version(), round(time.perf_counter() - t0, 3))
    if path is not None:
        try:
            atomic_write_json(path, verdict.as_dict())
        except (OSError, ConfigError):  # a read-only cache: checked again next time
            pass
    return verdict


def require_device(name: str | None, cache_dir: str | None = None, *, command: str = "") -> None:
    """Refuse, in one line, a device that fails the contract (checked at first use, then cached).

    Args:
        name: the device (None: nothing to check).
        cache_dir: the cache folder of the command (default ``$CODESIGN_CACHE``).
        command: the command refusing it, for the message (``distill``, ``search``, ``export``).

    Raises:
        ConfigError: naming the device, its plugin, the failed check and the fix.
    """
    if name is None:
        return
    v = device_verdict(name, cache_dir)
    if v.ok:
        return
    where = f"{command} refuses " if command else ""
    raise ConfigError(f"{where}device {name!r} of plugin {v.plugin}: it fails the device contract ({v.message}); "
                      "fix the plugin until codesign.devices.testing.check_device passes on it, then reinstall it")


__all__ = ["VERDICT_DIR", "Verdict", "device_verdict", "plugin_of", "require_device"]
