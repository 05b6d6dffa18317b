"""Every ``python -m emulator ...`` line of README.md's and docs/'s shell blocks is a command
the CLI takes as written: a renamed or removed flag, or a value outside a flag's choices, fails
here rather than for the reader who pastes it. ``a|b`` alternatives are each tried; ``[...]``
marks an optional part, and ``N`` or ``SECONDS`` a number (docs/contract.md's synopsis)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from emulator.cli import _parser

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = re.compile(r"```(?:sh|bash)\n(.*?)```", re.S)
#: A synopsis' placeholders that stand for numbers (the others are any text).
NUMBERS = {"N": "3", "SECONDS": "1.5"}


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for block in SHELL.findall(page.read_text("utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip().rstrip("&").strip()
                if not line.startswith("#") and "python -m emulator " in line:
                    found.append((page.name, line.split("python -m emulator ", 1)[1]))
    return found


COMMANDS = documented_commands()


def test_the_pages_show_every_command() -> None:
    shown = {args.split()[0] for _, args in COMMANDS}
    assert shown == {"serve", "conform", "calibrate", "parity"}


@pytest.mark.parametrize(("page", "args"), COMMANDS, ids=[f"{p}:{a[:40]}" for p, a in COMMANDS])
def test_a_documented_command_parses(page: str, args: str) -> None:
    words = shlex.split(args.replace("[", " ").replace("]", " "))
    widest = max((w.count("|") + 1 for w in words), default=1)
    for pick in range(widest):
        chosen = [NUMBERS.get(w, w).split("|")[min(pick, w.count("|"))] for w in words]
        try:
            _parser().parse_args(chosen)
        except SystemExit as exc:
            pytest.fail(f"{page}: python -m emulator {' '.join(chosen)}: refused ({exc.code})")
