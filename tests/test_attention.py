"""clsviz.attention and its figures, checked against independent numpy/torch computations."""

from __future__ import annotations

import base64
import functools
import json
import math
import unicodedata
from types import SimpleNamespace

import numpy as np
import plotly.io as pio
import pytest
import torch

from clsviz import attention as A
from clsviz import figures, load_encoder, trace
from clsviz import mixing as M
from clsviz.figures import safe_text
from clsviz.layers import block_names

SENTENCE = "Why is the [CLS] token always first, and what does it read?"


@pytest.fixture(scope="module")
def real_trace(encoder):
    return trace(encoder, SENTENCE)


@pytest.fixture(scope="module")
def tiny_encoders(tiny_model_dirs):
    return {kind: load_encoder(str(path)) for kind, path in tiny_model_dirs.items()}


def _random_attentions(rng, layers=3, heads=4, tokens=7) -> np.ndarray:
    return rng.dirichlet(np.ones(tokens), size=(layers, heads, tokens)).astype(np.float32)


# --- foundation: the Trace's attentions are softmax(QK^T / sqrt(d)) --------------------------------
def test_trace_attentions_equal_softmax_of_query_key(encoder, real_trace):
    t = real_trace
    head_dim = t.hidden_size // t.num_heads
    for layer, block in enumerate(encoder.model.encoder.layer):
        x = t.hidden_states[layer].astype(np.float64)  # the input of this layer
        sa = block.attention.self
        q = x @ sa.query.weight.double().numpy().T + sa.query.bias.double().numpy()
        k = x @ sa.key.weight.double().numpy().T + sa.key.bias.double().numpy()
        for h in range(t.num_heads):
            sl = slice(h * head_dim, (h + 1) * head_dim)
            scores = q[:, sl] @ k[:, sl].T / math.sqrt(head_dim)
            scores -= scores.max(axis=1, keepdims=True)
            expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
            np.testing.assert_allclose(t.attentions[layer, h], expected, atol=2e-5)


# --- per-head summaries against direct loops -------------------------------------------------------
@pytest.mark.parametrize("include_self", [True, False])
def test_attention_to_cls_matches_direct_mean(real_trace, include_self):
    a = real_trace.attentions
    cls = real_trace.cls_index
    got = A.attention_to_cls(a, cls, include_self=include_self)
    queries = [q for q in range(real_trace.seq_len) if include_self or q != cls]
    assert got.shape == (real_trace.num_layers, real_trace.num_heads)
    for layer in range(a.shape[0]):
        for h in range(a.shape[1]):
            assert got[layer, h] == pytest.approx(np.mean([a[layer, h, q, cls] for q in queries]), abs=1e-6)
    np.testing.assert_allclose(A.cls_self_attention(a, cls), a[:, :, cls, cls])
    # The Trace accessor agrees with the module function.
    np.testing.assert_allclose(got, real_trace.attention_to(cls, include_self=include_self), atol=1e-6)


def test_cls_entropy_matches_direct_formula(real_trace):
    a = real_trace.attentions
    got = A.cls_entropy(a, real_trace.cls_index)
    for layer in range(a.shape[0]):
        for h in range(a.shape[1]):
            p = a[layer, h, real_trace.cls_index].astype(np.float64)
            p = p / p.sum()
            assert got[layer, h] == pytest.approx(-sum(x * math.log(x) for x in p if x > 0), abs=1e-5)
    assert A.max_entropy(real_trace.seq_len) == pytest.approx(math.log(real_trace.seq_len))
    assert (got <= A.max_entropy(real_trace.seq_len) + 1e-5).all() and (got >= 0).all()


def test_entropy_extremes_uniform_and_one_hot():
    uniform = np.full((1, 2, 5, 5), 0.2, dtype=np.float32)
    np.testing.assert_allclose(A.cls_entropy(uniform), math.log(5), rtol=1e-6)
    one_hot = np.zeros((1, 1, 5, 5), dtype=np.float32)
    one_hot[..., 3] = 1.0
    np.testing.assert_allclose(A.cls_entropy(one_hot), 0.0, atol=1e-7)


