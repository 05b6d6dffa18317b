"""An emulator's result images: their URLs, their bytes (drawn on demand, cached), and the
reference URLs that name one of them (SPEC D-11).

A result URL is a capability (SPEC D-14): ``/_emulator/results/{task_id}/{token}/{i}.{ext}``,
where the token was drawn from ``secrets`` when the task was accepted. Task ids follow from the
seed; tokens never do, so knowing the seed and every id names no picture.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
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
#: The token's form: ``secrets.token_urlsafe(24)`` (192 bits, 32 characters).
TOKEN_PATTERN = r"[A-Za-z0-9_-]{32}"
#: A result's file name: an ASCII index below 100 and the format ("²" is a digit to str.isdigit).
NAME = re.compile(r"([0-9]{1,2})\.(png|jpeg|webp)", re.ASCII)
_RESULT_PATH = re.compile(
    rf"/_emulator/results/(task_[0-9a-f]{{32}})/({TOKEN_PATTERN})/([0-9]{{1,2}})\.(png|jpeg|webp)",
    re.ASCII,
)


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
        prefix = f"{base}{RESULTS_PREFIX}{task.task_id}/{task.token}/"
        return [f"{prefix}{i}.{ext}" for i in range(task.schedule.images)]

    async def image(self, task_id: str, token: str, index: int, ext: str) -> tuple[bytes, str]:
        """Bytes and media type of one result image of a succeeded task; a wrong ``token`` is
        answered exactly like an unknown task."""
        emulator = self._emulator
        task = await emulator.find(None, task_id)
        # Constant time, so the answer's timing tells nothing about the token. A task stored
        # before tokens existed (empty token) has no URL that serves its pictures.
        if not task.token or not secrets.compare_digest(task.token.encode(), token.encode()):
            raise TaskNotFound(f"task {task_id!r} does not exist")
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
            m = _RESULT_PATH.fullmatch(parts.path)
            if parts.netloc not in own or m is None:
                continue
            try:
                data, _ = await self.image(m.group(1), m.group(2), int(m.group(3)), m.group(4))
            except EmulatorError:
                continue  # not (yet) a result: keep it as an opaque URL, like any other
            return await anyio.to_thread.run_sync(
                thumbnail_of, data, "image", max(settings.max_reference_pixels, 10**8)
            )
        return None


__all__ = ["NAME", "RESULTS_PREFIX", "TOKEN_PATTERN", "Results"]
