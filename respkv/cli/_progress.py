"""Progress of a benchmark on stderr: a bar redrawn in place on a terminal, lines otherwise.

``respkv bench`` moves gigabytes and takes seconds to minutes; a silent command looks
hung. :class:`PhaseReporter` receives every :class:`~respkv.cli._measure.Phase` as it
starts and ends. On a terminal it redraws one line (``\\r`` and erase-to-end-of-line,
ECMA-48 ``CSI K``) with a bar, the step and what runs now; elsewhere (a pipe, a log
file, CI) it writes one plain line per finished step, which stays readable in a log.
A failed step says what failed instead of a rate (a rate of failed keys means nothing).
The results themselves go to stdout; progress never mixes into them.
"""

from __future__ import annotations

import shutil
from typing import Final, TextIO

from respkv.cli._measure import GIB, MIB, Phase

__all__ = ["PhaseReporter", "bar"]

#: Characters in the progress bar.
BAR_WIDTH: Final = 20
#: Erase from the cursor to the end of the line (ECMA-48 EL, CSI K).
ERASE_LINE: Final = "\x1b[K"


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#####...............]`` for ``done`` of ``total``."""
    filled = width * done // total if total > 0 else width
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def describe(phase: Phase, chunk_bytes: int) -> str:
    """What a step did, or is doing (``seconds`` None), in a few words."""
    what = f"{phase.label} {phase.op}".strip()
    if phase.op == "prepare":
        total = phase.keys * chunk_bytes
        what = f"preparing {phase.keys} distinct chunks ({total / MIB:,.1f} MiB)"
        return what + ("..." if phase.seconds is None else f": {phase.seconds:.2f} s")
    if phase.seconds is None:
        return f"{what}..."
    if phase.failed_keys:
        return f"{what}: FAILED, {phase.failed_keys} of {phase.keys} keys ({phase.error})"
    rate = ""
    if phase.op in ("SET", "GET") and phase.seconds > 0:
        rate = f", {phase.keys * chunk_bytes / GIB / phase.seconds:.2f} GiB/s"
    elif phase.seconds > 0:
        rate = f", {phase.keys / phase.seconds:,.0f} ops/s"
    return f"{what}: {phase.seconds:.2f} s{rate}"


class PhaseReporter:
    """A progress hook for :func:`~respkv.cli._measure.run_bench` writing to ``stream``."""

    def __init__(
        self, stream: TextIO, prefix: str, chunk_bytes: int, *, tty: bool | None = None
    ) -> None:
        self.stream, self.prefix, self.chunk_bytes = stream, prefix, chunk_bytes
        self.tty = stream.isatty() if tty is None else tty
        self._drawn = False

    def __call__(self, phase: Phase) -> None:
        text = describe(phase, self.chunk_bytes)
        done = phase.step - (phase.seconds is None)
        if self.tty:
            line = f"{self.prefix}: {bar(done, phase.steps)} {phase.step}/{phase.steps} {text}"
            if phase.failed_keys:  # a failure stays on screen: the next step starts below
                self.stream.write("\r" + line + ERASE_LINE + "\n")
                self._drawn = False
            else:
                width = shutil.get_terminal_size().columns
                self.stream.write("\r" + line[: max(width - 1, 20)] + ERASE_LINE)
                self._drawn = True
        elif phase.seconds is not None:
            self.stream.write(f"{self.prefix}: [{phase.step}/{phase.steps}] {text}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the redrawn line on a terminal (the next output starts on its own line)."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
