"""How big a model is before any of its weights are read: its parameter count from its config
(per-family formula), cross-checked with the tensor sizes its safetensors files declare in their
headers, and the memory that takes once loaded - so :func:`clsviz.load_encoder` refuses, in a
second and in words a person can act on, a model this deployment could not hold, a config that
describes no real model, and a tokenizer whose ids run past the model's embeddings.

Parameters of a BERT-family encoder, from its config (h hidden size, i intermediate size,
E embedding size, V vocabulary, P positions, T token types, L layers)::

    embeddings  E * (V + P + T) + 2E  (+ E*h + h when E != h: ALBERT, ELECTRA)
    each layer  4h^2 + 4h (attention) + 2h*i + i + h (feed-forward) + 4h (two LayerNorms)
    pooler      h^2 + h where the family has one; a sequence classifier's head adds h*k + k

ALBERT shares its layers (``num_hidden_groups`` sets of ``inner_group_num``), DeBERTa-v2 adds
its relative position table, MPNet its relative attention bias. The limit is
``CLSVIZ_MODEL_MAX_GB`` (default 3: on a 24 GB machine the app holds up to four models, the job
worker a copy of one, and a 4 GB result cache) or ``load_encoder(..., max_gb=...)``.

Only the 8-byte length and the JSON header of a safetensors file are read, never its tensors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .sources import ModelLoadError

__all__ = [
    "DEFAULT_MODEL_MAX_GB",
    "MODEL_MAX_GB_ENV",
    "Footprint",
    "check_config_sizes",
    "check_footprint",
    "check_vocabulary",
    "estimate_parameters",
    "max_model_bytes",
    "model_footprint",
    "safetensors_header",
    "weight_file_parameters",
]

MODEL_MAX_GB_ENV = "CLSVIZ_MODEL_MAX_GB"
"""Environment variable: the most memory (GB, 2**30 bytes) one model's weights may take."""
DEFAULT_MODEL_MAX_GB = 3.0
GB = 2**30
_MAX_HEADER_BYTES = 100 * 2**20  # the safetensors format's own limit on its JSON header
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "F8_E4M3": 1, "F8_E5M2": 1}
_TORCH_DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
_WITH_POOLER = {"bert", "roberta", "xlm-roberta", "camembert", "albert", "mpnet", "ernie", "nezha", "megatron-bert"}
_SIZE_NAMES = {
    "hidden_size": ("hidden_size", "dim", "d_model", "n_embd"),
    "num_hidden_layers": ("num_hidden_layers", "n_layers", "num_layers", "n_layer"),
    "num_attention_heads": ("num_attention_heads", "n_heads", "n_head"),
    "intermediate_size": ("intermediate_size", "hidden_dim", "ffn_dim", "n_inner"),
    "vocab_size": ("vocab_size",),
    "max_position_embeddings": ("max_position_embeddings", "n_positions"),
    "type_vocab_size": ("type_vocab_size",),
    "embedding_size": ("embedding_size",),
}


def _size(config, key: str):
    for name in _SIZE_NAMES[key]:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def _sizes(config) -> dict:
    """The config's sizes under one set of names (missing ones absent)."""
    return {key: value for key in _SIZE_NAMES if (value := _size(config, key)) is not None}


def check_config_sizes(display: str, config) -> None:
    """Refuse a config that describes no real model: sizes that are not positive whole numbers,
    or a hidden size that the attention heads do not divide."""
    sizes = _sizes(config)
    for key, value in sizes.items():
        least = 0 if key == "type_vocab_size" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ModelLoadError(
                f"'{display}' has a config.json that describes no real model: {key} is {value!r}, and it must be "
                f"a whole number of at least {least}. Fix config.json or use the folder save_pretrained() wrote."
            )
    h, n = sizes.get("hidden_size"), sizes.get("num_attention_heads")
    if h and n and h % n:
        raise ModelLoadError(
            f"'{display}' has a config.json that describes no real model: its hidden size {h} does not split "
            f"into {n} attention heads of equal width ({h} is not a multiple of {n}). Fix config.json."
        )


