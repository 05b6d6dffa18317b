"""Learning from the real service: record its traffic once, then replay it, check it offline,
calibrate the emulator's timings from it and compare any service with it.

- `recorder` (``serve --upstream URL --record DIR``): a bounded proxy that keeps a cassette,
  with `upstream` (its HTTP client) and `masking` (no secret reaches a cassette);
- `cassette`: the format (versioned JSON lines and blobs), its writer and reader, with
  `exchange` (one line, checked whole as it is read);
- `replay` (``serve --replay DIR``) with `matching` (which recorded submission a body is);
- `offline` (``conform --cassette DIR``) with `evidence` and `assumptions` (each D-n judged);
- `calibrate` (``calibrate DIR -o timing.toml``) with `brackets` and `fitting`;
- `parity` (``parity DIR --against URL``) with `snapshot` (what is compared, what ignored);
- `cli`: the flags and commands.

Importing this package imports none of them: the CLI asks for what it runs.
"""

from __future__ import annotations

from .cli import add_commands, add_conform_arguments, add_serve_arguments, main, wants

__all__ = ["add_commands", "add_conform_arguments", "add_serve_arguments", "main", "wants"]
