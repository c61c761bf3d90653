"""Coverage-guided fuzzing of the batch parser (atheris / libFuzzer).

Both framing twins get the same bytes, split into frames at fuzzer-chosen points. Each must
either parse or raise FrameError, never anything else, and the two must agree exactly.

    pip install atheris
    python fuzz/fuzz_framing.py -max_total_time=60     # libFuzzer flags pass through
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from zmsg import _fastframe, _fastframe_py
    from zmsg.errors import FrameError


def outcome(parse, frames: list[bytes]) -> tuple[object, ...]:
    try:
        return ("ok", parse(frames))
    except FrameError as exc:
        return ("error", str(exc), exc.records, exc.correlation_id)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    frames = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512)) for _ in range(fdp.ConsumeIntInRange(1, 4))]
    compiled = outcome(_fastframe.parse_frames, frames)
    pure = outcome(_fastframe_py.parse_frames, frames)
    if compiled != pure:
        raise AssertionError(f"twins disagree on {frames!r}: {compiled!r} != {pure!r}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
