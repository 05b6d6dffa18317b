"""Near misses: valid submissions with exactly one documented rule broken, built from the catalogue.

A correct service refuses each with a 400 whose message names the field (free: no task). One it
accepts is reported, and the task it made is spent from the run's budget; a near miss is sent
only while the budget could pay for it, so a careful run never exceeds ``--max-tasks``. The
careful list is ordered by what an accepted one would cost, cheapest first.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from ..core.catalogue import Catalogue
from .access import BASE_URL_HINT
from .budget import TaskBudget, refused
from .checks import SUBMIT, unwrap
from .client import Answer, Client
from .deviations import Report
from .evidence import NO_CREDIT, CannotRun, NoCredit
from .harness import reference_picture
from .options import CHEAPEST_GPT, ConformOptions
from .samples import excerpt
from .validation import Validator

PROMPT = "conformance check: a small red cube on a white desk"
NEAR_MISS_CHECKS = ("near_miss_refused", "refusal_names_field")


@dataclass(frozen=True, slots=True)
class NearMiss:
    """One rule broken once."""

    #: What is wrong, in words ("size '512x512' is not one of gpt-image-2's 48 sizes").
    rule: str
    body: dict[str, Any]
    #: The field the refusal must name (None: nothing to name).
    field: str | None
    status: int = 400
    #: The key sent: "run" (the run's), "none" (a key is required, D-1) or "made-up" (a
    #: well-formed key the service never issued: only its own keys are accepted, D-1).
    key: str = "run"
    #: How the body is sent: "json"; "form" (multipart, with a picture as the file part
    #: ``image``); "text" (the JSON as text/plain, which is neither of the two documented types).
    encoding: str = "json"


def near_misses(catalogue: Catalogue, options: ConformOptions) -> list[NearMiss]:
    """The near misses of a run: the careful list, and more models and guesses with --full."""
    nano_model = options.nano_model(catalogue.models)
    nano = {"model": nano_model, "prompt": PROMPT, "aspect_ratio": "1:1", "output_format": "png"}
    gpt_rules = catalogue.families["gpt"]
    gpt = {**CHEAPEST_GPT, "prompt": PROMPT, "output_format": "png"}
    misses: list[NearMiss] = []
    misses += _format_misses(catalogue, [nano_model], nano)
    ratio = _missing_ratio(catalogue.aspect_ratios)
    misses += [
        NearMiss(
            f"aspect_ratio {ratio!r} is not a supported ratio",
            {**nano, "aspect_ratio": ratio},
            "aspect_ratio",
        ),
        NearMiss(
            "task_type image2image without image or images",
            {**nano, "task_type": "image2image"},
            "image",
        ),
        NearMiss("an empty prompt", {**nano, "prompt": ""}, "prompt"),
        NearMiss("a prompt of only white space (D-12)", {**nano, "prompt": " \u3000\t"}, "prompt"),
        NearMiss(
            "size '3K' for NanoBanana (neither WxH nor a tier word, D-6)",
            {**nano, "size": "3K"},
            "size",
        ),
        NearMiss("no prompt", {k: v for k, v in nano.items() if k != "prompt"}, "prompt"),
        NearMiss(
            f"model {_unknown_model(catalogue, nano_model)!r} does not exist",
            {**nano, "model": _unknown_model(catalogue, nano_model)},
            "model",
        ),
        NearMiss("a submission without a key", nano, None, status=401, key="none"),
        NearMiss("a submission with a made-up key", nano, None, status=401, key="made-up"),
        NearMiss(
            "image 'not-a-url' (neither an http(s) URL nor a picture)",
            {**nano, "image": "not-a-url"},
            "image",
        ),
        NearMiss(
            "images ['not-a-url'] (neither an http(s) URL nor a picture)",
            {**nano, "images": ["not-a-url"]},
            "images",
        ),
        NearMiss(
            "a multipart submission with a picture and no prompt",
            {k: v for k, v in nano.items() if k != "prompt"},
            "prompt",
            encoding="form",
        ),
        NearMiss("a JSON body sent as text/plain", nano, None, status=415, encoding="text"),
        NearMiss("aspect_ratio with gpt-image-2", {**gpt, "aspect_ratio": "4:3"}, "aspect_ratio"),
        NearMiss("gpt-image-2 without size", {k: v for k, v in gpt.items() if k != "size"}, "size"),
        NearMiss(
            f"size {_off_list_size(catalogue)!r} is not one of gpt-image-2's "
            f"{len(catalogue.gpt_sizes)} sizes",
            {**gpt, "size": _off_list_size(catalogue)},
            "size",
        ),
        NearMiss("quality 'hd' is not low, medium or high", {**gpt, "quality": "hd"}, "quality"),
        NearMiss(
            f"n={gpt_rules.min_n - 1} for gpt-image-2", {**gpt, "n": gpt_rules.min_n - 1}, "n"
        ),
        NearMiss(
            f"n={gpt_rules.max_n + 1} for gpt-image-2 (at most {gpt_rules.max_n})",
            {**gpt, "n": gpt_rules.max_n + 1},
            "n",
        ),
    ]
    if options.all_models:
        nano_rules = catalogue.families["nano"]
        others = [m for m, spec in catalogue.models.items() if spec.family == "nano"]
        misses += _format_misses(catalogue, [m for m in others if m != nano_model], nano)
        misses += [
            NearMiss(
                f"n={nano_rules.max_n + 1} for {nano_model} (at most {nano_rules.max_n}, D-5)",
                {**nano, "n": nano_rules.max_n + 1},
                "n",
            ),
            NearMiss(
                "response_format 'b64_json' (only url, D-8)",
                {**nano, "response_format": "b64_json"},
                "response_format",
            ),
        ]
    return misses


def _format_misses(catalogue: Catalogue, models: list[str], base: dict[str, Any]) -> list[NearMiss]:
    misses = []
    for model in models:
        unsupported = [
            f for f in catalogue.output_formats if f not in catalogue.models[model].output_formats
        ]
        if unsupported:
            misses.append(
                NearMiss(
                    f"output_format {unsupported[0]!r} with {model} (it makes "
                    f"{', '.join(catalogue.models[model].output_formats)})",
                    {**base, "model": model, "output_format": unsupported[0]},
                    "output_format",
                )
            )
    return misses


def _missing_ratio(ratios: tuple[str, ...]) -> str:
    """A ratio that looks supported but is not: the first listed one turned upside down."""
    for ratio in ratios:
        width, _, height = ratio.partition(":")
        flipped = f"{height}:{width}"
        if flipped not in ratios:
            return flipped
    return "7:3"


def _off_list_size(catalogue: Catalogue) -> str:
    """A plausible WxH gpt-image-2 does not list: one of the NanoBanana family's sizes."""
    for spec in catalogue.models.values():
        for width, height in spec.pixels.values():
            size = f"{width}x{height}"
            if size not in catalogue.gpt_sizes:
                return size
    return "1000x1000"


