"""The Trace: everything one forward pass of one text produced, as float32 numpy arrays."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import numpy as np

from .encoder import Encoder, EncoderInfo, apply_pooler
from .keywords import accepts_max_length
from .layers import check_block, check_layer

__all__ = [
    "NoSummaryToken",
    "Trace",
    "TokenizedText",
    "has_content",
    "literal_specials",
    "no_summary_message",
    "special_positions",
    "check_summary_token",
    "summary_index",
    "tokenize",
    "trace",
    "trace_bytes",
]


class NoSummaryToken(ValueError):
    """The model has no summary token ([CLS]) to read; the message says what to use instead."""


def no_summary_message(what: str, model_name: str) -> str:
    """What a view that needs a summary token says on a model pretrained without one."""
    return (
        f"{what} needs a summary token ([CLS]), but '{model_name}' was pretrained without one (clsviz lab, summary "
        "'none'): its sentence vector is the mean of the tokens. Use the mean pooling, or pick a model with a "
        "[CLS] token."
    )


@dataclass(frozen=True)
class TokenizedText:
    """The model's view of a text: ids and bookkeeping, before any forward pass."""

    text: str
    tokens: tuple[str, ...]
    input_ids: np.ndarray  # int64 [T]
    special_mask: np.ndarray  # bool [T]
    offsets: np.ndarray  # int64 [T, 2], character span of each token in `text` ((0, 0) for specials)
    word_ids: tuple[int | None, ...]
    truncated: bool
    num_text_tokens: int  # tokens the text produced before truncation (specials excluded)


@dataclass(frozen=True, eq=False)
class Trace:
    """One forward pass of one text through an encoder.

    Layers (see :mod:`clsviz.layers`): hidden-state index 0 is the embedding output and index
    ``l`` the output of block ``l``; blocks are numbered 1..L as people number them, so block
    ``l``'s attention is ``attention(l)`` = ``attentions[l - 1]``.

    Arrays (T = tokens including specials, L = layers, H = heads, D = hidden size):

    * ``input_ids``: int64 [T]; ``tokens``: tuple of T strings as the tokenizer produced them
    * ``special_mask``: bool [T], True for tokens the tokenizer added ([CLS], [SEP], ...)
    * ``offsets``: int64 [T, 2], character spans into ``text``; ``word_ids``: T entries
    * ``attentions``: float32 [L, H, T, T], row = query token, column = key token; row
      ``l - 1`` is block ``l``
    * ``hidden_states``: float32 [L + 1, T, D]; index 0 is the embedding output
    * ``pooler_states``: float32 [L + 1, D] (the model's pooler head applied to the [CLS]
      vector of each layer) or None when the model has no pooler; its last row is
      ``pooler_output``
    * ``cls_index``: position of the [CLS]-like token, or None for a model pretrained without a
      summary token (``info.summary == "none"``; see :func:`summary_index`); ``sep_index``: the
      closing special token
    * ``truncated``: True when the text was longer than the model's limit and was cut
    """

    text: str
    tokens: tuple[str, ...]
    input_ids: np.ndarray
    special_mask: np.ndarray
    offsets: np.ndarray
    word_ids: tuple[int | None, ...]
    truncated: bool
    attentions: np.ndarray
    hidden_states: np.ndarray
    pooler_states: np.ndarray | None
    cls_index: int | None
    sep_index: int | None
    info: EncoderInfo = field(repr=False)

    def __post_init__(self) -> None:
        n_tokens = len(self.tokens)
        num_layers, num_heads, dim = self.info.num_layers, self.info.num_heads, self.info.hidden_size
        expected = {
            "input_ids": (n_tokens,),
            "special_mask": (n_tokens,),
            "offsets": (n_tokens, 2),
            "attentions": (num_layers, num_heads, n_tokens, n_tokens),
            "hidden_states": (num_layers + 1, n_tokens, dim),
        }
        if self.pooler_states is not None:
            expected["pooler_states"] = (num_layers + 1, dim)
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if tuple(got) != shape:
                raise ValueError(f"{name}: expected {list(shape)}, got {list(got)}")
        if len(self.word_ids) != n_tokens:
            raise ValueError(f"word_ids: expected {n_tokens} entries, got {len(self.word_ids)}")
        for name in ("attentions", "hidden_states"):
            if getattr(self, name).dtype != np.float32:
                raise ValueError(f"{name}: expected float32, got {getattr(self, name).dtype}")
        if self.cls_index is not None and not 0 <= self.cls_index < n_tokens:
            raise ValueError(f"cls_index {self.cls_index} is outside 0..{n_tokens - 1}")

    # --- sizes -----------------------------------------------------------------------
    num_layers = property(lambda self: self.info.num_layers, doc="L, the encoder blocks (L + 1 hidden-state rows).")
    num_heads = property(lambda self: self.info.num_heads, doc="H, attention heads per block.")
    hidden_size = property(lambda self: self.info.hidden_size, doc="D, the width of every hidden state.")
    model_name = property(lambda self: self.info.name, doc="The display name of the encoder that made this trace.")

    @property
    def seq_len(self) -> int:
        """T, tokens including the special ones."""
        return len(self.tokens)

    @property
    def pooler_output(self) -> np.ndarray | None:
        """float32 [D]: the pooler head on the last layer's [CLS], or None without a pooler."""
        return None if self.pooler_states is None else self.pooler_states[-1]

    @property
    def content_mask(self) -> np.ndarray:
        """bool [T]: tokens that come from the text (not added by the tokenizer)."""
        return ~self.special_mask

    # --- accessors ---------------------------------------------------------------------
    def hidden(self, layer: int = -1) -> np.ndarray:
        """float32 [T, D]: hidden states at ``layer`` (0 = embeddings, l = after block l, -1 = last)."""
        return self.hidden_states[check_layer(layer, self.num_layers)]

    def cls(self, layer: int = -1) -> np.ndarray:
        """float32 [D]: the [CLS] vector after ``layer`` (:class:`NoSummaryToken` when there is none)."""
        return self.hidden(layer)[summary_index(self)]

    def attention(self, block: int, head: int | None = None) -> np.ndarray:
        """float32 [T, T] attention of block ``block`` (1..L, -1 = last): one head (0-based
        index), or the mean over heads (None)."""
        a = self.attentions[check_block(block, self.num_layers) - 1]
        if head is None:
            return a.mean(axis=0)
        if not 0 <= head < self.num_heads:
            raise IndexError(f"head {head} is outside 0..{self.num_heads - 1}")
        return a[head]

    def attention_to(self, index: int, include_self: bool = True) -> np.ndarray:
        """float32 [L, H]: attention each block/head pays to token ``index``, mean over queries.

        With ``include_self=False`` the query at ``index`` itself is left out.
        """
        col = self.attentions[:, :, :, index]  # [L, H, T]
        if include_self or self.seq_len == 1:
            return col.mean(axis=-1)
        keep = np.ones(self.seq_len, dtype=bool)
        keep[index] = False
        return col[:, :, keep].mean(axis=-1)

    def attention_from(self, index: int) -> np.ndarray:
        """float32 [L, H, T]: the attention row of token ``index`` in every block/head."""
        return self.attentions[:, :, index, :]

    def labels(self) -> list[str]:
        """Unique axis labels: ``"3:word"`` (position and token)."""
        return [f"{i}:{tok}" for i, tok in enumerate(self.tokens)]


