"""``calibrate DIR -o timing.toml``: the real service's task durations, fitted from a recording.

Each followed task's polls bracket its durations (`brackets`); the brackets of each timing
entry (``gpt-image-2/<tier>/<quality>``, or the model) are fitted (`fitting`), and so are all
of them together for the ``"*"`` entry every timing file needs. Groups with fewer than
``min_samples`` tasks inherit ``"*"``. The file is checked by loading it as ``timing_file``
would before the command says it is written.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.catalogue import Catalogue
from ..core.timing import Timing
from .brackets import Bracket, gather_times
from .cassette import Cassette
from .evidence import gather
from .fitting import Fit, FittingUnavailable, fit

EXIT_OK, EXIT_ERROR = 0, 2
PHASES = ("queued", "processing")


@dataclass(frozen=True, slots=True)
class Calibration:
    #: entry -> phase -> fit; ``"*"`` pools every task.
    fits: dict[str, dict[str, Fit]]
    #: entry -> phase -> brackets found (fitted or not).
    counts: dict[str, dict[str, int]]
    cassette: Cassette
    #: Tasks whose polls bracketed something.
    tasks: int


def fit_groups(directory: Path, dist: str, min_samples: int) -> Calibration:
    """Every entry's fits from the cassette in ``directory``."""
    cassette = Cassette.load(directory)
    times = gather_times(gather(cassette), Catalogue.load())
    brackets: dict[str, dict[str, list[Bracket]]] = {"*": {p: [] for p in PHASES}}
    for task in times:
        entry = brackets.setdefault(task.group, {p: [] for p in PHASES})
        for phase, bracket in (("queued", task.queued), ("processing", task.processing)):
            if bracket is not None:
                entry[phase].append(bracket)
                brackets["*"][phase].append(bracket)
    fits: dict[str, dict[str, Fit]] = {}
    counts: dict[str, dict[str, int]] = {}
    for group, phases in brackets.items():
        counts[group] = {phase: len(found) for phase, found in phases.items()}
        for phase, found in phases.items():
            if len(found) >= (1 if group == "*" else min_samples):
                fitted = fit(found, dist)
                if fitted is not None:
                    fits.setdefault(group, {})[phase] = fitted
    return Calibration(fits, counts, cassette, len(times))


def table(
    fits: dict[str, dict[str, Fit]], counts: dict[str, dict[str, int]], min_samples: int
) -> str:
    head = ("entry", "phase", "samples", "bracket", "dist", "parameters", "loglik/n", "KS")
    rows = [head]
    for group in sorted(counts, key=lambda g: (g != "*", g)):
        for phase in PHASES:
            found = fits.get(group, {}).get(phase)
            n = counts[group][phase]
            if found is None:
                why = "too few" if 0 < n < min_samples else "none"
                rows.append((group, phase, str(n), "", f"({why}: inherits *)", "", "", ""))
                continue
            rows.append(
                (
                    group,
                    phase,
                    str(found.samples),
                    f"{found.width:.2f} s",
                    found.dist,
                    found.describe(),
                    f"{found.loglik:.2f}",
                    "" if found.ks is None else f"{found.ks:.2f}",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def toml_text(fits: dict[str, dict[str, Fit]], directory: Path, tasks: int) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        f"# Task durations fitted by `python -m emulator calibrate` on {today} from the cassette",
        f"# {directory} ({tasks} task(s) followed). Estimator: maximum likelihood on the",
        "# intervals each task's polls bracket (docs/recording.md). Use it as `timing_file`.",
    ]
    for group in sorted(fits, key=lambda g: (g != "*", g)):
        lines.append("")
        samples = max(f.samples for f in fits[group].values())
        lines.append(f"[{json.dumps(group)}]  # {samples} task(s)")
        for phase in PHASES:
            if phase in fits[group]:
                lines.append(f"{phase} = {fits[group][phase].toml()}")
    return "\n".join(lines) + "\n"


def main(
    directory: Path, output: Path, dist: str, min_samples: int, out: Callable[[str], None] = print
) -> int:
    try:
        calibration = fit_groups(directory, dist, min_samples)
    except FileNotFoundError as exc:
        out(f"calibrate: {exc}")
        return EXIT_ERROR
    except FittingUnavailable as exc:
        out(f"calibrate: {exc}")
        return EXIT_ERROR
    fits, counts = calibration.fits, calibration.counts
    for warning in calibration.cassette.warnings:
        out(f"calibrate: warning: {warning}")
    pooled = fits.get("*", {})
    missing = [phase for phase in PHASES if phase not in pooled]
    if missing:
        out(
            f"calibrate: cannot fit {' and '.join(missing)}: no task in {directory} was polled "
            "across that phase (record tasks from submission until they succeed)"
        )
        return EXIT_ERROR
    out(table(fits, counts, min_samples))
    text = toml_text(fits, directory, calibration.tasks)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, "utf-8")
    try:
        Timing.load(output)  # the file must be one timing_file accepts
    except (ValueError, OSError) as exc:  # pragma: no cover - a bug of this module
        out(f"calibrate: the written file is not a valid timing file: {exc}")
        return EXIT_ERROR
    out(f"calibrate: wrote {output} (use it as timing_file)")
    return EXIT_OK


__all__ = ["Calibration", "fit_groups", "main", "table", "toml_text"]
