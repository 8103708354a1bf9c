"""The chunk-size calculator and its model presets."""

from __future__ import annotations

import pytest

from respkv import chunksize
from respkv.chunksize import (
    PRESETS,
    bytes_per_token,
    chunk_bytes,
    dtype_bytes,
    format_size,
    parse_size,
    preset,
    tokens_per_chunk,
)

MIB = 1024 * 1024


def test_llama_31_8b_bf16_matches_the_issue() -> None:
    dims = preset("Llama-3.1-8B")
    assert dims.bytes_per_token("bf16") == 131_072
    assert dims.tokens_per_chunk(4 * MIB) == 32
    assert chunk_bytes(dims.bytes_per_token(), 256) == 32 * MIB


def test_formula() -> None:
    assert bytes_per_token(kv_heads=8, head_dim=128, layers=32, dtype=2) == 2 * 8 * 128 * 32 * 2
    assert bytes_per_token(kv_heads=4, head_dim=64, layers=2, dtype="float32") == 2 * 4 * 64 * 2 * 4
    assert bytes_per_token(kv_heads=8, head_dim=128, layers=32, dtype="fp8") == 65_536


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Llama-3.1-70B", 327_680),
        ("Llama-3.2-1B", 32_768),
        ("Qwen2.5-7B", 57_344),
        ("gemma-2-9b", 344_064),
        ("Phi-3-mini-4k", 393_216),
    ],
)
def test_presets_bf16(name: str, expected: int) -> None:
    assert preset(name).bytes_per_token() == expected


def test_every_preset_is_consistent() -> None:
    for name, dims in PRESETS.items():
        assert dims.name == name
        assert preset(name) is dims
        assert dims.bytes_per_token() == 2 * dims.kv_heads * dims.head_dim * dims.layers * 2


def test_preset_lookup_is_forgiving_about_case_org_and_suffix() -> None:
    assert preset("meta-llama/Llama-3.1-8B-Instruct") is PRESETS["Llama-3.1-8B"]
    assert preset("llama-3.1-8b") is PRESETS["Llama-3.1-8B"]
    assert preset("google/gemma-2-9b-it") is PRESETS["gemma-2-9b"]


def test_unknown_preset_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown model preset 'GPT-5'") as info:
        preset("GPT-5")
    for name in PRESETS:
        assert name in str(info.value)


def test_tensor_parallel_splits_heads_but_never_below_one() -> None:
    dims = preset("Llama-3.1-70B")
    assert dims.bytes_per_token(tp=2) == dims.bytes_per_token() // 2
    assert dims.bytes_per_token(tp=8) == dims.bytes_per_token() // 8
    # 16 ranks over 8 KV heads: each rank holds one (replicated) head.
    assert dims.bytes_per_token(tp=16) == dims.bytes_per_token(tp=8)
    with pytest.raises(ValueError, match="does not divide"):
        dims.bytes_per_token(tp=3)
    with pytest.raises(ValueError, match="tp must be"):
        dims.bytes_per_token(tp=0)


def test_tokens_per_chunk_rounds_down_to_a_multiple() -> None:
    assert tokens_per_chunk(131_072, 4 * MIB + 1) == 32
    assert tokens_per_chunk(57_344, 4 * MIB) == 73
    assert tokens_per_chunk(57_344, 4 * MIB, multiple_of=16) == 64
    with pytest.raises(ValueError, match="smaller than 1 token"):
        tokens_per_chunk(131_072, 1000)
    with pytest.raises(ValueError, match="target chunk size"):
        tokens_per_chunk(131_072, 0)


def test_bad_dims_and_dtypes_are_named() -> None:
    with pytest.raises(ValueError, match="layers must be a positive integer"):
        bytes_per_token(kv_heads=8, head_dim=128, layers=0)
    with pytest.raises(ValueError, match=r"unknown dtype 'float13'.*bfloat16"):
        dtype_bytes("float13")
    assert dtype_bytes("torch.bfloat16") == 2
    with pytest.raises(ValueError, match="dtype bytes"):
        dtype_bytes(3)


def test_parse_and_format_sizes() -> None:
    assert parse_size("4MiB") == 4 * MIB
    assert parse_size("4M") == 4 * MIB
    assert parse_size("4 MB") == 4_000_000
    assert parse_size("1.5GiB") == 3 * 512 * MIB
    assert parse_size(4096) == 4096
    assert parse_size("100") == 100
    with pytest.raises(ValueError, match="invalid size '4 parsecs'"):
        parse_size("4 parsecs")
    assert format_size(4 * MIB) == "4 MiB"
    assert format_size(3 * 512 * MIB) == "1.5 GiB"
    assert format_size(131_072) == "128 KiB"
    assert format_size(100) == "100 B"
    assert chunksize.DEFAULT_DTYPE == "bfloat16"
