"""The model catalogue, read from data: which models exist, what each accepts, what it produces.

`Catalogue.plan` is the one place that answers "is this request valid for this model, and what
pixels, format and count will it produce" (SPEC 2.2-2.5, D-5, D-6, D-7, D-9, D-10).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidRequest, ModelNotFound
from .checks import shown

Family = Literal["nano", "gpt"]
_SIZE_RE = re.compile(r"([1-9][0-9]{0,5})x([1-9][0-9]{0,5})")


@dataclass(frozen=True, slots=True)
class FamilyRules:
    """What a model family accepts: aspect ratios, counts, sizes and qualities."""

    aspect_ratios: tuple[str, ...]
    default_aspect_ratio: str | None
    min_n: int
    max_n: int
    size_required: bool
    accepts_aspect_ratio: bool
    qualities: tuple[str, ...]
    default_quality: str | None
    #: Words accepted as ``size`` besides WxH, in any case, and ignored (D-6).
    size_words: tuple[str, ...] = ()

    def is_size_word(self, size: str) -> bool:
        # ASCII only: "1\u212a" (the Kelvin sign) lower-cases to "1k" but is no tier word.
        return size.isascii() and size.lower() in {w.lower() for w in self.size_words}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model of the catalogue: its family, output formats and (NanoBanana) pixels."""

    name: str
    family: Family
    output_formats: tuple[str, ...]
    #: NanoBanana family: resolution tier of the model name ("0.5K", "1K", ..., "base").
    tier: str | None
    #: NanoBanana family: aspect ratio -> (width, height).
    pixels: Mapping[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """What an accepted request will produce."""

    model: str
    family: Family
    width: int
    height: int
    output_format: str
    n: int
    #: gpt-image-2: normalised quality; NanoBanana family: None (not a billing dimension).
    quality: str | None
    #: Billing tier: gpt-image-2 size tier (1K/2K/4K) or the NanoBanana model's tier.
    tier: str | None
    aspect_ratio: str | None
    size: str

    @property
    def pixels(self) -> str:
        return f"{self.width}x{self.height}"


def parse_size(value: str) -> tuple[int, int] | None:
    """``"1024x768"`` -> (1024, 768); None when it is not ``WxH`` with positive integers."""
    m = _SIZE_RE.fullmatch(value)  # not match with "$": that lets "1024x768\n" through
    return (int(m.group(1)), int(m.group(2))) if m else None


#: Plans a catalogue remembers (see ``Catalogue.plan``): a few dozen in practice; the bound
#: only keeps clients that send a new valid size each time from growing the table.
MAX_PLANS_KEPT = 4096
_PlanKey = tuple[str, str | None, str | None, str | None, int | None, str | None]


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The models on offer and their families' rules; plans a request's output."""

    models: Mapping[str, ModelSpec]
    families: Mapping[str, FamilyRules]
    #: gpt-image-2 size -> tier, in the reference document's order.
    gpt_sizes: Mapping[str, str]
    enabled: frozenset[str]
    #: Plans already made, by the request's fields (the catalogue is frozen, so a plan never
    #: changes); refusals are not kept.
    _plans: dict[_PlanKey, OutputPlan] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        enabled_models: Iterable[str] | None = None,
        nano_max_n: int | None = None,
    ) -> Catalogue:
        """Read the catalogue from ``path`` (default: the packaged data file)."""
        if path is None:
            raw = tomllib.loads(
                resources.files("emulator").joinpath("data/catalogue.toml").read_text("utf-8")
            )
        else:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        return cls.from_data(raw, enabled_models=enabled_models, nano_max_n=nano_max_n)

    @classmethod
    def from_data(
        cls,
        raw: Mapping[str, Any],
        *,
        enabled_models: Iterable[str] | None = None,
        nano_max_n: int | None = None,
    ) -> Catalogue:
        families: dict[str, FamilyRules] = {}
        for name, fam in raw["families"].items():
            max_n = int(fam["max_n"])
            if name == "nano" and nano_max_n is not None:
                max_n = nano_max_n
            families[name] = FamilyRules(
                aspect_ratios=tuple(fam.get("aspect_ratios", ())),
                default_aspect_ratio=fam.get("default_aspect_ratio"),
                min_n=int(fam["min_n"]),
                max_n=max_n,
                size_required=bool(fam["size_required"]),
                accepts_aspect_ratio=bool(fam["accepts_aspect_ratio"]),
                qualities=tuple(fam.get("qualities", ())),
                default_quality=fam.get("default_quality"),
                size_words=tuple(fam.get("size_words", ())),
            )
        tables = {
            name: {ratio: _must_size(px) for ratio, px in table.items()}
            for name, table in raw.get("pixels", {}).items()
        }
        models: dict[str, ModelSpec] = {}
        for name, m in raw["models"].items():
            models[name] = ModelSpec(
                name=name,
                family=m["family"],
                output_formats=tuple(m["output_formats"]),
                tier=m.get("tier"),
                pixels=tables[m["pixels"]] if "pixels" in m else {},
            )
        enabled = frozenset(models) if enabled_models is None else frozenset(enabled_models)
        unknown = sorted(enabled - set(models))
        if unknown:
            raise ValueError(f"enabled_models names unknown models: {', '.join(unknown)}")
        return cls(
            models=models, families=families, gpt_sizes=dict(raw["gpt_sizes"]), enabled=enabled
        )

    # -- questions the validator and the contract test ask -------------------------------
    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self.models)

    @property
    def aspect_ratios(self) -> tuple[str, ...]:
        return self.families["nano"].aspect_ratios

    @property
    def output_formats(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for m in self.models.values():
            seen.update(dict.fromkeys(m.output_formats))
        return tuple(seen)

    def plan(
        self,
        *,
        model: str,
        size: str | None,
        aspect_ratio: str | None,
        quality: str | None,
        n: int | None,
        output_format: str | None,
    ) -> OutputPlan:
        """Validate the model-specific fields and say what the task will produce."""
        key = (model, size, aspect_ratio, quality, n, output_format)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(model, size, aspect_ratio, quality, n, output_format)
            if len(self._plans) < MAX_PLANS_KEPT:
                self._plans[key] = plan
        return plan

    def _plan(
        self,
        model: str,
        size: str | None,
        aspect_ratio: str | None,
        quality: str | None,
        n: int | None,
        output_format: str | None,
    ) -> OutputPlan:
        spec = self.models.get(model)
        if spec is None or model not in self.enabled:
            # Like every other refusal: the field, and the values it may take.
            choices = ", ".join(name for name in self.models if name in self.enabled)
            why = "does not exist" if spec is None else "is not enabled on this service"
            raise ModelNotFound(
                f"model {shown(model)} {why}; model must be one of: {choices}", field="model"
            )
        rules = self.families[spec.family]

        fmt = "png" if output_format is None else output_format
        if fmt not in spec.output_formats:
            allowed = ", ".join(spec.output_formats)
            raise InvalidRequest(
                f"output_format {shown(fmt)} is not supported by {model}; use one of: {allowed}",
                field="output_format",
            )

        count = 1 if n is None else n
        if not rules.min_n <= count <= rules.max_n:
            raise InvalidRequest(
                f"n must be between {rules.min_n} and {rules.max_n} for {model}, "
                f"got {shown(count)}",
                field="n",
            )

        if spec.family == "gpt":
            return self._plan_gpt(spec, rules, size, aspect_ratio, quality, count, fmt)
        return self._plan_nano(spec, rules, size, aspect_ratio, count, fmt)

    def _plan_gpt(
        self,
        spec: ModelSpec,
        rules: FamilyRules,
        size: str | None,
        aspect_ratio: str | None,
        quality: str | None,
        n: int,
        fmt: str,
    ) -> OutputPlan:
        if aspect_ratio is not None:
            raise InvalidRequest(
                f"aspect_ratio is not supported by {spec.name}; set the output with size instead",
                field="aspect_ratio",
            )
        if size is None:
            raise InvalidRequest(f"size is required for {spec.name}", field="size")
        tier = self.gpt_sizes.get(size)
        if tier is None:
            raise InvalidRequest(
                f"size {shown(size)} is not one of the {len(self.gpt_sizes)} sizes {spec.name} "
                "supports (e.g. 1024x1024, 1536x1024, 3840x2160)",
                field="size",
            )
        q = rules.default_quality if quality is None else quality.lower()
        if q not in rules.qualities:
            raise InvalidRequest(
                f"quality must be one of {', '.join(rules.qualities)}, got {shown(quality)}",
                field="quality",
            )
        w, h = _must_size(size)
        return OutputPlan(spec.name, "gpt", w, h, fmt, n, q, tier, None, size)

    def _plan_nano(
        self,
        spec: ModelSpec,
        rules: FamilyRules,
        size: str | None,
        aspect_ratio: str | None,
        n: int,
        fmt: str,
    ) -> OutputPlan:
        ratio = aspect_ratio
        if ratio is not None and ratio not in rules.aspect_ratios:
            raise InvalidRequest(
                f"aspect_ratio {shown(ratio)} is not supported by {spec.name}; use one of: "
                + ", ".join(rules.aspect_ratios),
                field="aspect_ratio",
            )
        # D-6: a tier word (or auto) is accepted and ignored, the model name fixes the tier.
        if size is not None and not rules.is_size_word(size):
            dims = parse_size(size)
            if dims is None:
                words = ", ".join(rules.size_words)
                also = f" or one of {words} (any case; ignored: the model fixes the tier)"
                raise InvalidRequest(
                    f"size must be WIDTHxHEIGHT (e.g. 1024x1024){also if words else ''}, "
                    f"got {shown(size, 80)}",
                    field="size",
                )
            if ratio is None:  # D-6: aspect_ratio wins; otherwise the nearest ratio to size
                ratio = nearest_ratio(dims, rules.aspect_ratios)
        if ratio is None:
            ratio = rules.default_aspect_ratio or rules.aspect_ratios[0]
        w, h = spec.pixels[ratio]
        return OutputPlan(spec.name, "nano", w, h, fmt, n, None, spec.tier, ratio, f"{w}x{h}")


def nearest_ratio(dims: tuple[int, int], ratios: Iterable[str]) -> str:
    """The ratio closest to ``dims`` on a log scale (so 2:1 and 1:2 are equally far from 1:1)."""
    target = math.log(dims[0] / dims[1])

    def distance(r: str) -> float:
        a, b = r.split(":")
        return abs(math.log(int(a) / int(b)) - target)

    return min(ratios, key=distance)


def _must_size(value: str) -> tuple[int, int]:
    dims = parse_size(value)
    if dims is None:
        raise ValueError(f"catalogue data: {value!r} is not WIDTHxHEIGHT")
    return dims