def test_token_categories_follow_the_tokens():
    tokens = ["[CLS]", "hello", ",", "##.", "Ġ!", "world", "...", "l'", "[SEP]", "<pad>"]
    special = [True, False, False, False, False, False, False, False, True, True]
    cats = A.token_categories(tokens, special, cls_index=0)
    names = [A.TOKEN_CATEGORIES[c] for c in cats]
    for tok, is_special, name in zip(tokens, special, names, strict=True):
        bare = tok.lstrip("#Ġ")
        if tok == "[CLS]":
            assert name == "[CLS]"
        elif is_special:
            assert name == "[SEP]"
        elif all(unicodedata.category(ch).startswith("P") for ch in bare):
            assert name == "punctuation", tok
        else:
            assert name == "other", tok


def test_breakdown_matches_direct_sums(real_trace):
    a = real_trace.attentions
    cats = A.token_categories(real_trace.tokens, real_trace.special_mask, real_trace.cls_index)
    assert A.TOKEN_CATEGORIES[cats[real_trace.cls_index]] == "[CLS]"
    assert A.TOKEN_CATEGORIES[cats[real_trace.sep_index]] == "[SEP]"
    assert A.TOKEN_CATEGORIES[cats[real_trace.tokens.index(",")]] == "punctuation"
    per_head = A.attention_breakdown(a, cats, per_head=True)
    mean = A.attention_breakdown(a, cats)
    num_layers, num_heads, seq_len, _ = a.shape
    for layer in range(num_layers):
        for h in range(num_heads):
            for c in range(len(A.TOKEN_CATEGORIES)):
                keys = [k for k in range(seq_len) if cats[k] == c]
                direct = np.mean([a[layer, h, q, keys].sum() for q in range(seq_len)])
                assert per_head[layer, h, c] == pytest.approx(direct, abs=1e-5)
    np.testing.assert_allclose(mean, per_head.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, atol=1e-5)


def test_cls_rows_are_the_cls_query_rows(real_trace):
    rows = A.cls_rows(real_trace.attentions, real_trace.cls_index)
    for block in range(1, real_trace.num_layers + 1):
        np.testing.assert_array_equal(
            rows[block - 1].mean(axis=0), real_trace.attention(block)[real_trace.cls_index]
        )


# --- rollout ----------------------------------------------------------------------------------------
def _rollout_by_loops(attentions: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Independent rollout: every entry of each A_l written out, then the product taken whole."""
    num_layers, num_heads, n, _ = attentions.shape
    mixed = []
    for layer in range(num_layers):
        m = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                avg = sum(float(attentions[layer, h, i, j]) for h in range(num_heads)) / num_heads
                m[i, j] = (1 - residual) * avg + (residual if i == j else 0.0)
            m[i] /= m[i].sum()
        mixed.append(m)
    # R_l = A_l A_{l-1} ... A_1
    return np.stack([functools.reduce(np.matmul, mixed[: layer + 1][::-1]) for layer in range(num_layers)])


def test_rollout_matches_loop_implementation_on_random_and_real_attention(real_trace):
    rng = np.random.default_rng(0)
    rand = _random_attentions(rng)
    np.testing.assert_allclose(A.rollout(rand), _rollout_by_loops(rand), atol=1e-5)
    np.testing.assert_allclose(A.rollout(rand, residual=0.2), _rollout_by_loops(rand, 0.2), atol=1e-5)
    real = real_trace.attentions
    got = A.rollout(real)
    assert got.shape == (real_trace.num_layers, real_trace.seq_len, real_trace.seq_len)
    np.testing.assert_allclose(got, _rollout_by_loops(real), atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, atol=1e-5)


# --- value-norm weighted attention ------------------------------------------------------------------
# Where each architecture keeps its value projection and the attention output projection.
_VALUE_NAMES = {
    "bert": ("attention.self.value", "attention.output.dense"),
    "distilbert": ("attention.v_lin", "attention.out_lin"),
    "albert": ("attention.value", "attention.dense"),
}


def _value_norm_by_hooks(encoder, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Run the model again, capture each layer's value output with forward hooks, and compute
    ||alpha_ij f_h(x_j)|| directly in [H, T, D] (no Gram-matrix shortcut). Returns (weighted, attentions)."""
    family = encoder.info.model_type if encoder.info.model_type in _VALUE_NAMES else "bert"
    value_name, out_name = _VALUE_NAMES[family]
    model = encoder.eager_model
    modules = dict(model.named_modules())
    values = [m for n, m in modules.items() if n.endswith(value_name)]
    outputs = [m for n, m in modules.items() if n.endswith(out_name)]
    ids = torch.as_tensor(trace(encoder, text).input_ids)[None, :]
    captured: list[torch.Tensor] = []
    handles = [v.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()[0])) for v in values]
    try:
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    attn = torch.stack(out.attentions)[:, 0].double()  # [L, H, T, T]
    num_layers, num_heads, seq_len, _ = attn.shape
    assert len(captured) == num_layers  # ALBERT: one shared module, one call per layer
    result = torch.empty_like(attn)
    for layer in range(num_layers):
        out_proj = outputs[0] if len(outputs) == 1 else outputs[layer]
        v = captured[layer].double().view(seq_len, num_heads, -1)  # [T, H, d]
        head_dim = v.shape[-1]
        for h in range(num_heads):
            w_o = out_proj.weight.double()[:, h * head_dim : (h + 1) * head_dim]  # [D, d]
            f = v[:, h] @ w_o.T  # [T, D]: what head h writes for each key token
            weighted = attn[layer, h][:, :, None] * f[None, :, :]  # [T, T, D]
            result[layer, h] = weighted.norm(dim=-1)
    return result.numpy(), attn.numpy()


