"""The chunk-size calculator and its model presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from respkv import chunksize
from respkv.chunksize import (
    PRESETS,
    bytes_per_token,
    chunk_bytes,
    dtype_bytes,
    format_size,
    from_hf_config,
    parse_size,
    preset,
    round_tokens,
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


# ----------------------------------------------- names, presets, config.json, granularity


@pytest.mark.parametrize(
    ("name", "preset_name"),
    [
        ("mistralai/Mistral-7B-Instruct-v0.3", "Mistral-7B-v0.3"),  # -Instruct mid-name
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "Llama-3.1-8B"),
        ("meta-llama/Llama-3.3-70B-Instruct", "Llama-3.3-70B"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "Llama-3-8B"),
        ("Qwen/Qwen2.5-7B-Instruct", "Qwen2.5-7B"),
        ("microsoft/Phi-3-mini-4k-instruct", "Phi-3-mini-4k"),
    ],
)
def test_org_prefix_and_variant_words_are_ignored_anywhere(name: str, preset_name: str) -> None:
    assert preset(name) is PRESETS[preset_name]


def test_llama_33_70b_preset() -> None:
    assert preset("Llama-3.3-70B").bytes_per_token() == 2 * 8 * 128 * 80 * 2  # 320 KiB


def test_round_tokens_to_the_engine_granularity() -> None:
    assert chunksize.DEFAULT_MULTIPLE == 16
    assert round_tokens(73) == 64
    assert round_tokens(32) == 32
    assert round_tokens(8) == 16  # never below one block: the smallest chunk there is
    assert round_tokens(73, 1) == 73
    with pytest.raises(ValueError, match="tokens >= 1"):
        round_tokens(0)


def write_config(directory: Path, **fields: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(fields))
    return path


def test_from_hf_config_reads_any_model(tmp_path: Path) -> None:
    # Mistral-7B-Instruct-v0.3's published config.json (the fields that matter).
    path = write_config(
        tmp_path / "Mistral-7B-Instruct-v0.3",
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        hidden_size=4096,
        torch_dtype="bfloat16",
    )
    dims = from_hf_config(path)
    assert (dims.name, dims.layers, dims.kv_heads, dims.head_dim) == (
        "Mistral-7B-Instruct-v0.3", 32, 8, 128,
    )  # fmt: skip
    assert from_hf_config(path.parent) == dims  # the model directory works too
    assert dims.bytes_per_token() == preset("Mistral-7B-v0.3").bytes_per_token()


def test_from_hf_config_defaults_and_nesting(tmp_path: Path) -> None:
    # No num_key_value_heads: every attention head has its own K/V (no GQA).
    mha = from_hf_config(write_config(tmp_path / "a", num_hidden_layers=2, num_attention_heads=4,
                                      hidden_size=256))  # fmt: skip
    assert (mha.kv_heads, mha.head_dim) == (4, 64)
    # Multimodal models keep the language model's numbers under text_config.
    nested = from_hf_config(write_config(
        tmp_path / "b", text_config={"num_hidden_layers": 3, "num_attention_heads": 8,
                                     "num_key_value_heads": 2, "head_dim": 96},
    ))  # fmt: skip
    assert (nested.layers, nested.kv_heads, nested.head_dim) == (3, 2, 96)


def test_from_hf_config_refuses_what_it_cannot_compute(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="latent attention"):
        from_hf_config(write_config(tmp_path / "mla", num_hidden_layers=61, kv_lora_rank=512))
    with pytest.raises(ValueError, match="lacks num_hidden_layers"):
        from_hf_config(write_config(tmp_path / "partial", num_attention_heads=8))
    with pytest.raises(ValueError, match="must be a positive integer"):
        from_hf_config(write_config(tmp_path / "bad", num_hidden_layers="32"))
    with pytest.raises(ValueError, match="cannot read"):
        from_hf_config(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(ValueError, match="is not a JSON file"):
        from_hf_config(tmp_path / "junk.json")