def estimate_parameters(config) -> int | None:
    """Parameters the model that ``config`` describes holds once built (see the module docstring),
    or None when the config lacks a hidden size or a layer count (a family not covered)."""
    s = _sizes(config)
    h, layers = s.get("hidden_size"), s.get("num_hidden_layers")
    if not h or not layers:
        return None
    kind = str(getattr(config, "model_type", ""))
    i = s.get("intermediate_size") or 4 * h
    e = s.get("embedding_size") or h
    positions = s.get("max_position_embeddings") or 0
    if kind == "deberta-v2" and not getattr(config, "position_biased_input", True):
        positions = 0
    vocab, types = s.get("vocab_size") or 0, s.get("type_vocab_size") or 0
    total = e * (vocab + positions + types) + 2 * e + (e * h + h if e != h else 0)
    if kind == "albert":  # layers are shared: num_hidden_groups sets of inner_group_num layers
        layers = int(getattr(config, "num_hidden_groups", 1) or 1) * int(getattr(config, "inner_group_num", 1) or 1)
    total += layers * (4 * h * h + 2 * h * i + 9 * h + i)
    if kind == "deberta-v2" and getattr(config, "relative_attention", False):
        buckets = int(getattr(config, "position_buckets", -1) or -1)
        span = buckets if buckets > 0 else int(getattr(config, "max_relative_positions", -1) or -1)
        total += 2 * (span if span > 0 else positions) * h + 2 * h
    if kind == "mpnet":
        total += int(getattr(config, "relative_attention_num_buckets", 32)) * (s.get("num_attention_heads") or 1)
    architectures = getattr(config, "architectures", None) or ()
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        labels = int(getattr(config, "num_labels", 2) or 2)
        total += h * h + h + h * labels + labels
    elif kind in _WITH_POOLER:
        total += h * h + h
    return int(total)


def safetensors_header(path: str | os.PathLike) -> dict:
    """The JSON header of a safetensors file (tensor name -> dtype, shape, data offsets), read
    without its tensors. Raises :class:`ValueError` (saying what is wrong) for a file that is
    truncated, or whose header is not what the format says."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"{path.name} is {size} bytes long: too short to be a safetensors file (truncated?)")
        length = int.from_bytes(head, "little")
        if length > min(_MAX_HEADER_BYTES, size - 8):
            raise ValueError(f"{path.name} says its header is {length:,} bytes long, but the file holds {size - 8:,} "
                             "after the length: the file is truncated or is not a safetensors file")
        try:
            header = json.loads(fh.read(length))
        except (UnicodeDecodeError, ValueError):
            raise ValueError(f"{path.name}'s header is not JSON: the file is damaged or is not a safetensors file") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path.name}'s header is not a JSON object: the file is damaged")
    available = size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = [int(d) for d in entry["shape"]]
            start, end = (int(x) for x in entry["data_offsets"])
            itemsize = _DTYPE_BYTES[entry["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path.name}'s header describes tensor {name!r} in a way the format does not allow") from None
        count = 1
        for d in shape:
            count *= d
        if min(shape, default=0) < 0 or not 0 <= start <= end or end - start != count * itemsize:
            raise ValueError(f"{path.name}'s header gives tensor {name!r} a shape and a byte range that disagree")
        if end > available:
            raise ValueError(f"{path.name} is truncated: its header places tensor {name!r} up to byte {end:,}, but "
                             f"only {available:,} bytes of tensor data are in the file")
    return header


def _weight_files(source: str) -> list[Path]:
    """The safetensors files of a local folder or a hub id's local cache (empty when none)."""
    names = ("model.safetensors", "model.safetensors.index.json")
    folder = Path(source)
    if folder.is_dir():
        single, index = (folder / name for name in names)
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            hits = [try_to_load_from_cache(source, name) for name in names]
        except Exception:  # a hub id the cache cannot answer for: nothing to cross-check
            return []
        single, index = (Path(hit) if isinstance(hit, str) else None for hit in hits)
    if single is not None and single.is_file():
        return [single]
    if index is not None and index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ValueError(f"{index.name} is not a readable index of weight files") from None
        return [index.parent / str(name) for name in shards]
    return []


def weight_file_parameters(source: str) -> tuple[int, int] | None:
    """(parameters, bytes per parameter of the first float tensor) that the safetensors files of
    ``source`` declare, or None without such files. Raises :class:`ValueError` for a damaged,
    truncated or missing weight file."""
    files = _weight_files(source)
    if not files:
        return None
    total, itemsize = 0, None
    for path in files:
        if not path.is_file():
            raise ValueError(f"the weight file {path.name} named in model.safetensors.index.json is missing")
        for name, entry in safetensors_header(path).items():
            if name == "__metadata__":
                continue
            count = 1
            for d in entry["shape"]:
                count *= int(d)
            total += count
            if itemsize is None and entry["dtype"] in ("F64", "F32", "F16", "BF16"):
                itemsize = _DTYPE_BYTES[entry["dtype"]]
    return total, itemsize or 4