def test_value_weighted_attention_matches_hooks_on_bundled_model(encoder, real_trace):
    expected, attn = _value_norm_by_hooks(encoder, SENTENCE)
    np.testing.assert_allclose(real_trace.attentions, attn, atol=1e-5)
    got = M.value_weighted_attention(encoder, real_trace)
    assert got.shape == real_trace.attentions.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["bert", "roberta", "electra", "distilbert", "albert"])
def test_value_weighted_attention_matches_hooks_on_tiny_models(tiny_encoders, kind):
    enc = tiny_encoders[kind]
    text = "the cat chased a dog, why?"
    expected, _ = _value_norm_by_hooks(enc, text)
    got = M.value_weighted_attention(enc, trace(enc, text))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="session")
def tiny_mpnet_dir(tmp_path_factory):
    """A tiny random MPNet: an encoder with [CLS] whose attention weights live elsewhere
    (attention.attn.v / .o), so value-norm weighting is not available for it."""
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    from clsviz.encoder import bundled_model_path

    folder = tmp_path_factory.mktemp("tiny-mpnet")
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    torch.manual_seed(0)
    config = MPNetConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=66,
        pad_token_id=0,
    )
    MPNetModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def test_value_weighted_attention_refuses_unknown_architectures(tiny_encoder, tiny_mpnet_dir):
    mpnet = load_encoder(str(tiny_mpnet_dir))
    with pytest.raises(ValueError, match="BERT, RoBERTa, ELECTRA, DistilBERT and ALBERT.*'mpnet'"):
        M.value_weighted_attention(mpnet, trace(mpnet, "the cat"))
    t = trace(tiny_encoder, "the cat")
    stranger = SimpleNamespace(model=torch.nn.Module(), info=tiny_encoder.info)
    with pytest.raises(ValueError, match="BERT, RoBERTa, ELECTRA, DistilBERT and ALBERT"):
        M.value_weighted_attention(stranger, t)


def test_attention_weights_kinds(tiny_encoder):
    t = trace(tiny_encoder, "the cat chased a dog")
    assert M.attention_weights(tiny_encoder, t, "attention") is t.attentions
    shares = M.attention_weights(tiny_encoder, t, "value_norm")
    raw = M.value_weighted_attention(tiny_encoder, t)
    np.testing.assert_allclose(shares, raw / raw.sum(axis=-1, keepdims=True), rtol=1e-5)
    with pytest.raises(ValueError, match="attention, value_norm"):
        M.attention_weights(tiny_encoder, t, "flow")


