"""Device models: the API, the registry, and the built-in devices (loaded through entry points)."""

from .base import (
    REQUIRED_COST_KEYS,
    Choice,
    Device,
    DeviceConfig,
    DeviceLayer,
    FloatRange,
    IntRange,
)
from .registry import broken_devices, create_device, get_device_class, list_devices, refresh

__all__ = [
    "REQUIRED_COST_KEYS",
    "Choice",
    "Device",
    "DeviceConfig",
    "DeviceLayer",
    "FloatRange",
    "IntRange",
    "broken_devices",
    "create_device",
    "get_device_class",
    "list_devices",
    "refresh",
]
