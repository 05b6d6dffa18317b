"""The Redis store's journal: its scripts and its pages.

P:journal is a list of ``<seq>\\n<JSON>`` items, appended in arrival order by the `JOURNAL`
script, which numbers each (INCR P:seq:journal) and trims the oldest: the kept items are
numbered without gaps, so the one numbered ``n`` stands at index ``n - first`` and a page
(`JOURNAL_PAGE`) is one LRANGE from there (no walk of the items before it in Lua).
P:journal:epoch names the numbering: made by the first page read when missing, deleted by
``reset`` in one command with the list and the counter (the numbering starts again at 1), so a
cursor from before a reset, or from before Redis was wiped, is refused rather than followed
into the new numbering. P:journal:cleared is P:seq:journal's value at the last clear
(`CLEAR_JOURNAL`), so a page can count what the bound dropped (`JournalPage.dropped`) apart
from what a clear did.
"""

from __future__ import annotations

from typing import Any

from ..pages import JournalPage, Position, dropped_before, new_epoch
from .support import Script
from .values import journal_of, text

# KEYS journal, seq; ARGV json, limit, json, limit, ... (every entry queued meanwhile) -> the
# last entry's sequence number. Each entry is numbered and trimmed to its own limit in turn, as
# if appended alone; one call carries the batch (one command for the client to send and parse,
# not one per entry). Diagnostics written behind the answers (support.JournalWriter): no
# deadline.
JOURNAL = """
local seq = 0
for i = 1, #ARGV, 2 do
  seq = redis.call('INCR', KEYS[2])
  local limit = tonumber(ARGV[i + 1])
  if limit <= 0 then
    redis.call('DEL', KEYS[1])
  else
    redis.call('RPUSH', KEYS[1], seq .. '\\n' .. ARGV[i])
    redis.call('LTRIM', KEYS[1], -limit, -1)
  end
end
return seq
"""
# KEYS journal, epoch, seq, cleared; ARGV after's number ('' for the first page), after's
# epoch, count, a new epoch (stored when the key is missing) -> 0 when after is of another
# epoch; else {more (0/1), the epoch, the newest number given, the newest number when the
# journal was last cleared, the items of the page, in order}. The check and the page are one
# step.
JOURNAL_PAGE = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('SET', KEYS[2], ARGV[4])
  epoch = ARGV[4]
end
local start = 0
if ARGV[1] ~= '' then
  if ARGV[2] ~= epoch then return 0 end
  local first = redis.call('LINDEX', KEYS[1], 0)
  if first then
    start = math.max(0, tonumber(ARGV[1]) + 1 - tonumber(string.match(first, '^%d+')))
  end
end
local count = tonumber(ARGV[3])
local found = redis.call('LRANGE', KEYS[1], start, start + count)
local out = {#found > count and 1 or 0, epoch, redis.call('GET', KEYS[3]) or '0',
             redis.call('GET', KEYS[4]) or '0'}
for i = 1, math.min(#found, count) do out[#out + 1] = found[i] end
return out
"""
# KEYS journal, seq, cleared; ARGV mark ('1' or '0'): the journal goes; with mark, the newest
# number given is noted as cleared.
CLEAR_JOURNAL = """
if ARGV[1] == '1' then
  redis.call('SET', KEYS[3], redis.call('GET', KEYS[2]) or '0')
end
redis.call('DEL', KEYS[1])
"""


def journal_keys(prefix: str) -> list[str]:
    """The journal's keys under ``prefix`` ("<store_prefix>:"): the list, the counter that
    numbers its items, the numbering's epoch, the counter's value at the last clear.
    ``reset`` deletes them in one command."""
    return [
        f"{prefix}journal",
        f"{prefix}seq:journal",
        f"{prefix}journal:epoch",
        f"{prefix}journal:cleared",
    ]


async def journal_page(
    script: Script, keys: list[str], after: Position | None, count: int
) -> JournalPage | None:
    """`Store.journal_page` by the `JOURNAL_PAGE` script (the caller has written its queue
    first)."""
    args: list[Any] = ["", "", count, new_epoch()]
    if after is not None:
        args[:2] = [str(after[0]), after[1]]
    found = await script([keys[0], keys[2], keys[1], keys[3]], args)
    if found == 0:
        return None
    more, epoch, newest, cleared, *raws = found
    entries = journal_of(raws)
    last = (int(entries[-1]["seq"]), text(epoch)) if entries else None
    first = int(entries[0]["seq"]) if entries else None
    dropped = dropped_before(first, int(newest), int(cleared), after)
    return JournalPage(entries, last, bool(int(more)), dropped)