def _unknown_model(catalogue: Catalogue, model: str) -> str:
    stem = model.rsplit("-", 1)[0]
    for tier in ("3K", "16K", "preview"):
        if f"{stem}-{tier}" not in catalogue.models:
            return f"{stem}-{tier}"
    return f"{model}-x"


def send_near_misses(
    misses: list[NearMiss],
    client: Client,
    validator: Validator,
    report: Report,
    budget: TaskBudget,
) -> None:
    """Send each near miss the budget can pay for and report what the service did with it."""
    for miss in misses:
        if not budget.take():
            report.skipped.append(f"near miss: {miss.rule} (task budget spent)")
            continue
        content, body, media_type = _encode(miss)
        check = functools.partial(validator.validate, body=body, media_type=media_type)
        answer = client.send_patiently(
            SUBMIT,
            "POST",
            "/v1/images/tasks",
            headers={**content.pop("headers", {}), **_key(miss, client)},
            on_limited=check,
            **content,
        )
        status = answer.status
        if status is None:
            report.error(f"near miss ({miss.rule}): no answer ({answer.error})")
            continue
        if refused(status):
            budget.give_back()
        if status == 404 and report.routes_unproven:
            # Not an answer of the API: no route. Nothing is judged (see access.preflight).
            raise CannotRun(
                f"{SUBMIT} answered 404 to a near miss, and polls answer an unknown task exactly "
                f"as a path no API has: the task routes are not there; {BASE_URL_HINT}"
            )
        check(answer)
        if answer.refusal is not None:
            declined(miss, answer, report)
            continue
        if 200 <= status < 300:
            unwrapped = unwrap(answer.json())
            made = f" and created {unwrapped[1].get('task_id')}" if unwrapped else ""
            line = f"{SUBMIT} accepted {miss.rule}: answered {status}{made}"
            report.add("near_miss_refused", SUBMIT, answer.sample(line))
            continue
        if status != miss.status:
            line = f"{SUBMIT} refused {miss.rule} with {status}, not {miss.status}"
            report.add("near_miss_refused", SUBMIT, answer.sample(line))
            continue
        report.passed("near_miss_refused", SUBMIT)
        if miss.field is not None:
            message = _message(answer.json())
            if message is not None and names_field(message, miss.field):
                report.passed("refusal_names_field", SUBMIT)
            else:
                line = (
                    f"the {status} refusing {miss.rule} does not name {miss.field!r}: {message!r}"
                )
                report.add("refusal_names_field", SUBMIT, answer.sample(line))


