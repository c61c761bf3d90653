"""The service the soak run kills and restarts: it persists what it processed, like a consumer
committing offsets, so losses across a kill -9 are still detected and counted.

State file (env SOAK_STATE), shared memory-mapped so it survives SIGKILL: a header of two u64
(missed events counted by earlier processes, requests served) and 64 slots of four u64 per
emitter: emitter id, last sequence processed, events processed, events missed before first sight.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import random
import struct

import zmsg

HEADER = struct.Struct("<QQ")
SLOT = struct.Struct("<QQQQ")
SLOTS = 64
SIZE = HEADER.size + SLOTS * SLOT.size

path = os.environ["SOAK_STATE"]
if not os.path.exists(path):
    with open(path, "wb") as f:
        f.write(b"\0" * SIZE)
_file = open(path, "r+b")  # noqa: SIM115 - lives as long as the process
state = mmap.mmap(_file.fileno(), SIZE)

base_missed, served = HEADER.unpack_from(state, 0)
slots: dict[int, list[int]] = {}  # emitter -> [index, last, processed, prelost]
for index in range(SLOTS):
    emitter, last, processed, prelost = SLOT.unpack_from(state, HEADER.size + index * SLOT.size)
    if emitter:
        slots[emitter] = [index, last, processed, prelost]

first_seen: dict[int, int] = {}
service = zmsg.Service("soak")
service.restore_event_sequences({emitter: slot[1] for emitter, slot in slots.items()})


@service.message_pattern("work")
async def work(n: int) -> int:
    global served
    await asyncio.sleep(random.random() * 0.002)
    served += 1
    HEADER.pack_into(state, 0, base_missed + service.stats.events_missed, served)
    return n * 2


@service.event_pattern("tick")
def tick(n: int, ctx: zmsg.Context) -> None:
    emitter = int(ctx.peer, 16)
    seq = ctx.correlation_id
    slot = slots.get(emitter)
    if slot is None:
        # Never seen by any incarnation: everything before this sequence was lost to this service
        # (unless it still arrives late, below).
        slot = slots[emitter] = [len(slots), seq, 0, seq - 1]
        first_seen[emitter] = seq
    elif seq < first_seen.get(emitter, 0):
        slot[3] -= 1  # a late arrival from before first sight: not lost after all
    slot[1] = max(slot[1], seq)
    slot[2] += 1
    SLOT.pack_into(state, HEADER.size + slot[0] * SLOT.size, emitter, slot[1], slot[2], slot[3])
    HEADER.pack_into(state, 0, base_missed + service.stats.events_missed, served)
