"""Benchmarks of the emulator against Prism, WireMock and a bare Starlette ceiling."""
