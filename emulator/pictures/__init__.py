"""Pictures: what decides one (``spec``), drawing (``rendering``, ``fonts``), encoding, the
render caches, reference pictures and the slots that bound picture work."""
