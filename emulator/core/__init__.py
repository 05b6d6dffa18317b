"""The pure core: catalogue and submission rules, tasks and their life cycle, timing, clocks,
fault rules, prices, key fingerprints, journal rules, value checks. No I/O, no Starlette: every
layer above may use it (docs/architecture.md)."""
