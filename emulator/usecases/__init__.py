"""The use cases: submit, poll, settle, sweep, steer, results, fault picking, each receiving only
what it uses; ``emulator`` is the composition root that builds them (docs/architecture.md)."""
