"""A task's draws (durations, fate, picture seed) and a fault rule's coin toss, from one keyed
hash instead of a freshly seeded Mersenne Twister.

Seeding ``random.Random`` from a string costs ~44k instructions (sha512, then
``init_by_array`` over its 624 words) and its first draw ~5k more, about 14 % of a submission
that needs a handful of draws (docs/profile.md, round 8). Here the draws are the 64-bit words
of ``blake2b(key, digest_size=64)``, eight a block; a caller wanting more gets the next block of
the same key, the block's number in BLAKE2's personalization parameter (block 0 is the plain
hash, whose personalization is all zeros), so a stream never ends and never repeats.

The same key always gives the same draws; they are not the values the Twister gave for the
same seed before this version (docs/control-plane.md, "Determinism").
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from hashlib import blake2b
from typing import Protocol

_unpack = struct.Struct("<8Q").unpack
_TWOPI = 2.0 * math.pi
_sqrt, _log, _cos, _sin = math.sqrt, math.log, math.cos, math.sin
#: 2**-53: a word's top 53 bits scaled to [0, 1), as the stdlib's ``random()`` builds its float.
_SCALE = 1.0 / 9007199254740992.0
_WORD = 1 << 64


class Draws(Protocol):
    """What ``core.timing`` and ``core.tasks.fate`` draw from: a ``random.Random`` (the tests
    compare with the stdlib's calls) or a ``KeyedDraws`` (what a submission passes)."""

    def random(self) -> float: ...

    def gauss(self, mu: float = 0.0, sigma: float = 1.0) -> float: ...

    def randint(self, a: int, b: int) -> int: ...


def _block(key: bytes, number: int) -> tuple[int, ...]:
    """The eight little-endian 64-bit words of block ``number`` of ``key``."""
    person = number.to_bytes(16, "little")  # 16 bytes: at most 2**128 blocks, never reached
    return _unpack(blake2b(key, digest_size=64, person=person).digest())


class KeyedDraws:
    """Draws from the words of ``blake2b(key)``: ``random``, ``gauss``, ``randint``,
    ``getrandbits`` (at most 64 bits), each taking the next unused word (``gauss`` two, and
    keeping its second value for the next call, as the stdlib does)."""

    __slots__ = ("_block", "_gauss_next", "_key", "_words")

    def __init__(self, key: str) -> None:
        self._key = key.encode()
        # struct's unpack of the whole digest was the cheapest way to words measured (round 8)
        self._words: Iterator[int] = iter(_unpack(blake2b(self._key, digest_size=64).digest()))
        self._block = 0
        self._gauss_next: float | None = None

    def _word(self) -> int:
        """The next 64-bit word: of this block, else of the key's next block."""
        try:
            return next(self._words)
        except StopIteration:
            self._block += 1
            self._words = iter(_block(self._key, self._block))
            return next(self._words)

    def random(self) -> float:
        """A float in [0, 1): the word's top 53 bits over 2**53 (every value a multiple of
        2**-53, as the stdlib's)."""
        return (self._word() >> 11) * _SCALE

    def gauss(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        """Normal with mean ``mu`` and standard deviation ``sigma``: the stdlib's
        ``random.Random.gauss`` formula (Box-Muller over two ``random()`` values), keeping the
        second value for the next call as it does (tests/test_draws.py compares them)."""
        z = self._gauss_next
        self._gauss_next = None
        if z is None:
            x2pi = self.random() * _TWOPI
            g2rad = _sqrt(-2.0 * _log(1.0 - self.random()))
            z = _cos(x2pi) * g2rad
            self._gauss_next = _sin(x2pi) * g2rad
        return mu + z * sigma

    def randint(self, a: int, b: int) -> int:
        """An integer in [a, b], both included, unbiased: a word modulo the range's size,
        drawn again when it falls in the incomplete last run of the 2**64 words (chance
        below size / 2**64: about 5e-18 for the failure point's 100). At most 2**64 values."""
        size = b - a + 1
        if size <= 0 or size > _WORD:
            raise ValueError(f"randint: the range [{a}, {b}] must hold 1 to 2**64 integers")
        limit = _WORD - _WORD % size
        word = self._word()
        while word >= limit:
            word = self._word()
        return a + word % size

    def getrandbits(self, k: int, /) -> int:
        """An integer in [0, 2**k): the top ``k`` bits of a word (0 <= k <= 64)."""
        if not 0 <= k <= 64:
            raise ValueError(f"getrandbits: k must be 0 to 64 bits, got {k}")
        return self._word() >> (64 - k)


__all__ = ["Draws", "KeyedDraws"]
