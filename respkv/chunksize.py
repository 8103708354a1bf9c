"""How many bytes a KV-cache chunk takes, and how many tokens fit a target chunk size.

A transformer keeps, per token and per layer, one key and one value vector for each KV
head. So one token of KV cache costs::

    bytes_per_token = 2 (K and V) x kv_heads x head_dim x layers x dtype_bytes

With tensor parallelism each rank stores only its own heads (``kv_heads / tp``; a rank
never holds less than one head, because frameworks replicate heads when ``tp`` exceeds
their number), and LMCache stores each rank's part under its own key
(``model@rank@hash``), so the size that reaches the server is the per-rank one.

Why it matters: respkv moves values of any size, but the server does not. GETs of 8 MiB
and larger collapse on Redis/Valkey, and about 1-4 MiB is the sweet spot (measured, see
docs/performance.md), so a chunk of tokens should be sized by bytes, not chosen by
habit. Llama-3.1-8B in bf16 is 131,072 bytes per token: LMCache's default 256-token
chunk is 32 MiB there, and 32 tokens make 4 MiB.

The presets carry the published architecture numbers (``config.json`` of each model:
``num_hidden_layers``, ``num_key_value_heads``, ``head_dim`` or
``hidden_size / num_attention_heads``), and :func:`from_hf_config` reads the same
numbers from any model's ``config.json``, so a model without a preset needs no
arithmetic by hand. Models with latent attention (DeepSeek MLA) do not follow the
formula and are refused.

Serving engines allocate the KV cache in blocks of tokens (vLLM's default block is 16
tokens) and LMCache's chunk size is best a whole number of blocks, so the token count
is also given rounded to a multiple of :data:`DEFAULT_MULTIPLE` (:func:`round_tokens`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEFAULT_DTYPE",
    "DTYPE_BYTES",
    "PRESETS",
    "ModelDims",
    "bytes_per_token",
    "chunk_bytes",
    "dtype_bytes",
    "format_size",
    "from_hf_config",
    "parse_size",
    "preset",
    "round_tokens",
    "tokens_per_chunk",
]

#: The dtype serving stacks keep the KV cache in unless told otherwise.
DEFAULT_DTYPE: Final = "bfloat16"

#: Bytes per element for the dtype names PyTorch, vLLM and LMCache use.
DTYPE_BYTES: Final[dict[str, int]] = {
    "float32": 4,
    "fp32": 4,
    "float": 4,
    "bfloat16": 2,
    "bf16": 2,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "int8": 1,
    "uint8": 1,
}

#: Largest tensor-parallel degree accepted (a sanity bound, far above real deployments).
MAX_TP: Final = 1024
#: The engine's chunk granularity in tokens: vLLM's default KV-cache block size.
DEFAULT_MULTIPLE: Final = 16
#: Largest value Redis and Valkey accept by default (``proto-max-bulk-len``, 512 MiB):
#: a chunk above it is refused by the server unless that limit is raised.
SERVER_VALUE_LIMIT: Final = 512 * 1024 * 1024
#: Largest ``config.json`` read (real ones are a few KiB; this catches a wrong file).
MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024

_SIZE_UNITS: Final[dict[str, int]] = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_SIZE_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def dtype_bytes(dtype: str | int) -> int:
    """Bytes per element of ``dtype`` (a name such as ``"bf16"``, or a byte count)."""
    if isinstance(dtype, int):
        if dtype not in (1, 2, 4, 8):
            raise ValueError(f"dtype bytes must be 1, 2, 4 or 8, got {dtype}")
        return dtype
    key = dtype.strip().lower().removeprefix("torch.")
    try:
        return DTYPE_BYTES[key]
    except KeyError:
        raise ValueError(
            f"unknown dtype {dtype!r}; valid: {', '.join(sorted(DTYPE_BYTES))}"
        ) from None


def bytes_per_token(
    *, kv_heads: int, head_dim: int, layers: int, dtype: str | int = DEFAULT_DTYPE, tp: int = 1
) -> int:
    """``2 x kv_heads x head_dim x layers x dtype_bytes``, per tensor-parallel rank."""
    for name, value in (("kv_heads", kv_heads), ("head_dim", head_dim), ("layers", layers)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(tp, int) or not 1 <= tp <= MAX_TP:
        raise ValueError(f"tp must be an integer in 1..{MAX_TP}, got {tp!r}")
    if kv_heads % tp and tp % kv_heads:
        raise ValueError(
            f"tp={tp} does not divide kv_heads={kv_heads} (nor the reverse): "
            "heads cannot be split evenly over the ranks"
        )
    heads_per_rank = max(1, kv_heads // tp)
    return 2 * heads_per_rank * head_dim * layers * dtype_bytes(dtype)


def tokens_per_chunk(per_token: int, target_bytes: int, *, multiple_of: int = 1) -> int:
    """The most tokens whose KV cache fits in ``target_bytes``, rounded down to a multiple.

    Raises ``ValueError`` when not even ``multiple_of`` tokens fit: the target is too
    small for this model, and silently returning a bigger chunk would defeat the point.
    """
    if per_token < 1:
        raise ValueError(f"bytes per token must be >= 1, got {per_token}")
    if target_bytes < 1:
        raise ValueError(f"target chunk size must be >= 1 byte, got {target_bytes}")
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be >= 1, got {multiple_of}")
    tokens = target_bytes // per_token // multiple_of * multiple_of
    if tokens < 1:
        raise ValueError(
            f"target {format_size(target_bytes)} is smaller than {multiple_of} token(s) of "
            f"{format_size(per_token)} each; raise the target or lower multiple_of"
        )
    return tokens


def round_tokens(tokens: int, multiple: int = DEFAULT_MULTIPLE) -> int:
    """``tokens`` rounded down to a multiple of ``multiple``, but at least one multiple
    (a chunk smaller than one block of the engine cannot be stored as a chunk)."""
    if tokens < 1 or multiple < 1:
        raise ValueError(f"need tokens >= 1 and multiple >= 1, got {tokens}, {multiple}")
    return max(multiple, tokens // multiple * multiple)


def chunk_bytes(per_token: int, tokens: int) -> int:
    """Size of one chunk of ``tokens`` tokens."""
    if per_token < 1 or tokens < 1:
        raise ValueError(f"need per_token >= 1 and tokens >= 1, got {per_token}, {tokens}")
    return per_token * tokens


@dataclass(frozen=True)
class ModelDims:
    """The architecture numbers that set a model's KV-cache size."""

    name: str
    layers: int
    kv_heads: int
    head_dim: int

    def bytes_per_token(self, dtype: str | int = DEFAULT_DTYPE, tp: int = 1) -> int:
        """Bytes of KV cache per token for one tensor-parallel rank."""
        return bytes_per_token(
            kv_heads=self.kv_heads, head_dim=self.head_dim, layers=self.layers, dtype=dtype, tp=tp
        )

    def tokens_per_chunk(
        self, target_bytes: int, dtype: str | int = DEFAULT_DTYPE, tp: int = 1, multiple_of: int = 1
    ) -> int:
        """Tokens per chunk so that one chunk fits ``target_bytes``."""
        return tokens_per_chunk(
            self.bytes_per_token(dtype, tp), target_bytes, multiple_of=multiple_of
        )