@dataclass(frozen=True)
class Footprint:
    """A model's size before loading: ``parameters`` its config describes (None for a family the
    formula does not cover), ``weight_parameters`` its safetensors files declare (None without
    them), ``bytes_per_parameter`` as it will load, ``nbytes`` the memory its weights will take."""

    parameters: int | None
    weight_parameters: int | None
    bytes_per_parameter: int

    @property
    def nbytes(self) -> int:
        return max(self.parameters or 0, self.weight_parameters or 0) * self.bytes_per_parameter


def _config_dtype_bytes(config) -> int | None:
    dtype = getattr(config, "dtype", None)
    return _TORCH_DTYPE_BYTES.get(str(dtype).removeprefix("torch.")) if dtype is not None else None


def model_footprint(config, source: str) -> Footprint:
    """The :class:`Footprint` of the model ``config`` describes, cross-checked with ``source``'s
    safetensors headers. Raises :class:`ValueError` for a damaged weight file."""
    weights = weight_file_parameters(source)
    itemsize = _config_dtype_bytes(config) or (weights[1] if weights else 4)
    return Footprint(estimate_parameters(config), weights[0] if weights else None, itemsize)


def max_model_bytes(max_gb: float | None = None) -> int:
    """The most bytes one model may take: ``max_gb``, else ``CLSVIZ_MODEL_MAX_GB``, else 3 GB."""
    if max_gb is None:
        raw = os.environ.get(MODEL_MAX_GB_ENV, "").strip()
        try:
            max_gb = float(raw) if raw else DEFAULT_MODEL_MAX_GB
        except ValueError:
            raise ModelLoadError(f"{MODEL_MAX_GB_ENV} must be a number of GB such as 3 or 0.5; it is {raw!r}. "
                                 "Fix the server's setting.") from None
    if not max_gb > 0:
        raise ModelLoadError(f"The model size limit must be a positive number of GB; it is {max_gb!r}.")
    return int(max_gb * GB)


def _count(n: int) -> str:
    for size, word in ((10**12, "trillion"), (10**9, "billion"), (10**6, "million")):
        if n >= size:
            return f"{n / size:,.1f} {word}"
    return f"{n:,}"


def _gb(nbytes: float) -> str:
    return f"{nbytes / GB:,.2f} GB" if nbytes < 10 * GB else f"{nbytes / GB:,.0f} GB"


def check_footprint(display: str, config, source: str, max_gb: float | None = None) -> Footprint:
    """The model's :class:`Footprint`, or :class:`ModelLoadError` when its weights would take
    more memory than this deployment allows (or a weight file is damaged)."""
    try:
        footprint = model_footprint(config, source)
    except ValueError as exc:
        raise ModelLoadError(f"'{display}' has a weight file clsviz cannot use: {exc}. Save or download the "
                             "model again.") from None
    limit = max_model_bytes(max_gb)
    if footprint.nbytes > limit:
        described = [f"its config describes {_count(footprint.parameters)} parameters"] if footprint.parameters else []
        if footprint.weight_parameters is not None:
            described.append(f"its weight files hold {_count(footprint.weight_parameters)}")
        setting = f"max_gb={max_gb:g}" if max_gb is not None else f"{MODEL_MAX_GB_ENV}"
        raise ModelLoadError(
            f"'{display}' is too large for this server: {' and '.join(described)}, about "
            f"{_gb(footprint.nbytes)} of memory once loaded, and this deployment allows {_gb(limit)} per model "
            f"({setting}). Pick a smaller model, or raise {MODEL_MAX_GB_ENV} on a machine with more memory."
        )
    return footprint


def check_vocabulary(display: str, config, tokenizer) -> None:
    """Refuse a tokenizer that can produce ids the model's embedding table has no row for."""
    rows = _size(config, "vocab_size")
    if not isinstance(rows, int) or rows <= 0:
        return
    top = max(tokenizer.get_vocab().values(), default=-1)
    if top >= rows:
        raise ModelLoadError(
            f"'{display}' does not fit together: its tokenizer gives token ids up to {top:,}, but the model's "
            f"embedding table has {rows:,} rows (vocab_size in config.json), so some texts would read past it. The "
            "tokenizer comes from another model: save the model's own tokenizer into the folder."
        )
