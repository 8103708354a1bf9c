"""``respkv chunk-size`` as the docs promise it (issue 11 §2 item 10): organisation prefixes
and ``-Instruct`` are stripped wherever they stand, Llama-3.3-70B has a preset, any model
is read from its ``config.json``, the token count is shown exact and rounded to the
engine's granularity, and a chunk above the server's 512 MiB value limit is warned about.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from respkv.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["chunk-size", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_mistral_instruct_resolves(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--model", "mistralai/Mistral-7B-Instruct-v0.3")
    assert status == 0, err
    assert out.startswith("Model: Mistral-7B-v0.3: 32 layers, 8 KV heads x head_dim 128")


def test_llama_33_70b_preset_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--list")
    assert status == 0
    assert any(line.split()[:4] == ["Llama-3.3-70B", "80", "8", "128"] for line in out.splitlines())


def test_exact_and_rounded_token_counts(capsys: pytest.CaptureFixture[str]) -> None:
    # Qwen2.5-14B in bf16: 192 KiB per token, so 21 tokens fit 4 MiB; 16 as blocks of 16.
    status, out, _ = run(capsys, "--model", "Qwen/Qwen2.5-14B-Instruct")
    assert status == 0
    assert "Tokens per chunk for a 4 MiB target: 21 (3.94 MiB per chunk)" in out
    assert "Rounded to a multiple of 16 tokens (the engine's block): 16 (3 MiB per chunk)" in out
    status, out, _ = run(capsys, "--model", "Llama-3.1-405B")  # 504 KiB per token
    assert "Tokens per chunk for a 4 MiB target: 8 " in out
    assert "Rounded to a multiple of 16 tokens (the engine's block): 16 (7.88 MiB" in out
    assert "above the target: one block is the smallest chunk" in out


def test_json_carries_both_counts(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--model", "Qwen2.5-14B", "--multiple-of", "8", "--json")
    assert status == 0
    doc = json.loads(out)
    assert (doc["tokens_per_chunk"], doc["multiple_of"], doc["tokens_rounded"]) == (21, 8, 16)
    assert doc["chunk_bytes_rounded"] == 16 * doc["bytes_per_token"]
    assert doc["warnings"] == []


def test_model_from_a_config_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tmp_path / "Tiny-Model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"num_hidden_layers": 4, "num_attention_heads": 8, "hidden_size": 512})
    )
    for source in (str(model / "config.json"), str(model)):
        status, out, err = run(capsys, "--model", source, "--json")
        assert status == 0, err
        doc = json.loads(out)
        assert (doc["model"], doc["layers"], doc["kv_heads"], doc["head_dim"]) == (
            "Tiny-Model", 4, 8, 64,
        )  # fmt: skip
        assert doc["bytes_per_token"] == 2 * 8 * 64 * 4 * 2


def test_unknown_model_mentions_config_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--model", "acme/GPT-17")
    assert status == 2 and out == ""
    assert "unknown model preset 'acme/GPT-17'" in err
    assert "the path of the model's config.json" in err


def test_warns_above_the_server_value_limit(capsys: pytest.CaptureFixture[str]) -> None:
    # 4097 tokens of Llama-3.1-8B: 512 MiB + 128 KiB, one chunk more than the server takes.
    status, out, _ = run(capsys, "--model", "Llama-3.1-8B", "--tokens", "4097")
    assert status == 0
    assert "Warning: a chunk of 4097 tokens is 512.12 MiB, above the server's 512 MiB" in out
    status, out, _ = run(capsys, "--model", "Llama-3.1-8B", "--tokens", "4096")
    assert "Warning" not in out  # exactly the limit is still accepted
    status, out, _ = run(capsys, "--model", "Llama-3.1-8B", "--target", "1GiB", "--json")
    doc = json.loads(out)
    assert len(doc["warnings"]) == 1 and "8192 tokens is 1 GiB" in doc["warnings"][0]
