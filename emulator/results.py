"""An emulator's result images: their URLs, their bytes (drawn on demand, cached), and the
reference URLs that name one of them (SPEC D-11)."""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio

from . import pictures
from .errors import EmulatorError, TaskNotFound
from .pictures import MEDIA_TYPES, RenderCache, RenderSpec
from .references import thumbnail_of

if TYPE_CHECKING:
    from .app import Emulator
    from .tasks import Task

RESULTS_PREFIX = "/_emulator/results/"
_RESULT_PATH = re.compile(r"^/_emulator/results/(task_[0-9a-f]{32})/([0-9]{1,2})\.(png|jpeg|webp)$")


class Results:
    """The result images of one emulator's tasks (``emulator.results``)."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        self.renders = RenderCache(emulator.settings.render_cache_bytes)
        # Rendering an 8K picture takes ~100 MB for a moment: two at a time at most. A thread
        # semaphore, not an anyio limiter, so one emulator can serve several event loops.
        self._render_slots = threading.BoundedSemaphore(2)

    def urls(self, task: Task, base_url: str) -> list[str]:
        base = (self._emulator.settings.public_base_url or base_url).rstrip("/")
        ext = task.output_format
        return [
            f"{base}{RESULTS_PREFIX}{task.task_id}/{i}.{ext}" for i in range(task.schedule.images)
        ]

    async def image(self, task_id: str, index: int, ext: str) -> tuple[bytes, str]:
        """Bytes and media type of one result image of a succeeded task."""
        emulator = self._emulator
        task = await emulator.find(None, task_id)
        obs = await emulator.observe(task)
        if obs.status != "succeeded" or not 0 <= index < task.schedule.images:
            raise TaskNotFound(f"task {task_id!r} has no result image {index}")
        if ext != task.output_format:
            raise TaskNotFound(
                f"task {task_id!r} has no {ext} result; it made {task.output_format}"
            )
        # Keyed by the whole task: after a reset elsewhere an id may name a different task.
        cache_key = (index, dataclasses.replace(task, polls=0))
        cached = self.renders.get(cache_key)
        if cached is None:
            reference = (
                await emulator.store.get_blob(f"ref:{task_id}") if task.has_reference else None
            )
            spec = RenderSpec(
                width=task.width,
                height=task.height,
                fmt=task.output_format,  # type: ignore[arg-type]
                model=task.model,
                prompt=task.prompt,
                task_id=task.task_id,
                index=index,
                count=task.schedule.images,
                seed=task.seed,
                reference=reference,
            )
            # Drawn before (by any emulator of this process): no worker thread needed for it.
            cached = pictures.memo.get(spec) if emulator.settings.render_cache_bytes else None
            if cached is None:
                cached = await anyio.to_thread.run_sync(self._render, spec)
            self.renders.put(cache_key, cached)
        return cached, MEDIA_TYPES[task.output_format]

    def _render(self, spec: RenderSpec) -> bytes:
        settings = self._emulator.settings
        with self._render_slots:
            if settings.render_cache_bytes == 0:  # asked to keep no pictures: none kept
                from .rendering import render

                return render(spec)
            return pictures.memoised_render(spec)

    async def own_picture(self, urls: tuple[str, ...], base_url: str) -> bytes | None:
        """SPEC D-11: a reference URL that names one of our own results is resolved locally."""
        settings = self._emulator.settings
        own = {urlsplit(base_url).netloc}
        if settings.public_base_url:
            own.add(urlsplit(settings.public_base_url).netloc)
        for url in urls:
            parts = urlsplit(url)
            m = _RESULT_PATH.match(parts.path)
            if parts.netloc not in own or m is None:
                continue
            try:
                data, _ = await self.image(m.group(1), int(m.group(2)), m.group(3))
            except EmulatorError:
                continue  # not (yet) a result: keep it as an opaque URL, like any other
            return await anyio.to_thread.run_sync(
                thumbnail_of, data, "image", max(settings.max_reference_pixels, 10**8)
            )
        return None


__all__ = ["RESULTS_PREFIX", "Results"]