# --- summary and tables -----------------------------------------------------------------------------
def test_summary_and_tables_agree_with_the_functions(real_trace):
    s = A.summarize(real_trace, include_self=False)
    a, cls = real_trace.attentions, real_trace.cls_index
    np.testing.assert_allclose(s.to_cls, A.attention_to_cls(a, cls, include_self=False))
    np.testing.assert_allclose(s.rollout_cls, A.rollout(a)[:, cls], atol=1e-6)
    np.testing.assert_allclose(s.cls_row(2), a[:, 2, cls])

    t = A.to_cls_table(s)
    assert len(t) == real_trace.num_layers * real_trace.num_heads
    row = t[(t["block"] == 3) & (t["head"] == 5)].iloc[0]
    assert row.attention_to_cls == pytest.approx(s.to_cls[2, 4])
    assert row.cls_self_attention == pytest.approx(a[2, 4, cls, cls])

    e = A.entropy_table(s)
    assert e.relative.max() <= 1 + 1e-6 and e.entropy.iloc[0] == pytest.approx(s.entropy[0, 0])

    b = A.breakdown_table(s)
    assert len(b) == real_trace.num_layers * len(A.TOKEN_CATEGORIES)
    np.testing.assert_allclose(b.groupby("block").share.sum(), 1.0, atol=1e-5)
    bh = A.breakdown_table(s, per_head=True)
    assert len(bh) == real_trace.num_layers * real_trace.num_heads * len(A.TOKEN_CATEGORIES)

    r = A.rollout_table(s)
    assert list(r.token[: real_trace.seq_len]) == list(real_trace.tokens)
    assert r[(r.block == 6)].rollout.to_numpy() == pytest.approx(s.rollout_cls[5])

    c = A.cls_row_table(s, head=None)
    assert c[c.block == 1].weight.to_numpy() == pytest.approx(a[0, :, cls].mean(axis=0), abs=1e-6)

    m = A.token_matrix_table(a[1, 3], real_trace.tokens)
    assert len(m) == real_trace.seq_len**2
    hit = m[(m.query_position == 2) & (m.key_position == 5)].iloc[0]
    assert hit.weight == pytest.approx(a[1, 3, 2, 5]) and hit.key_token == real_trace.tokens[5]


def test_bad_shapes_are_refused_with_a_message():
    with pytest.raises(ValueError, match="expected \\[layers, heads, T, T\\]"):
        A.attention_to_cls(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="cls_index 9"):
        A.cls_entropy(np.zeros((1, 1, 4, 4)), cls_index=9)
    with pytest.raises(ValueError, match="residual"):
        A.rollout(np.zeros((1, 1, 2, 2)), residual=1.5)


# --- figures ----------------------------------------------------------------------------------------
def _arr(value) -> np.ndarray:
    """A figure array from ``fig.to_dict()``: plotly stores numpy arrays as base64 typed arrays."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = tuple(int(n) for n in str(value.get("shape", len(flat))).split(","))
        return flat.reshape(shape)
    return np.asarray(value)


def test_figures_have_token_axes_and_right_shapes(real_trace):
    s = A.summarize(real_trace)
    labels = [safe_text(f"{i} {tok}") for i, tok in enumerate(real_trace.tokens)]
    num_layers, num_heads, n = real_trace.num_layers, real_trace.num_heads, real_trace.seq_len

    to_cls = figures.cls_attention_heatmap(s).to_dict()["data"][0]
    assert _arr(to_cls["z"]).shape == (num_layers, num_heads)
    np.testing.assert_allclose(_arr(to_cls["z"]), np.round(s.to_cls, 4), atol=1e-6)
    np.testing.assert_allclose(_arr(to_cls["customdata"]), np.round(s.cls_self, 4), atol=1e-6)

    ent = figures.cls_entropy_heatmap(s).to_dict()
    assert ent["data"][0]["zmax"] == pytest.approx(math.log(n))

    matrix = real_trace.attention(3, 7)
    tok = figures.token_attention_heatmap(matrix, real_trace.tokens, 3, 7).to_dict()
    assert list(tok["data"][0]["x"]) == labels and list(tok["data"][0]["y"]) == labels
    assert _arr(tok["data"][0]["z"]).shape == (n, n)
    assert "Block 3, head 8" in tok["layout"]["title"]["text"]

    bars = figures.attention_breakdown_bars(s).to_dict()
    assert bars["layout"]["barmode"] == "stack" and len(bars["data"]) == len(A.TOKEN_CATEGORIES)
    stacked = np.sum([_arr(d["y"]) for d in bars["data"]], axis=0)
    np.testing.assert_allclose(stacked, 1.0, atol=1e-3)

    row = figures.cls_row_heatmap(s, head=4).to_dict()["data"][0]
    assert list(row["x"]) == labels
    np.testing.assert_allclose(
        _arr(row["z"]), np.round(real_trace.attentions[:, 4, real_trace.cls_index], 4), atol=1e-6
    )

    roll = figures.rollout_comparison(s).to_dict()["data"]
    assert len(roll) == 2 and all(list(d["x"]) == labels for d in roll)
    np.testing.assert_allclose(_arr(roll[1]["z"]), np.round(s.rollout_cls, 4), atol=1e-6)


def test_figures_built_in_one_go_equal_plotly_built_step_by_step(real_trace):
    """The figures are made in one construction (each ``update_layout`` costs about as much as a
    whole figure); the same figure built the usual way, trace then layout updates, is identical."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    s = A.summarize(real_trace)
    labels = [safe_text(f"{i} {tok}") for i, tok in enumerate(real_trace.tokens)]
    n = real_trace.seq_len
    matrix = real_trace.attention(3, 7)
    want = go.Figure(go.Heatmap(z=np.round(matrix.astype(np.float32), 4), x=labels, y=labels, zmin=0.0,
                                colorscale="Viridis", colorbar=dict(title="weight"),
                                hovertemplate="query (attending): %{y}<br>key (attended to): %{x}<br>value: %{z}<extra></extra>"))
    want.update_layout(title="Block 3, head 8", xaxis=dict(title="key (attended to)", type="category"),
                       yaxis=dict(title="query (attending)", type="category", autorange="reversed"),
                       margin=dict(l=60, r=20, t=50, b=60))
    want.update_layout(height=min(900, 280 + 14 * n))
    want.update_layout(title=dict(text="Block 3, head 8", subtitle=dict(text="attention weights; row reads column")),
                       margin_t=90)
    assert figures.token_attention_heatmap(matrix, real_trace.tokens, 3, 7).to_dict() == want.to_dict()

    roll = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.1,
                         subplot_titles=("raw: this block only", "rollout: through all blocks so far"))
    for col, (values, axis, bar_x, name) in enumerate(
        [(s.cls_row(None), "coloraxis", 0.44, "raw"), (s.rollout_cls, "coloraxis2", 1.0, "rollout")], start=1
    ):
        z = np.round(np.asarray(values, dtype=np.float32), 4)
        roll.add_trace(go.Heatmap(z=z, x=labels, y=block_names(real_trace.num_layers), coloraxis=axis,
                                  name=name, hovertemplate=f"{name}<br>block %{{y}}<br>token %{{x}}<br>weight: %{{z}}<extra></extra>"),
                       row=1, col=col)
        roll.update_layout({axis: dict(colorscale="Viridis", cmin=0.0, cmax=float(z.max()),
                                       colorbar=dict(title=name, x=bar_x, len=0.9))})
    got = figures.rollout_comparison(s).to_dict()
    assert got["data"] == roll.to_dict()["data"]
    roll.update_xaxes(type="category", title_text="token")
    roll.update_yaxes(type="category", autorange="reversed")
    roll.update_yaxes(title_text="block", row=1, col=1)
    roll.update_annotations(yshift=6)
    roll.update_layout(margin=dict(l=60, r=20, t=80, b=60))
    roll.update_layout(title=dict(text="[CLS] row: one block vs rollout through the blocks",
                                  subtitle=dict(text="attention weights, mean over heads; rollout after Abnar & Zuidema (2020)")),
                       margin_t=120)
    assert got["layout"] == roll.to_dict()["layout"]


