"""Read a submission (JSON or multipart) at the door and hand its fields to the rules of a
submission (``emulator.usecases.submission``)."""

from __future__ import annotations

import anyio
from starlette.datastructures import UploadFile
from starlette.requests import Request

from ..config import Settings
from ..core.catalogue import Catalogue
from ..core.checks import shown
from ..errors import UnsupportedMediaType
from ..pictures.slots import Slots
from ..usecases.submission import (
    FIELDS,
    Submission,
    build_submission,
    has_data_url,
    unknown_fields,
)
from .bodies import fields_from_json, fields_from_multipart, read_body
from .headers import first_header

#: JSON bodies larger than this are parsed off the event loop (smaller ones cost < 1 ms).
OFF_LOOP_BYTES = 1024 * 1024


async def read_submission(
    request: Request, settings: Settings, catalogue: Catalogue, decode_slots: Slots | None = None
) -> Submission:
    """Read and check the body of ``POST /v1/images/tasks``; its pictures are decoded in a
    worker thread, in one of ``decode_slots`` (the emulator's bound on decodes at once)."""
    content_type = (first_header(request.scope, b"content-type") or b"").decode("latin-1")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in ("application/json", "multipart/form-data"):
        raise UnsupportedMediaType(
            "Content-Type must be application/json or multipart/form-data, got "
            + (shown(media_type) if media_type else "none")
        )
    body = await read_body(request, settings.max_body_bytes)
    if media_type == "application/json":
        limits = (settings.max_json_depth, settings.max_json_items)
        if len(body) > OFF_LOOP_BYTES:
            # Counting, decoding and parsing megabytes takes tens of milliseconds per step; in
            # a worker thread the event loop gets the interpreter between steps.
            fields = await anyio.to_thread.run_sync(fields_from_json, body, *limits)
        else:
            fields = fields_from_json(body, *limits)
        if FIELDS.issuperset(fields):
            unknown = []  # most submissions: only request fields (checked in C)
        else:
            unknown = unknown_fields(fields)
            # "image_urls" is where multipart text `image` fields go; in JSON it is an unknown
            # key (listed above), and must not reach the rules as reference pictures.
            fields.pop("image_urls", None)
        files: list[UploadFile] = []
    else:
        fields, files, unknown = await fields_from_multipart(request.headers, body, settings)
    # For the journal: what the validator saw (``request.state`` is this dict, reached slower),
    # and the fields it ignored (D-13).
    state = request.scope.setdefault("state", {})
    state["fields"] = fields
    state["unknown_fields"] = unknown
    state["files"] = [(f.filename or "image", f.size or 0) for f in files] if files else []
    if files or has_data_url(fields):
        # Decoding pictures takes a while: not on the event loop, where it would stall every
        # other request. And hundreds of megabytes: only as many at once as there are slots.
        if decode_slots is None:
            return await anyio.to_thread.run_sync(
                build_submission, fields, files, settings, catalogue
            )
        async with decode_slots.held():
            return await anyio.to_thread.run_sync(
                build_submission, fields, files, settings, catalogue
            )
    return build_submission(fields, files, settings, catalogue)


__all__ = ["OFF_LOOP_BYTES", "read_submission"]