def _dims(name: str, layers: int, kv_heads: int, head_dim: int) -> tuple[str, ModelDims]:
    return name, ModelDims(name, layers, kv_heads, head_dim)


#: Common models, keyed by their Hugging Face name without the organisation.
PRESETS: Final[dict[str, ModelDims]] = dict(
    [
        _dims("Llama-3.2-1B", 16, 8, 64),
        _dims("Llama-3.2-3B", 28, 8, 128),
        _dims("Llama-3.1-8B", 32, 8, 128),
        _dims("Llama-3.1-70B", 80, 8, 128),
        _dims("Llama-3.1-405B", 126, 8, 128),
        _dims("Llama-3.3-70B", 80, 8, 128),
        _dims("Llama-3-8B", 32, 8, 128),
        _dims("Llama-3-70B", 80, 8, 128),
        _dims("Mistral-7B-v0.3", 32, 8, 128),
        _dims("Mixtral-8x7B-v0.1", 32, 8, 128),
        _dims("Qwen2.5-7B", 28, 4, 128),
        _dims("Qwen2.5-14B", 48, 8, 128),
        _dims("Qwen2.5-32B", 64, 8, 128),
        _dims("Qwen2.5-72B", 80, 8, 128),
        _dims("Qwen3-8B", 36, 8, 128),
        _dims("gemma-2-9b", 42, 8, 256),
        _dims("gemma-2-27b", 46, 16, 128),
        _dims("Phi-3-mini-4k", 32, 32, 96),
    ]
)

