"""A faithful local emulator of an asynchronous image-generation task API."""

from .app import Emulator, create_app
from .config import Settings, build_settings

__all__ = ["Emulator", "Settings", "build_settings", "create_app"]
__version__ = "0.1.0"
