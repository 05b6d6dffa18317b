"""The scenarios a run follows, in order of priority (the task budget goes to the first), and
the checks only each one's succeeded task feeds (`fed`): when its task fails or it cannot be
sent, those "could not check" what it was for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.catalogue import Catalogue
from .checks import POLL
from .options import CHEAPEST_GPT, ConformOptions
from .pictures import PICTURE_CHECKS

PICTURE = "GET result_url"
PROMPT = "conformance scenario: a small blue glass sphere on a white desk"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    body: dict[str, Any]
    #: "image" or "images": filled with a picture an earlier scenario made.
    reference: str | None = None
    #: Upload a picture as the multipart file part ``image`` (the other fields as form fields).
    upload: bool = False
    #: What only this scenario shows (named when it could not show it).
    purpose: str = ""


def fed(scenario: Scenario) -> list[tuple[str, str]]:
    """The (check, operation)s only a succeeded task of ``scenario`` feeds: when its task
    fails or it cannot be sent, they could not check what it was for."""
    checks = [(check, PICTURE) for check in PICTURE_CHECKS]
    checks.append(("result_count_matches_n", POLL))
    if scenario.reference or scenario.upload:
        checks.append(("task_type_inferred", POLL))
    return checks


def plan(options: ConformOptions, catalogue: Catalogue) -> list[Scenario]:
    """The scenarios of a run, in order of priority (the budget goes to the first)."""
    nano = options.nano_model(catalogue.models)
    scenarios = [
        # Inferred text2image, default n, the pixel table of the ratio, jpeg.
        Scenario(
            "nano-text2image",
            {"model": nano, "prompt": PROMPT, "aspect_ratio": "16:9", "output_format": "jpeg"},
            purpose="a 16:9 JPEG picture, task_type inferred text2image",
        ),
        # Several pictures: result_count, result_urls, every picture's pixels and format.
        Scenario(
            "gpt-image-2-n2",
            {
                **CHEAPEST_GPT,
                "prompt": PROMPT,
                "task_type": "text2image",
                "n": 2,
                "output_format": "webp",
                "response_format": "url",
            },
            purpose="n=2: result_count 2 and two WebP pictures",
        ),
        # task_type inferred from a reference picture; every other field left to its default
        # (aspect_ratio 1:1, output_format png, n 1): the picture shows whether they hold.
        Scenario(
            "nano-image2image",
            {"model": nano, "prompt": PROMPT},
            reference="image",
            purpose="image2image inferred from a picture, the defaults 1:1, PNG, n=1",
        ),
        # An explicit task_type wins over a picture (runs when the budget has a 4th task).
        Scenario(
            "nano-explicit-text2image",
            {"model": nano, "prompt": PROMPT, "task_type": "text2image", "aspect_ratio": "3:4"},
            reference="image",
            purpose="an explicit task_type text2image winning over a picture",
        ),
    ]
    if options.all_models:
        scenarios += [
            Scenario(
                "gpt-image-2-image2image",
                {
                    "model": "gpt-image-2",
                    "prompt": PROMPT,
                    "task_type": "image2image",
                    "size": "1024x1536",
                    "quality": "medium",
                    "output_format": "png",
                },
                reference="images",
                purpose="gpt-image-2 image2image from images",
            ),
            Scenario(
                "nanobanana-webp",
                {
                    "model": "NanoBanana",
                    "prompt": PROMPT,
                    "aspect_ratio": "21:9",
                    "output_format": "webp",
                },
                purpose="NanoBanana's WebP pictures at 21:9",
            ),
            Scenario(
                "nano-upload",
                {"model": "NanoBanana2-1K", "prompt": PROMPT, "aspect_ratio": "4:3"},
                upload=True,
                purpose="image2image from a multipart upload",
            ),
        ]
    return scenarios
