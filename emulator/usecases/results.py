"""An emulator's result images: their URLs, their bytes (drawn on demand, cached), and the
reference URLs that name one of them (SPEC D-11).

A result URL is a capability (SPEC D-14): ``/_emulator/results/{task_id}/{token}/{i}.{ext}``,
where the token was drawn from ``secrets`` when the task was accepted. Task ids follow from the
seed; tokens never do, so knowing the seed and every id names no picture.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import secrets
from collections.abc import Hashable
from urllib.parse import urlsplit

import anyio

from ..core.checks import shown
from ..core.tasks import Task
from ..errors import EmulatorError, TaskNotFound
from ..pictures import cache as pictures
from ..pictures.cache import RenderCache
from ..pictures.slots import Slots
from ..pictures.spec import MEDIA_TYPES, RenderSpec
from ..stores import Store
from .configuration import Configuration
from .poll import Tasks

RESULTS_PREFIX = "/_emulator/results/"
#: The token's form: ``secrets.token_urlsafe(24)`` (192 bits, 32 characters).
TOKEN_PATTERN = r"[A-Za-z0-9_-]{32}"
#: A result's index as `urls` writes it: ASCII digits ("²" is a digit to str.isdigit), below
#: 100, no leading zero. Only that form names a picture: "01" is a 404 like any unknown name,
#: so each picture has one URL (a cache or a test comparing URLs never sees two for one).
INDEX_PATTERN = r"0|[1-9][0-9]?"
INDEX = re.compile(INDEX_PATTERN, re.ASCII)
#: A result's file name: its index and the format.
NAME = re.compile(rf"({INDEX_PATTERN})\.(png|jpeg|webp)", re.ASCII)
_RESULT_PATH = re.compile(
    rf"/_emulator/results/(task_[0-9a-f]{{32}})/({TOKEN_PATTERN})/({INDEX_PATTERN})\.(png|jpeg|webp)",
    re.ASCII,
)


#: A task's fields but its poll count (which changes on every poll, and no picture depends on).
_PICTURE_FIELDS = operator.attrgetter(
    *(field.name for field in dataclasses.fields(Task) if field.name != "polls")
)


class Results:
    """The result images of one emulator's tasks (``emulator.results``)."""

    def __init__(self, store: Store, config: Configuration, tasks: Tasks) -> None:
        self._store, self._config, self._tasks = store, config, tasks
        self.renders = RenderCache(config.settings.render_cache_bytes)
        # Rendering an 8K picture takes ~100 MB for a moment, decoding a 49-megapixel reference
        # ~240 MB: two of each at a time, per emulator. Waiting for a slot holds no thread.
        self.render_slots = Slots(2)
        self.decode_slots = Slots(2)

    def urls(self, task: Task, base_url: str) -> list[str]:
        base = (self._config.settings.public_base_url or base_url).rstrip("/")
        ext = task.output_format
        prefix = f"{base}{RESULTS_PREFIX}{task.task_id}/{task.token}/"
        return [f"{prefix}{i}.{ext}" for i in range(task.schedule.images)]

    async def result(self, task_id: str, token: str, index: int, ext: str) -> Task:
        """The succeeded task that has result ``index`` in format ``ext``; a wrong ``token`` is
        answered exactly like an unknown task."""
        task = await self._tasks.find(None, task_id)
        # Constant time, so the answer's timing tells nothing about the token. A task stored
        # before tokens existed (empty token) has no URL that serves its pictures.
        if not task.token or not secrets.compare_digest(task.token.encode(), token.encode()):
            raise TaskNotFound(f"task {shown(task_id)} does not exist")
        obs = await self._tasks.observe(task)
        if obs.status != "succeeded" or not 0 <= index < task.schedule.images:
            raise TaskNotFound(f"task {shown(task_id)} has no result image {index}")
        if ext != task.output_format:
            raise TaskNotFound(
                f"task {shown(task_id)} has no {ext} result; it made {task.output_format}"
            )
        return task

    async def _spec(self, task: Task, index: int) -> RenderSpec:
        """What decides result ``index`` of ``task`` (its reference picture read from the store)."""
        blob = await self._store.get_blob(f"ref:{task.task_id}") if task.has_reference else None
        return RenderSpec(
            width=task.width,
            height=task.height,
            fmt=task.output_format,  # type: ignore[arg-type]
            model=task.model,
            prompt=task.prompt,
            task_id=task.task_id,
            index=index,
            count=task.schedule.images,
            seed=task.seed,
            reference=blob,
        )

    async def image(self, task: Task, index: int) -> tuple[bytes, str]:
        """Bytes and media type of result ``index`` of ``task`` (a succeeded task that has it:
        see `result`), drawn now or kept from before."""
        # Keyed by the whole task: after a reset elsewhere an id may name a different task.
        # Its fields but the poll count, as a tuple: what ``replace(task, polls=0)`` compares
        # equal on, for a tenth of the cost (a frozen dataclass's __init__; 16 -> 1.7 µs).
        cache_key = (index, _PICTURE_FIELDS(task))
        cached = self.renders.get(cache_key)
        if cached is None:
            cached = await self._drawn(await self._spec(task, index), cache_key)
            self.renders.put(cache_key, cached)
        return cached, MEDIA_TYPES[task.output_format]

    async def _drawn(self, spec: RenderSpec, cache_key: Hashable) -> bytes:
        keep = self._config.settings.render_cache_bytes > 0
        # Drawn before (by any emulator of this process): no slot or thread needed for it.
        data = pictures.memo.get(spec) if keep else None
        if data is not None:
            return data
        async with self.render_slots.held():
            # Another download of this picture may have drawn it while this one waited.
            data = self.renders.get(cache_key) or (pictures.memo.get(spec) if keep else None)
            if data is None:
                data = await anyio.to_thread.run_sync(_render, spec, keep)
        return data

    async def own_picture(self, urls: tuple[str, ...], base_url: str) -> bytes | None:
        """SPEC D-11: a reference URL that names one of our own results is resolved locally,
        from the small canvas the picture is drawn on (never the full-size picture: eight
        references to an 8K result rendered and decoded it eight times, 2.3 GiB at the peak)."""
        settings = self._config.settings
        own = {urlsplit(base_url).netloc}
        if settings.public_base_url:
            own.add(urlsplit(settings.public_base_url).netloc)
        for url in urls:
            parts = urlsplit(url)
            m = _RESULT_PATH.fullmatch(parts.path)
            if parts.netloc not in own or m is None:
                continue
            index = int(m.group(3))
            try:
                task = await self.result(m.group(1), m.group(2), index, m.group(4))
            except EmulatorError:
                continue  # not (yet) a result: keep it as an opaque URL, like any other
            spec = await self._spec(task, index)
            async with self.render_slots.held():
                return await anyio.to_thread.run_sync(_canvas_thumbnail, spec)
        return None


def _render(spec: RenderSpec, keep: bool) -> bytes:
    if not keep:  # asked to keep no pictures: none kept, not even process-wide
        from ..pictures.rendering import render

        return render(spec)
    return pictures.memoised_render(spec)


def _canvas_thumbnail(spec: RenderSpec) -> bytes:
    """A reference thumbnail of the picture ``spec`` describes, from its small canvas (the
    full picture is that canvas enlarged, so it looks the same at thumbnail size)."""
    import io

    from ..pictures.references import THUMBNAIL_SIDE
    from ..pictures.rendering import draw_canvas

    picture = draw_canvas(spec).convert("RGB")
    picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out = io.BytesIO()
    picture.save(out, "PNG", compress_level=1)
    return out.getvalue()


__all__ = ["INDEX", "NAME", "RESULTS_PREFIX", "TOKEN_PATTERN", "Results"]