def _key(miss: NearMiss, client: Client) -> dict[str, str]:
    if miss.key == "none":
        return {}
    if miss.key == "made-up":
        return {"Authorization": f"Bearer sk-conform-{secrets.token_hex(16)}"}
    return client.auth()


def names_field(message: str, field: str) -> bool:
    """Whether ``message`` names ``field`` as a word of its own: ``n``, ``'n'``, `` `n` ``,
    ``n:``, ``images[0]`` or ``body.n`` do; ``invalid`` (an n inside a word) and ``images``
    for ``image`` do not. Letters, digits and ``_`` are the word's: a neighbouring character
    of any script (a message in Chinese) is a boundary, as an English word's space is."""
    pattern = rf"(?<![A-Za-z0-9_]){re.escape(field)}(?![A-Za-z0-9_])"
    return re.search(pattern, message) is not None


def declined(miss: NearMiss, answer: Answer, report: Report) -> None:
    """A near miss the service declined to judge (429, no credit) checked nothing. No credit
    at the first paid step stops the run: nothing that submits can be checked with this key."""
    if answer.refusal == NO_CREDIT:
        raise NoCredit(
            f"{SUBMIT} answered {answer.status} to a near miss ({miss.rule}): "
            + excerpt(answer.response)
        )
    why = f"{SUBMIT} answered {answer.status} ({answer.refusal}) to each try of a near miss"
    for check in NEAR_MISS_CHECKS:
        report.could_not_check(check, SUBMIT, why)


def _encode(miss: NearMiss) -> tuple[dict[str, Any], Any, str | None]:
    """(httpx content arguments, the body as schemathesis sees it, its media type)."""
    if miss.encoding == "form":
        fields = {k: str(v) for k, v in miss.body.items()}
        files = {"image": ("reference.png", reference_picture(), "image/png")}
        body = {**fields, "image": b"(png)"}
        return {"data": fields, "files": files}, body, "multipart/form-data"
    if miss.encoding == "text":
        raw = json.dumps(miss.body).encode()
        return {"content": raw, "headers": {"Content-Type": "text/plain"}}, None, None
    return {"json": miss.body}, miss.body, "application/json"


def _message(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("message"), str):
        return str(data["message"])
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return None
