"""State as older versions left it, made from a store of this one: the upgrade tests open it.

Before the running usage sums (SQLite schema 2, and Redis prefixes without ``P:usage:ready``)
a store kept the sums of the finished charges its bounded log trimmed, and nothing else of
them; schema 3 kept both. This version keeps only the running sums (which count trimmed
charges too) and builds them, on opening, from what an older version left. The layouts below
are those versions', frozen here: this version no longer writes them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from emulator.core.billing import Charge

#: The sums older versions kept per group of trimmed charges, in their order.
TRIMMED_SUMS = ("tasks", "images", "paid", "taken", "refunded")

#: Schemas 2 and 3: the sums of the charges trimmed from the log.
TRIMMED_TABLE = """
CREATE TABLE trimmed (
    owner TEXT NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
    tasks INTEGER NOT NULL, images INTEGER NOT NULL, paid INTEGER NOT NULL,
    taken INTEGER NOT NULL, refunded INTEGER NOT NULL,
    PRIMARY KEY (owner, key, model, state)
) WITHOUT ROWID
"""


def trimmed_sums(charges: list[Charge]) -> dict[tuple[str, str, str, str], list[int]]:
    """The sums an older version kept of ``charges`` (finished, trimmed from its log): per
    (owner, key, model, state), `TRIMMED_SUMS`."""
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    for c in charges:
        assert c.state != "held", "a held charge is never trimmed"
        row = groups.setdefault((c.owner, c.key, c.model, c.state), [0] * 5)
        for i, value in enumerate((1, c.images, c.amount, c.taken, c.refunded)):
            row[i] += value
    return groups


def sqlite_file_of(path: Path, version: int, trimmed: list[Charge]) -> None:
    """Make the (closed) file at ``path`` the one schema ``version`` (2 or 3) left with the
    same log: a ``trimmed`` table of the sums of ``trimmed`` (the charges the log no longer
    lists); version 2 also without ``usage_sums`` and the journal's epoch."""
    assert version in (2, 3)
    db = sqlite3.connect(path)
    db.execute(TRIMMED_TABLE)
    db.execute("CREATE INDEX charges_owner ON charges (owner, seq)")  # 2 and 3 had it
    rows = [(*group, *sums) for group, sums in trimmed_sums(trimmed).items()]
    db.executemany("INSERT INTO trimmed VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    if version == 2:
        db.execute("DROP TABLE usage_sums")
        db.execute("DELETE FROM meta WHERE name = 'journal_epoch'")
    db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (version,))
    db.commit()
    db.close()


def sqlite_tables(path: Path) -> tuple[Any, set[str]]:
    """The file's schema version and the names of its tables and indexes."""
    db = sqlite3.connect(path)
    try:
        (version,) = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        rows = db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
        tables = {name for (name,) in rows}
    finally:
        db.close()
    return version, tables


async def redis_prefix_of(client: Any, prefix: str, trimmed: list[Charge]) -> None:
    """Make ``prefix`` what a version before the running sums left with the same log: no
    ``P:usage:*`` (the sums and ``P:usage:ready``), and ``P:trimmed:<sum>`` hashes (keyed
    owner\\nkey\\nmodel\\nstate) of the sums of ``trimmed``."""
    doomed = [k async for k in client.scan_iter(match=f"{prefix}:usage:*")]
    if doomed:
        await client.delete(*doomed)
    for group, sums in trimmed_sums(trimmed).items():
        for name, value in zip(TRIMMED_SUMS, sums, strict=True):
            await client.hset(f"{prefix}:trimmed:{name}", "\n".join(group), value)