def _clean(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    return text


def has_content(text: str) -> bool:
    """True when ``text`` holds something other than spaces and control/format characters."""
    return any(not (ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf")) for ch in text)


@accepts_max_length
def tokenize(encoder: Encoder, text: str, max_tokens: int | None = None) -> TokenizedText:
    """Tokenize ``text`` as the model sees it, without turning literal special-token text
    (e.g. the characters "[CLS]") into special tokens. Truncates to the model's limit."""
    text = _clean(text)
    if not has_content(text):
        raise ValueError(
            "The text is empty (or only spaces and control characters). Type at least one word."
        )
    limit = encoder.info.token_limit(max_tokens)
    tok = encoder.tokenizer
    num_special = tok.num_special_tokens_to_add(pair=False)
    if limit <= num_special:
        raise ValueError(f"max_tokens must be more than {num_special} (the special tokens), got {limit}")
    # split_special_tokens: a literal "[CLS]" in the text stays text, never a special token.
    options = dict(split_special_tokens=True, verbose=False)
    with encoder.lock:
        full = tok(text, add_special_tokens=False, **options)
        enc = tok(text, truncation=True, max_length=limit, return_offsets_mapping=True,
                  return_special_tokens_mask=True, **options)
    n_text = len(full["input_ids"])
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    special = np.asarray(enc["special_tokens_mask"], dtype=bool)
    if not (~special).any():
        raise ValueError(
            "The model's tokenizer found no readable tokens in this text (it may consist only of "
            "characters the tokenizer drops). Type some words."
        )
    try:
        word_ids = tuple(enc.word_ids())
    except (ValueError, AttributeError):
        word_ids = tuple(None for _ in ids)
    return TokenizedText(
        text=text,
        tokens=tuple(tok.convert_ids_to_tokens(ids.tolist())),
        input_ids=ids,
        special_mask=special,
        offsets=np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2),
        word_ids=word_ids,
        truncated=n_text + num_special > limit,
        num_text_tokens=n_text,
    )


def literal_specials(trace: Trace, tokenizer) -> list[str]:
    """Special-token strings (e.g. "[CLS]", "<s>") that appear literally in the trace's text: the
    tokenizer reads them as ordinary characters, split into pieces, never as special tokens."""
    specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if t and len(t) > 1]
    return [t for t in dict.fromkeys(specials) if t in trace.text]


def trace_bytes(info: EncoderInfo, seq_len: int) -> int:
    """Bytes a :class:`Trace` of ``seq_len`` tokens holds on this model: the float32 attention
    maps (L x H x T x T, the part that grows with the square of the length), the hidden states
    and pooler rows (L + 1 rows of T x D and D) and the per-token bookkeeping."""
    n, layers, heads, dim = int(seq_len), info.num_layers, info.num_heads, info.hidden_size
    return 4 * (layers * heads * n * n + (layers + 1) * (n + 1) * dim) + 64 * n


def check_summary_token(info: EncoderInfo, what: str) -> None:
    """:class:`NoSummaryToken` naming ``what`` when the model has no summary token (a lab model
    pretrained with summary ``"none"``); nothing otherwise."""
    if info.summary == "none":
        raise NoSummaryToken(no_summary_message(what, info.name))


def summary_index(trace: Trace, what: str = "This view") -> int:
    """``trace.cls_index``, or :class:`NoSummaryToken` naming ``what`` needed it when the model has
    no summary token."""
    if trace.cls_index is None:
        raise NoSummaryToken(no_summary_message(what, trace.info.name))
    return trace.cls_index


def special_positions(tt: TokenizedText, info: EncoderInfo) -> tuple[int | None, int | None]:
    """(position of the [CLS]-like token - None on a model pretrained without one -, position of
    the closing special token or None)."""
    ids = tt.input_ids
    cls_hits = np.flatnonzero((ids == info.cls_token_id) & tt.special_mask)
    cls_index = int(cls_hits[0]) if len(cls_hits) else 0
    if info.summary == "none":
        cls_index = None
    sep_index = None
    if info.sep_token_id is not None:
        sep_hits = np.flatnonzero((ids == info.sep_token_id) & tt.special_mask)
        if len(sep_hits):
            sep_index = int(sep_hits[-1])
    return cls_index, sep_index


def _maps_to_numpy(maps: list) -> np.ndarray:
    """float32 [L, H, T, T] from the model's per-layer maps [1, H, T, T], each dropped from
    ``maps`` once copied: at 512 tokens on a 12-layer, 12-head model the maps take 150 MB, and
    stacking them first would hold them twice."""
    out = np.empty((len(maps), *maps[0].shape[1:]), dtype=np.float32)
    for i in range(len(maps)):
        out[i] = maps[i][0].float().cpu().numpy()
        maps[i] = None
    return out


@accepts_max_length
def trace(encoder: Encoder, text: str, max_tokens: int | None = None) -> Trace:
    """Run ``text`` through ``encoder`` once and keep every attention map and hidden state.

    Raises ``ValueError`` for empty text. Text longer than the model's limit (or
    ``max_tokens``) is truncated and ``Trace.truncated`` is True.
    """
    import torch

    tt = tokenize(encoder, text, max_tokens)
    model = encoder.eager_model
    ids = torch.as_tensor(tt.input_ids, device=encoder.device)[None, :]
    with torch.inference_mode():
        out = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            output_attentions=True,
            output_hidden_states=True,
        )
        hidden = torch.stack(out.hidden_states)[:, 0]  # [L+1, T, D]
        maps = list(out.attentions)
        del out  # the output would keep every map alive beside the copy
        attentions = _maps_to_numpy(maps)  # [L, H, T, T]
        cls_index, sep_index = special_positions(tt, encoder.info)
        pooled = None if cls_index is None else apply_pooler(model, hidden[:, cls_index, :])
    return Trace(
        text=tt.text,
        tokens=tt.tokens,
        input_ids=tt.input_ids,
        special_mask=tt.special_mask,
        offsets=tt.offsets,
        word_ids=tt.word_ids,
        truncated=tt.truncated,
        attentions=attentions,
        hidden_states=hidden.float().cpu().numpy(),
        pooler_states=None if pooled is None else pooled.float().cpu().numpy(),
        cls_index=cls_index,
        sep_index=sep_index,
        info=encoder.info,
    )
