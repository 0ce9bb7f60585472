"""Device models: the API, the registry, and the built-in devices (loaded through entry points)."""

if __name__ != "codesign.devices":
    # This folder sits at the repository root but installs as ``codesign.devices``. Run from the root,
    # ``import devices`` would otherwise load a second copy of it under a generic name, whose
    # classes are not the installed ones (isinstance checks and registries would disagree).
    raise ModuleNotFoundError(
        f"No module named {__name__!r}: this folder is the package 'codesign.devices'; import that instead",
        name=__name__,
    )


from .base import (
    DEFAULT_T_INFERENCE_S,
    REQUIRED_COST_KEYS,
    Choice,
    Device,
    DeviceConfig,
    DeviceLayer,
    FloatRange,
    IntRange,
    Mode,
    Preset,
)
from .registry import broken_devices, create_device, get_device_class, list_devices, refresh

__all__ = [
    "DEFAULT_T_INFERENCE_S",
    "REQUIRED_COST_KEYS",
    "Choice",
    "Device",
    "DeviceConfig",
    "DeviceLayer",
    "FloatRange",
    "IntRange",
    "Mode",
    "Preset",
    "broken_devices",
    "create_device",
    "get_device_class",
    "list_devices",
    "refresh",
]
