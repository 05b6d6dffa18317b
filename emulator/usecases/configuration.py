"""What an emulator is configured with: the settings in force and the data tables built from
them (catalogue, timing, prices). One object per emulator, shared by its parts; `apply` replaces
its contents together when the settings change at run time."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from ..config import Settings, checked
from ..core.billing import PriceTable
from ..core.catalogue import Catalogue
from ..core.keys import mask_key
from ..core.timing import Timing
from ..stores import masked_url


@functools.lru_cache(maxsize=16)
def _packaged_tables(
    enabled_models: tuple[str, ...] | None, nano_max_n: int
) -> tuple[Catalogue, Timing, PriceTable]:
    """The packaged data tables, parsed once per process: they never change while it runs and
    the tables are frozen, and parsing three TOML files was most of an emulator's creation
    (the pytest fixture makes one per test)."""
    catalogue = Catalogue.load(enabled_models=enabled_models, nano_max_n=nano_max_n)
    return catalogue, Timing.load(), PriceTable.load(None, catalogue)


class Configuration:
    """The settings in force, and the catalogue, timing and price tables they name."""

    __slots__ = ("catalogue", "prices", "settings", "timing")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings = checked(settings)
        if settings.catalogue_file is settings.timing_file is settings.price_file is None:
            models = None if settings.enabled_models is None else tuple(settings.enabled_models)
            self.catalogue, self.timing, self.prices = _packaged_tables(models, settings.nano_max_n)
        else:
            self.catalogue = Catalogue.load(
                settings.catalogue_file,
                enabled_models=settings.enabled_models,
                nano_max_n=settings.nano_max_n,
            )
            self.timing = Timing.load(settings.timing_file)
            self.prices = PriceTable.load(settings.price_file, self.catalogue)

    def apply(self, settings: Settings) -> None:
        """Put changed settings in force (``PATCH /_emulator/config``).

        Every table is built and checked against the others before any is swapped in, so a
        refused change (ValueError, OSError) leaves everything as it was.
        """
        catalogue, timing = self.catalogue, self.timing
        if (settings.catalogue_file, settings.enabled_models, settings.nano_max_n) != (
            self.settings.catalogue_file,
            self.settings.enabled_models,
            self.settings.nano_max_n,
        ):
            catalogue = Catalogue.load(
                settings.catalogue_file,
                enabled_models=settings.enabled_models,
                nano_max_n=settings.nano_max_n,
            )
        if settings.timing_file != self.settings.timing_file:
            timing = Timing.load(settings.timing_file)
        # The prices must cover the (possibly new) catalogue, or its new models would 500.
        prices = PriceTable.load(settings.price_file, catalogue)
        self.catalogue, self.timing, self.prices = catalogue, timing, prices
        self.settings = settings


def settings_json(settings: Settings, seed: int | None = None) -> dict[str, Any]:
    """The settings as the control plane shows them: keys, the admin token and a store
    password masked; ``seed``, the seed in use (drawn at start when the setting is unset), in
    place of the setting's null."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "faults":
            value = [rule.to_dict() for rule in value]
        elif f.name == "admin_token" and value:
            value = "***"
        elif f.name == "api_keys":
            value = [mask_key(key) for key in value]  # the control plane never shows a key
        elif f.name == "store":
            value = masked_url(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    if seed is not None:
        out["seed"] = seed
    return out


__all__ = ["Configuration", "settings_json"]