#: Name parts of fine-tuned variants that share their base model's architecture, where
#: they stand as a whole dash-separated word, at the end or in the middle
#: (``Mistral-7B-Instruct-v0.3``, ``gemma-2-9b-it``, ``Llama-2-7b-chat-hf``).
_VARIANT_WORDS: Final = re.compile(r"-(?:instruct|chat|it|hf)(?=-|$)")


def _normalise(name: str) -> str:
    key = name.strip().lower().rsplit("/", 1)[-1]
    key = key.removeprefix("meta-")  # Meta-Llama-3.1-8B-Instruct, as first published
    return _VARIANT_WORDS.sub("", key)


_BY_KEY: Final[dict[str, ModelDims]] = {_normalise(k): v for k, v in PRESETS.items()}


def preset(name: str) -> ModelDims:
    """The preset for ``name``: case-insensitive; an organisation prefix
    (``meta-llama/``), a ``Meta-`` prefix and the words ``-Instruct``, ``-Chat``, ``-it``
    and ``-hf`` (anywhere: ``Mistral-7B-Instruct-v0.3``) are ignored."""
    dims = _BY_KEY.get(_normalise(name))
    if dims is None:
        raise ValueError(f"unknown model preset {name!r}; valid: {', '.join(PRESETS)}")
    return dims


def parse_size(text: str | int) -> int:
    """Bytes in a size such as ``"4MiB"``, ``"4M"`` (binary), ``"4MB"`` (decimal), ``4096``."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must be >= 0, got {text}")
        return text
    m = _SIZE_RE.match(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _SIZE_UNITS:
        raise ValueError(
            f"invalid size {text!r}: expected a number with an optional unit "
            "(B, K/KiB, KB, M/MiB, MB, G/GiB, GB)"
        )
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def format_size(n: int) -> str:
    """``n`` bytes for people: ``4 MiB``, ``128 KiB``, ``1.5 GiB``, ``100 B``."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} B"


def _config_int(config: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = config.get(name)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"config.json: {name} must be a positive integer, got {value!r}")
            return value
    return None


def from_hf_config(path: str | Path) -> ModelDims:
    """The dimensions in a Hugging Face ``config.json`` (a file, or a model directory).

    Reads ``num_hidden_layers``, ``num_key_value_heads`` (``num_attention_heads`` when
    absent: no grouped-query attention) and ``head_dim`` (``hidden_size /
    num_attention_heads`` when absent), from ``text_config`` for multimodal models.
    Latent attention (``kv_lora_rank``, DeepSeek MLA) is refused: its cache does not
    follow the formula."""
    file = Path(path)
    if file.is_dir():
        file = file / "config.json"
    try:
        with file.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        config = json.loads(data)
    except OSError as exc:
        raise ValueError(f"cannot read {str(file)!r}: {exc.strerror or exc}") from None
    except ValueError:
        raise ValueError(f"{str(file)!r} is not a JSON file") from None
    if len(data) > MAX_CONFIG_BYTES or not isinstance(config, dict):
        raise ValueError(f"{str(file)!r} is not a model's config.json")
    if isinstance(config.get("text_config"), dict):
        config = {**config, **config["text_config"]}
    if "kv_lora_rank" in config:
        raise ValueError(
            f"{str(file)!r}: latent attention (kv_lora_rank) does not follow the "
            "per-head KV-cache formula"
        )
    layers = _config_int(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _config_int(config, "num_attention_heads", "n_head")
    kv_heads = _config_int(config, "num_key_value_heads", "num_kv_heads") or heads
    head_dim = _config_int(config, "head_dim")
    if head_dim is None and heads is not None:
        hidden = _config_int(config, "hidden_size", "n_embd")
        head_dim = hidden // heads if hidden is not None and hidden % heads == 0 else None
    if layers is None or kv_heads is None or head_dim is None:
        raise ValueError(
            f"{str(file)!r} lacks num_hidden_layers, num_key_value_heads/num_attention_heads "
            "or head_dim/hidden_size: give --layers, --kv-heads and --head-dim instead"
        )
    name = file.parent.name if file.name == "config.json" and file.parent.name else file.stem
    return ModelDims(name, layers, kv_heads, head_dim)
