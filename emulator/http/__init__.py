"""HTTP: the real API's routes, the control plane, the dashboard (``ui``), bodies read at the
door, fault effects, the journal entry, the one error handler and the ASGI glue. It translates
between HTTP and the use cases; no rule about tasks lives here (docs/architecture.md)."""
