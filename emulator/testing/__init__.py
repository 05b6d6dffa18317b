"""Testing others' code against the emulator: the pytest plugin (``plugin``), the handle its
fixtures yield, the one event loop an in-process emulator runs on, in-process transports and
the interception of httpx's own transports."""