def test_figure_labels_escape_markup_tokens():
    tokens = ("<s>", "<b>bold</b>", "</s>")
    fig = figures.token_attention_heatmap(np.eye(3, dtype=np.float32), tokens, 0).to_dict()
    assert fig["data"][0]["x"][0] == "0 &lt;s&gt;"
    assert all("<" not in label for label in fig["data"][0]["x"])


def test_figures_for_512_tokens_stay_under_5_mb(encoder):
    long = trace(encoder, "Why is the [CLS] token first, and does it read the rest? " * 60, max_tokens=512)
    assert long.seq_len == 512
    for kind in M.ATTENTION_METHODS:
        weights = M.attention_weights(encoder, long, kind)
        s = A.summarize(long, weights, method=kind)
        figs = [
            figures.cls_attention_heatmap(s),
            figures.cls_entropy_heatmap(s),
            figures.token_attention_heatmap(weights[5].mean(axis=0), long.tokens, 5),
            figures.attention_breakdown_bars(s),
            figures.cls_row_heatmap(s),
            figures.rollout_comparison(s),
        ]
        page = sum(len(pio.to_json(f, validate=False)) for f in figs)
        assert page < 5_000_000, f"{kind}: {page} bytes of figure JSON"
        assert json.loads(pio.to_json(figs[2], validate=False))["data"][0]["type"] == "heatmap"


@pytest.mark.parametrize("index", [0, 3, 8])
def test_rollout_row_equals_the_row_of_full_rollout(index):
    rng = np.random.default_rng(7)
    raw = rng.random((4, 3, 9, 9)).astype(np.float32)
    attn = raw / raw.sum(-1, keepdims=True)
    from clsviz.attention import rollout, rollout_row

    np.testing.assert_allclose(rollout_row(attn, index), rollout(attn)[:, index, :], atol=1e-6)
