"""A coverage-guided (atheris / libFuzzer) harness for the two RESP2 readers.

``one_input(data)`` is the fuzz target: the first byte picks a GET target size (or
none), the second how the rest is cut into chunks; the rest is the reply stream. It
runs the C++ reader (``respkv_native._core.parse_replies``) and the pure
:class:`respkv.resp2.Reader` over the same chunks and fails on a crash, on any
exception but a protocol error, on more replies than the bytes allow (a loop), and on
any disagreement between the two.

Run it bounded with ``nox -s fuzz`` (``python tests/test_fuzz_atheris.py
-max_total_time=60``). Coverage guidance comes from the pure reader and this harness,
which atheris instruments; the C++ reader is exercised by every input but not
instrumented (that needs clang's ``-fsanitize=fuzzer-no-link``; this machine's compiler
is GCC). Under pytest, the same target runs over a fixed seed corpus and a few thousand
deterministic random inputs, so the harness itself is always tested.
"""

from __future__ import annotations

import importlib
import os
import random
import sys
from types import ModuleType
from typing import Any, Final

import pytest

from respkv.testing.fuzzing import native_parse

#: Random inputs the pytest run feeds the target (a second or two).
PYTEST_INPUTS: Final = 3000
#: Longest input the target looks at (libFuzzer's -max_len is set to this too).
MAX_INPUT: Final = 4096
#: Every reply consumes at least 3 bytes (``+\r\n``).
MIN_REPLY_BYTES: Final = 3


SEEDS: Final = [
    b"+OK\r\n:1\r\n$3\r\nabc\r\n*2\r\n$-1\r\n:-5\r\n-ERR x\r\n",
    b"$5\r\nhello\r\n$5\r\nhel",
    b":99999999999999999999\r\n",
    b":-9223372036854775809\r\n",
    b"*1\r\n" * 40 + b":1\r\n",
    b"$-0\r\n",
    b"$3\r\nabcd\r\n",
    b"*-2\r\n",
    b"!oops\r\n",
    b":1\r\n:0\r\n:1\r\n:12x\r\n",
]


def _load() -> tuple[ModuleType, Any]:
    core = importlib.import_module("respkv_native._core")
    from respkv import resp2

    return core, resp2


def _chunks(data: bytes, how: int) -> list[bytes]:
    if how == 0 or not data:
        return [data]
    step = how % 17 + 1
    return [data[i : i + step] for i in range(0, len(data), step)]


def _pure(resp2: Any, chunks: list[bytes], target: int | None) -> list[Any]:
    reader = resp2.Reader()
    limit = sum(map(len, chunks)) // MIN_REPLY_BYTES + 1
    out: list[Any] = []
    buf = bytearray(target or 0)
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while True:
                if target is not None:
                    reader.set_target(memoryview(buf))
                value = reader.gets()
                if value is resp2.NEED_DATA:
                    break
                out.append(_norm(resp2, value))
                if len(out) > limit:
                    raise AssertionError("more replies than bytes: the pure reader loops")
    except resp2.ProtocolError:
        out.append(("protocol_error",))
    return out


def _norm(resp2: Any, value: Any) -> Any:
    if value is resp2.FILLED:
        return ("filled", None)
    if isinstance(value, resp2.SizeMismatch):
        return ("size_mismatch", value.length)
    if isinstance(value, resp2.ReplyError):
        return ("error", str(value))
    if isinstance(value, list):
        return ("array", [_norm(resp2, v) for v in value])
    if value is None:
        return ("nil", None)
    if isinstance(value, int):
        return ("int", value)
    return ("bytes", bytes(value))


def _native(core: ModuleType, chunks: list[bytes], target: int | None) -> list[Any]:
    def norm(kind: str, value: Any) -> Any:
        if kind in ("simple", "bulk"):
            return ("bytes", value)
        if kind == "error":
            return ("error", value.decode("utf-8", "replace"))
        if kind == "array":
            return ("array", [norm(k, v) for k, v in value])
        if kind == "protocol_error":
            return ("protocol_error",)
        return (kind, value)

    replies = native_parse(core, chunks, target)
    if len(replies) > sum(map(len, chunks)) // MIN_REPLY_BYTES + 2:
        raise AssertionError("more replies than bytes: the native reader loops")
    return [norm(k, v) for k, v in replies]


def one_input(data: bytes, modules: tuple[ModuleType, Any] | None = None) -> None:
    """The fuzz target."""
    core, resp2 = modules or _load()
    if len(data) < 2:
        return
    target = None if data[0] >= 200 else data[0] % 16
    chunks = _chunks(data[2:MAX_INPUT], data[1])
    pure = _pure(resp2, chunks, target)
    native = _native(core, chunks, target)
    if pure != native:
        raise AssertionError(f"readers disagree on {data!r}:\n pure   {pure}\n native {native}")


@pytest.fixture(scope="module")
def modules() -> tuple[ModuleType, Any]:
    try:
        return _load()
    except ImportError as exc:
        if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
            pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1) but: {exc}")
        pytest.skip(f"native backend not built: {exc}")


def test_seed_corpus(modules: tuple[ModuleType, Any]) -> None:
    for seed in SEEDS:
        for head in (b"\xff\x00", b"\x03\x00", b"\x05\x01", b"\xff\x07"):
            one_input(head + seed, modules)


def test_random_inputs(modules: tuple[ModuleType, Any]) -> None:
    rng = random.Random(9)
    alphabet = b"$*:+-\r\n0123456789abc"
    for _ in range(PYTEST_INPUTS):
        n = rng.randrange(2, 80)
        if rng.random() < 0.8:
            body = bytes(rng.choice(alphabet) for _ in range(n))
        else:
            body = rng.randbytes(n)
        one_input(bytes([rng.randrange(256), rng.randrange(256)]) + body, modules)


#: Tokens for libFuzzer's dictionary: RESP's type bytes, separators and edge numbers.
TOKENS: Final = [
    *(b"\r\n", b"$", b"*", b":", b"+", b"-", b"-1", b"-0", b"$-1\r\n", b"*-1\r\n"),
    *(b"9223372036854775807", b"9223372036854775808", b"99999999999999999999"),
]


def main() -> None:  # pragma: no cover - run by nox -s fuzz
    import tempfile
    from pathlib import Path

    atheris: Any = importlib.import_module("atheris")  # untyped; only nox -s fuzz has it
    modules = _load()
    # Everything already imported (the pure reader, this harness) gets coverage hooks.
    atheris.instrument_all()
    work = Path(tempfile.mkdtemp(prefix="respkv-fuzz-"))
    corpus = work / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(SEEDS):
        (corpus / f"seed{i}").write_bytes(b"\xff\x00" + seed)
        (corpus / f"seed{i}t").write_bytes(b"\x03\x05" + seed)
    (work / "resp.dict").write_text("".join(f'"{_escape(t)}"\n' for t in TOKENS))
    flags = [a for a in sys.argv[1:] if a.startswith("-")]
    dirs = [a for a in sys.argv[1:] if not a.startswith("-")] or [str(corpus)]
    args = [sys.argv[0], f"-max_len={MAX_INPUT}", f"-dict={work / 'resp.dict'}", *flags, *dirs]
    atheris.Setup(args, lambda data: one_input(data, modules))
    atheris.Fuzz()


def _escape(token: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x22 else f"\\x{b:02x}" for b in token)


if __name__ == "__main__":  # pragma: no cover
    main()
