"""clsviz.experiments.interventions: causal tests on [CLS], checked against the model's own
forward pass and against blocks written again by hand from the raw weights (tests.test_blocks'
helpers, which do not use clsviz.blocks)."""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import StratifiedKFold

from clsviz import load_encoder, trace
from clsviz.blocks import InterventionError
from clsviz.experiments.interventions import (
    REFERENCE_SOURCES,
    ablate_dimensions,
    ablate_heads,
    add_registers,
    dimension_means,
    find_massive_dimensions,
    head_means,
    head_sweep,
    knockout,
    knockout_sweep,
    massive_sweep,
    patch_cls,
    patch_profile,
    patching_sweep,
    register_sweep,
    register_tokens,
)
from clsviz.experiments.probe import ProbeError, make_probe
from clsviz.metrics import cosine
from clsviz.progress import Cancelled
from tests.conftest import TINY_KINDS
from tests.test_attention import _arr
from tests.test_blocks import _bert_layer_by_hand, _gelu, _hooks, _layer_norm

TEXT = "The cat chased the dog across the yard."
OTHER = "Stock markets fell sharply after the announcement."
LABELLED = [
    ("the cat sat on the mat", "animal"), ("a dog chased the ball", "animal"), ("birds sing in the trees", "animal"),
    ("the horse ran fast", "animal"), ("stocks fell sharply today", "money"), ("the bank raised its rates", "money"),
    ("prices went up again", "money"), ("the market closed higher", "money"),
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tiny_model_dirs):
    return {kind: load_encoder(str(tiny_model_dirs[kind])) for kind in TINY_KINDS}


def _layer(enc, block):
    return enc.eager_model.encoder.layer[block - 1]


def _model_hidden(enc, ids) -> torch.Tensor:
    """The model's own forward pass (not clsviz.blocks): [L+1, T, D] for one id sequence."""
    ids = torch.as_tensor(ids)[None]
    with torch.inference_mode():
        out = enc.eager_model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True,
                              output_attentions=True)  # fmt: skip
    return torch.stack(out.hidden_states)[:, 0], torch.stack(out.attentions)[:, 0]


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a))


# --- knockout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ("bundled", *TINY_KINDS))
def test_every_read_cut_at_every_block_equals_cls_alone(encoder, tiny, kind):
    enc = encoder if kind == "bundled" else tiny[kind]
    got = knockout(enc, TEXT, layers=None, keys="others")
    alone, _ = _model_hidden(enc, [enc.info.cls_token_id])
    np.testing.assert_allclose(got, alone[:, 0].numpy(), atol=1e-4)
    clean = trace(enc, TEXT)
    assert np.abs(got[-1] - clean.cls(-1)).max() > 1e-3  # it does read the others when allowed


def test_knockout_of_nothing_equals_the_clean_trace(encoder):
    clean = trace(encoder, TEXT).hidden_states[:, 0]
    for got in (knockout(encoder, TEXT, layers=[]), knockout(encoder, TEXT, keys=[])):
        assert got.dtype == np.float32 and got.shape == clean.shape
        np.testing.assert_allclose(got, clean, atol=1e-5)


def test_knockout_cuts_only_the_cls_query_in_the_given_block(encoder):
    tr = trace(encoder, TEXT)
    num_layers, content = encoder.info.num_layers, ~tr.special_mask
    got = knockout(encoder, TEXT, layers=[num_layers], keys="content")
    add = torch.zeros(tr.seq_len, tr.seq_len)
    add[0, _t(content)] = float("-inf")
    with torch.inference_mode():
        want = _bert_layer_by_hand(_layer(encoder, num_layers), _t(tr.hidden_states[-2])[None], tr.num_heads, add_mask=add)
    np.testing.assert_allclose(got[:-1], tr.hidden_states[:-1, 0], atol=1e-5)
    np.testing.assert_allclose(got[-1], want[0, 0].numpy(), atol=1e-4)
    np.testing.assert_allclose(knockout(encoder, TEXT, layers=-1, keys="content"), got, atol=0)
    # Cutting the listed positions: [SEP] only, at block 2 (rows before block 2 untouched).
    sep = knockout(encoder, TEXT, layers=[2], keys=[tr.sep_index])
    np.testing.assert_allclose(sep[:2], tr.hidden_states[:2, 0], atol=1e-5)
    assert np.abs(sep[2] - tr.hidden_states[2, 0]).max() > 1e-4


# --- patching ----------------------------------------------------------------------------------


def test_patching_at_the_last_layer_returns_the_source_final_cls(encoder):
    src, tgt = trace(encoder, OTHER), trace(encoder, TEXT)
    for layer in (encoder.info.num_layers, -1):
        got = patch_cls(encoder, OTHER, TEXT, layer)
        np.testing.assert_allclose(got[:-1], tgt.hidden_states[:-1, 0], atol=1e-5)
        np.testing.assert_allclose(got[-1], src.cls(-1), atol=1e-5)


@pytest.mark.parametrize("layer", (0, 2, 5))
def test_patching_earlier_equals_the_remaining_blocks_by_hand(encoder, layer):
    src, tgt = trace(encoder, OTHER), trace(encoder, TEXT)
    got = patch_cls(encoder, OTHER, TEXT, layer)
    h = _t(tgt.hidden_states[layer]).clone()[None]
    h[0, 0] = _t(src.hidden_states[layer, 0])
    rows = [h]
    with torch.inference_mode():
        for block in range(layer + 1, encoder.info.num_layers + 1):
            rows.append(_bert_layer_by_hand(_layer(encoder, block), rows[-1], encoder.info.num_heads))
    np.testing.assert_allclose(got[:layer], tgt.hidden_states[:layer, 0], atol=1e-5)
    np.testing.assert_allclose(got[layer:], torch.stack(rows)[:, 0, 0].numpy(), atol=1e-4)


def test_patch_profile_ends_at_the_source(encoder):
    table = patch_profile(encoder, OTHER, TEXT)
    last = table.iloc[-1]
    assert list(table["layer"]) == list(range(encoder.info.num_layers + 1))
    assert last["cos_to_source"] == pytest.approx(1.0, abs=1e-6)
    want = float(cosine(trace(encoder, OTHER).cls(-1), trace(encoder, TEXT).cls(-1)))
    assert last["cos_to_target"] == pytest.approx(want, abs=1e-5)


# --- heads -------------------------------------------------------------------------------------


def _block_without_attention(layer, h):
    """A BertLayer with its attention output removed: every head zeroed leaves only W_O's bias."""
    so, ffn_in, ffn_out = layer.attention.output, layer.intermediate, layer.output
    mid = _layer_norm(h + so.dense.bias, so.LayerNorm)
    ff = _gelu(mid @ ffn_in.dense.weight.T + ffn_in.dense.bias) @ ffn_out.dense.weight.T + ffn_out.dense.bias
    return _layer_norm(ff + mid, ffn_out.LayerNorm)


@pytest.mark.parametrize("block", (1, 4))
def test_every_head_of_a_block_zeroed_equals_the_block_without_attention_output(encoder, block):
    tr = trace(encoder, TEXT)
    heads = encoder.info.num_heads
    got = ablate_heads(encoder, TEXT, [(block, j) for j in range(heads)], mode="zero")
    assert got.hidden_states.shape == tr.hidden_states.shape and got.attentions.shape == tr.attentions.shape
    assert got.tokens == tr.tokens
    rows = [_t(tr.hidden_states[block - 1])[None]]
    with torch.inference_mode():
        rows.append(_block_without_attention(_layer(encoder, block), rows[-1]))
        for b in range(block + 1, encoder.info.num_layers + 1):
            rows.append(_bert_layer_by_hand(_layer(encoder, b), rows[-1], heads))
    np.testing.assert_allclose(got.hidden_states[:block], tr.hidden_states[:block], atol=1e-5)
    np.testing.assert_allclose(got.hidden_states[block - 1 :], torch.stack(rows)[:, 0].numpy(), atol=1e-4)
    # The ablated block still computes its attention weights; the blocks before are unchanged.
    np.testing.assert_allclose(got.attentions[:block], tr.attentions[:block], atol=1e-5)


def _hand_head_means(enc, texts):
    """Each head's context (attention @ values) averaged over every token, from the model's own
    attention weights and hidden states."""
    info = enc.info
    dh = info.hidden_size // info.num_heads
    total, count = np.zeros((info.num_layers, info.num_heads, dh)), 0
    for text in texts:
        tr = trace(enc, text)
        for b in range(1, info.num_layers + 1):
            value = _layer(enc, b).attention.self.value
            with torch.inference_mode():
                v = (_t(tr.hidden_states[b - 1]) @ value.weight.T + value.bias).reshape(tr.seq_len, info.num_heads, dh)
            ctx = np.einsum("hqk,khd->hqd", tr.attentions[b - 1].astype(np.float64), v.double().numpy())
            total[b - 1] += ctx.sum(axis=1)
        count += tr.seq_len
    return total / count


def test_head_means_and_mean_ablation_match_a_hand_computation(encoder):
    texts = [TEXT, OTHER, "Why is it first?"]
    means = head_means(encoder, texts)
    np.testing.assert_allclose(means, _hand_head_means(encoder, texts), atol=1e-5)
    got = ablate_heads(encoder, TEXT, [(3, 2), (3, 7)], mode="mean", mean_from=means)

    def swap(ctx):
        ctx = ctx.clone()
        for j in (2, 7):
            ctx[:, j] = _t(means[2, j])
        return ctx

    tr = trace(encoder, TEXT)
    with torch.inference_mode():
        want = _bert_layer_by_hand(_layer(encoder, 3), _t(tr.hidden_states[2])[None], encoder.info.num_heads, context=swap)
    np.testing.assert_allclose(got.hidden_states[3], want[0].numpy(), atol=1e-4)
    # Texts as mean_from give the same run as their means.
    again = ablate_heads(encoder, TEXT, [(3, 2), (3, 7)], mode="mean", mean_from=texts)
    np.testing.assert_allclose(again.hidden_states, got.hidden_states, atol=1e-5)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_tiny_models_of_every_family(tiny, kind):
    enc = tiny[kind]
    tr = trace(enc, TEXT)
    same = ablate_heads(enc, TEXT, [])
    np.testing.assert_allclose(same.hidden_states, tr.hidden_states, atol=1e-5)
    np.testing.assert_allclose(same.attentions, tr.attentions, atol=1e-5)
    if tr.pooler_states is not None:
        np.testing.assert_allclose(same.pooler_states, tr.pooler_states, atol=1e-5)
    other = trace(enc, OTHER)
    np.testing.assert_allclose(patch_cls(enc, OTHER, TEXT, -1)[-1], other.cls(-1), atol=1e-5)
    np.testing.assert_allclose(knockout(enc, TEXT, layers=[]), tr.hidden_states[:, tr.cls_index], atol=1e-5)
    regs = add_registers(enc, TEXT, 2)
    hidden, attn = _model_hidden(enc, regs.input_ids)
    np.testing.assert_allclose(regs.hidden_states, hidden.numpy(), atol=1e-5)
    np.testing.assert_allclose(regs.attentions, attn.numpy(), atol=1e-5)
    ids, described = register_tokens(enc, 2)
    assert list(regs.input_ids[tr.cls_index + 1 : tr.cls_index + 3]) == ids
    if kind == "roberta":  # a vocabulary without [unused0]: copies of <s>
        assert regs.tokens[1:3] == ("<s>", "<s>") and "copies" in described
    else:
        assert regs.tokens[1:3] == ("[unused0]", "[unused1]") and "unused" in described


def _private_copy(enc):
    """A deep copy of the model for this test alone: what is edited or hooked on it never
    reaches the shared cached model. Its own forward pass is the independent computation."""
    return copy.deepcopy(enc.eager_model).eval()


def _family_blocks(model) -> list:
    """The module that produces hidden-state index l (1..L) at its call for block l: the layer
    list of BERT / RoBERTa / ELECTRA / DistilBERT, ALBERT's one shared layer group L times."""
    if hasattr(model, "transformer"):
        return list(model.transformer.layer)
    if hasattr(model.encoder, "albert_layer_groups"):
        return [model.encoder.albert_layer_groups[0]] * model.config.num_hidden_layers
    return list(model.encoder.layer)


def _value_linear(block_module):
    if hasattr(block_module, "albert_layers"):
        return block_module.albert_layers[0].attention.value
    attention = block_module.attention
    if hasattr(attention, "v_lin"):  # DistilBERT
        return attention.v_lin
    return attention.self.value if hasattr(attention, "self") else attention.value


def _copy_run(model, ids):
    ids = torch.as_tensor(ids)[None]
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].numpy()


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_every_family_all_heads_zeroed_equals_a_copy_without_values(tiny, kind):
    """Zeroing every head of a block leaves the block's attention output at W_O's bias alone:
    the same as a private copy of the model whose value projection in that block is zero.
    (ALBERT shares one layer across blocks, so there every block loses its heads.)"""
    enc = tiny[kind]
    model = _private_copy(enc)
    blocks = _family_blocks(model)
    ablated_blocks = range(1, len(blocks) + 1) if kind == "albert" else (2,)
    for block in ablated_blocks:
        value = _value_linear(blocks[block - 1])
        with torch.no_grad():
            value.weight.zero_()
            value.bias.zero_()
    tr = trace(enc, TEXT)
    want = _copy_run(model, tr.input_ids)
    heads = [(b, j) for b in ablated_blocks for j in range(enc.info.num_heads)]
    got = ablate_heads(enc, TEXT, heads, mode="zero")
    np.testing.assert_allclose(got.hidden_states, want, atol=1e-5)
    assert np.abs(got.hidden_states[-1] - tr.hidden_states[-1]).max() > 1e-3
    np.testing.assert_allclose(trace(enc, TEXT).hidden_states, tr.hidden_states, atol=0)  # shared model as it was


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_every_family_patching_midway_equals_the_model_rerun_with_the_cls_swapped(tiny, kind):
    """[CLS] patched at hidden-state index 1 of a 2-block model: the private copy's own forward
    pass with block 1's output [CLS] replaced by a hook (on the copy only)."""
    enc = tiny[kind]
    model = _private_copy(enc)
    src, tgt = trace(enc, OTHER), trace(enc, TEXT)
    layer, module = 1, _family_blocks(model)[0]
    vector, calls = torch.as_tensor(src.hidden_states[layer, src.cls_index]), []

    def swap(_module, _inputs, output):
        calls.append(1)
        if len(calls) != layer:
            return None
        h = (output[0] if isinstance(output, tuple) else output).clone()
        h[:, tgt.cls_index] = vector
        return (h, *output[1:]) if isinstance(output, tuple) else h

    module.register_forward_hook(swap)
    want = _copy_run(model, tgt.input_ids)[:, tgt.cls_index]
    # transformers records hidden_states with its own hooks, registered before this one: the
    # recorded row ``layer`` is the unswapped output, while the next block reads the swapped one.
    want[layer] = vector.numpy()
    got = patch_cls(enc, OTHER, TEXT, layer)
    assert got.dtype == np.float32 and got.shape == (enc.info.num_layers + 1, enc.info.hidden_size)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got[:layer], tgt.hidden_states[:layer, tgt.cls_index], atol=1e-6)
    assert np.abs(got[-1] - tgt.cls(-1)).max() > 1e-4  # the swap did reach the last layer
    assert all(not m._forward_hooks or all(h is not swap for h in m._forward_hooks.values())
               for m in enc.eager_model.modules())  # fmt: skip


# --- massive dimensions ---------------------------------------------------------------------------


def test_ablate_dimensions_sets_the_special_tokens_and_runs_on(encoder):
    tr = trace(encoder, TEXT)
    dims, layer, sep = [99, 223], 2, tr.sep_index
    for mode, means in (("zero", None), ("mean", np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))):
        got = ablate_dimensions(encoder, TEXT, dims, layer, mode=mode, means=means)
        h = _t(tr.hidden_states[layer]).clone()
        h[0, dims] = 0.0 if means is None else _t(means[0])
        h[sep, dims] = 0.0 if means is None else _t(means[1])
        np.testing.assert_allclose(got.hidden_states[layer], h.numpy(), atol=1e-6)
        with torch.inference_mode():
            want = _bert_layer_by_hand(_layer(encoder, layer + 1), h[None], encoder.info.num_heads)
        np.testing.assert_allclose(got.hidden_states[layer + 1], want[0].numpy(), atol=1e-4)
    texts = [TEXT, OTHER]
    traces = [trace(encoder, t) for t in texts]
    want = [[np.mean([t.hidden_states[layer, 0, d] for t in traces]) for d in dims],
            [np.mean([t.hidden_states[layer, t.sep_index, d] for t in traces]) for d in dims]]  # fmt: skip
    np.testing.assert_allclose(dimension_means(encoder, texts, dims, layer), want, atol=1e-5)


def test_found_massive_dimensions_are_many_times_the_median(encoder):
    found = find_massive_dimensions(encoder, [TEXT, OTHER], layer=2)
    assert 1 <= len(found) <= 4
    tr = trace(encoder, TEXT)
    hidden = tr.hidden_states[2].astype(np.float64)
    top = int(found["dimension"].iloc[0])
    ratio = max(abs(hidden[0, top]), abs(hidden[tr.sep_index, top])) / np.median(np.abs(hidden))
    assert ratio >= 10


# --- corpus sweeps against per-sentence runs ---------------------------------------------------


def test_knockout_sweep_matches_per_sentence_knockouts_and_a_hand_probe(tiny):
    enc = tiny["bert"]
    texts, labels = [t for t, _ in LABELLED], [y for _, y in LABELLED]
    result = knockout_sweep(enc, texts, labels, folds=2, batch_size=3)
    table = result.table.set_index(["reading", "scope", "block"])
    assert result.kind == "knockout" and result.n == len(texts) and isinstance(result.finding, str)
    clean = np.stack([trace(enc, t).cls(-1) for t in texts])
    y = np.array([v == "money" for v in labels], dtype=int)
    splits = list(StratifiedKFold(2, shuffle=True, random_state=0).split(clean, y))
    for block in (1, 2):
        cut = np.stack([knockout(enc, t, layers=range(block, 3), keys="content")[-1] for t in texts])
        row = table.loc[("cls", "from", block)]
        assert row["cosine"] == pytest.approx(float(cosine(cut, clean).mean()), abs=1e-5)
        right = 0
        for train, test in splits:
            right += int((make_probe().fit(clean[train], y[train]).predict(cut[test]) == y[test]).sum())
        assert row["accuracy"] == pytest.approx(right / len(texts))
    # Mean pooling with every token's reads of the other words cut from block 1, by hand.
    tr = trace(enc, texts[0])
    add = torch.zeros(tr.seq_len, tr.seq_len)
    content = _t(~tr.special_mask)
    add[:, content] = float("-inf")
    add.fill_diagonal_(0.0)
    h = _t(tr.hidden_states[0])[None]
    with torch.inference_mode():
        for block in (1, 2):
            h = _bert_layer_by_hand(_layer(enc, block), h, enc.info.num_heads, add_mask=add)
    one = knockout_sweep(enc, texts[:1]).table.set_index(["reading", "scope", "block"])
    want = float(cosine(h[0].mean(0).numpy(), tr.hidden_states[-1].mean(0)))
    assert one.loc[("mean", "from", 1), "cosine"] == pytest.approx(want, abs=1e-5)
    assert np.isnan(one["accuracy"]).all()


def test_head_sweep_matches_per_sentence_ablation(tiny):
    enc = tiny["bert"]
    texts = [t for t, _ in LABELLED[:3]]
    traces = [trace(enc, t) for t in texts]
    for mode in ("zero", "mean"):
        table = head_sweep(enc, texts, mode=mode, batch_size=2).table.set_index(["block", "head"])
        assert len(table) == enc.info.num_layers * enc.info.num_heads
        means = head_means(enc, texts)
        for block, head in ((1, 0), (2, 3)):
            ablated = [ablate_heads(enc, t, [(block, head)], mode=mode, mean_from=means).cls(-1) for t in texts]
            per_text = np.array([float(cosine(a, t.cls(-1))) for a, t in zip(ablated, traces)])
            assert table.loc[(block, head), "effect"] == pytest.approx(np.mean(1 - per_text), abs=1e-6)
            draws = per_text[np.random.default_rng(0).integers(0, 3, size=(1000, 3))].mean(axis=1)
            assert table.loc[(block, head), "cosine_low"] == pytest.approx(np.percentile(draws, 2.5), abs=1e-5)
    parked = np.mean(np.concatenate([t.attentions[:, :, 1:, 0] for t in traces], axis=-1), axis=-1)
    np.testing.assert_allclose(table["attention_to_cls"].to_numpy().reshape(parked.shape), parked, atol=1e-5)
    reads = np.mean([t.attentions[:, :, 0][..., ~t.special_mask].sum(-1) for t in traces], axis=0)
    np.testing.assert_allclose(table["cls_reads_content"].to_numpy().reshape(reads.shape), reads, atol=1e-5)
    assert set(table["role"]) <= {"aggregator", "sink", "important", "minor"}


def test_patching_sweep_flips_every_pair_at_the_last_layer(tiny):
    enc = tiny["bert"]
    texts, labels = [t for t, _ in LABELLED], [y for _, y in LABELLED]
    result = patching_sweep(enc, texts, labels, folds=2, pairs=6, batch_size=4)
    table = result.table.set_index("layer")
    assert list(table.index) == [0, 1, 2]
    last = table.loc[2]
    assert last["flip_rate"] == 1.0 and last["kept_rate"] == 0.0
    assert last["flip_low"] == last["flip_high"] == 1.0  # every pair flips: every resample too
    assert last["cos_to_source"] == pytest.approx(1.0, abs=1e-6)
    # Every text's embedding-layer [CLS] is the same vector: patching it changes nothing.
    assert table.loc[0, "flip_rate"] == 0.0 and table.loc[0, "kept_rate"] == 1.0


def test_massive_sweep_matches_per_sentence_runs(tiny):
    enc = tiny["bert"]
    texts = [t for t, _ in LABELLED[:3]]
    traces = [trace(enc, t) for t in texts]
    dims = [0, 5]
    result = massive_sweep(enc, texts, layer=1, dims=dims, batch_size=2)
    table = result.table.set_index("mode")
    means = dimension_means(enc, texts, dims, 1)
    for mode in ("zero", "mean"):
        runs = [ablate_dimensions(enc, t, dims, 1, mode=mode, means=means) for t in texts]
        per_text = [float(cosine(r.cls(-1), t.cls(-1))) for r, t in zip(runs, traces)]
        assert table.loc[mode, "cosine"] == pytest.approx(np.mean(per_text), abs=1e-5)
        draws = np.asarray(per_text)[np.random.default_rng(0).integers(0, 3, size=(1000, 3))].mean(axis=1)
        low, high = np.percentile(draws, [2.5, 97.5])
        assert (table.loc[mode, "cosine_low"], table.loc[mode, "cosine_high"]) == pytest.approx((low, high), abs=1e-5)
    # The control: as many random dimensions (none of the chosen ones), zeroed the same way.
    control = [int(d) for d in table.loc["random_zero", "dims"].split(", ")]
    assert len(control) == 2 and not set(control) & set(dims)
    runs = [ablate_dimensions(enc, t, control, 1, mode="zero") for t in texts]
    want = np.mean([float(cosine(r.cls(-1), t.cls(-1))) for r, t in zip(runs, traces)])
    assert table.loc["random_zero", "cosine"] == pytest.approx(want, abs=1e-5)
    # How much the replaced values vary between inputs: each role around its own mean.
    cls_rows = np.stack([t.hidden_states[1, t.cls_index, dims] for t in traces]).astype(np.float64)
    sep_rows = np.stack([t.hidden_states[1, t.sep_index, dims] for t in traces]).astype(np.float64)
    spread = np.sqrt((((cls_rows - cls_rows.mean(0)) ** 2).sum() + ((sep_rows - sep_rows.mean(0)) ** 2).sum())
                     / ((cls_rows**2).sum() + (sep_rows**2).sum()))  # fmt: skip
    assert table.loc["zero", "variation"] == pytest.approx(spread, rel=1e-4)
    assert "vary between inputs by" in result.finding and "random dimensions" in result.finding
    ratio = max(np.abs(t.hidden_states[1][t.special_mask][:, dims]).max() / np.median(np.abs(t.hidden_states[1]))
                for t in traces)  # fmt: skip
    assert table.loc["zero", "times_median"] == pytest.approx(ratio, rel=1e-5)
    att = result.attention.set_index(["mode", "block", "role"])["share"]
    words = np.mean(np.concatenate([t.attentions[1][:, ~t.special_mask, 0] for t in traces], axis=-1))
    assert att[("clean", 2, "cls")] == pytest.approx(words, abs=1e-5)


def test_register_sweep_matches_per_sentence_registers(tiny):
    enc = tiny["bert"]
    texts = [t for t, _ in LABELLED[:3]]
    result = register_sweep(enc, texts, ks=(0, 2), batch_size=2)
    att = result.attention.set_index(["k", "block", "role"])["share"]
    runs = [add_registers(enc, t, 2) for t in texts]
    shares = []
    for r in runs:
        words = ~r.special_mask
        shares.append(r.attentions[0][:, words][:, :, 1:3].sum(-1).ravel())
    assert att[(2, 1, "registers")] == pytest.approx(float(np.mean(np.concatenate(shares))), abs=1e-5)
    table = result.table.set_index("k")
    want = np.mean([float(cosine(r.cls(-1), trace(enc, t).cls(-1))) for r, t in zip(runs, texts)])
    assert table.loc[2, "cos_to_no_registers"] == pytest.approx(want, abs=1e-5)
    assert "unused" in table.loc[2, "tokens"]
    # The shift-only control: no registers, every token after [CLS] two positions further right,
    # run here through the model's own forward pass with explicit position ids.
    shifted = []
    for t in texts:
        ids = torch.as_tensor(trace(enc, t).input_ids)[None]
        positions = torch.arange(ids.shape[1])[None].clone()
        positions[:, 1:] += 2
        with torch.inference_mode():
            last = enc.model(input_ids=ids, position_ids=positions).last_hidden_state[0, 0].numpy()
        shifted.append(float(cosine(last, trace(enc, t).cls(-1))))
    assert table.loc[2, "shift_cos_to_no_registers"] == pytest.approx(np.mean(shifted), abs=1e-5)
    assert table.loc[0, "shift_cos_to_no_registers"] == pytest.approx(1.0, abs=1e-6)
    assert "Shift-only control" in result.finding


# --- the shared model stays as it was ---------------------------------------------------------


def _state(enc):
    return dict(
        weights={k: v.detach().clone() for k, v in enc.model.state_dict().items()},
        hooks=(_hooks(enc.model), _hooks(enc.eager_model), dict(torch.nn.modules.module._global_forward_hooks),
               dict(torch.nn.modules.module._global_forward_pre_hooks)),
        modes=[(m.training, p.requires_grad) for m in enc.model.modules() for p in m.parameters(recurse=False)],
        attn=(enc.model.config._attn_implementation, enc.eager_model.config._attn_implementation),
    )  # fmt: skip


def _same_state(a, b) -> bool:
    return (a["weights"].keys() == b["weights"].keys() and all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
            and a["hooks"] == b["hooks"] and a["modes"] == b["modes"] and a["attn"] == b["attn"])  # fmt: skip


def test_interventions_in_threads_leave_traces_and_the_model_unchanged(encoder):
    texts = [TEXT, OTHER]
    clean = {t: trace(encoder, t) for t in texts}
    # After a first trace: transformers installs its own output-capturing hooks on the eager
    # model the first time attentions are asked for; what is checked is that nothing else does.
    before = _state(encoder)
    good = {
        "knockout": lambda: knockout(encoder, TEXT, keys="content"),
        "patch": lambda: patch_cls(encoder, OTHER, TEXT, 3),
        "heads": lambda: ablate_heads(encoder, TEXT, [(2, 1), (5, 3)]).hidden_states,
        "dims": lambda: ablate_dimensions(encoder, OTHER, [99], 2).hidden_states,
        "registers": lambda: add_registers(encoder, TEXT, 2).attentions,
        "sweep": lambda: knockout_sweep(encoder, texts).table["cosine"].to_numpy(),
    }
    alone = {name: fn() for name, fn in good.items()}

    def interrupted(kind):
        cancel = threading.Event()

        def progress(done, total, message=""):
            if done == 3:
                if kind == "cancel":
                    cancel.set()
                else:
                    raise RuntimeError("stopped from the progress callback")

        return head_sweep(encoder, texts, mode="zero", progress=progress, cancel=cancel, batch_size=1)

    def tracer():
        return [trace(encoder, t) for _ in range(3) for t in texts]

    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = {name: pool.submit(fn) for name, fn in good.items()}
        failing = [pool.submit(interrupted, "cancel"), pool.submit(interrupted, "raise"),
                   pool.submit(ablate_heads, encoder, TEXT, [(2, 99)])]  # fmt: skip
        traced = [pool.submit(tracer) for _ in range(2)]
        for fut, error in zip(failing, (Cancelled, RuntimeError, InterventionError)):
            with pytest.raises(error):
                fut.result()
        for name, fut in runs.items():
            np.testing.assert_allclose(fut.result(), alone[name], atol=1e-6)
        for fut in traced:
            for got in fut.result():
                np.testing.assert_allclose(got.hidden_states, clean[got.text].hidden_states, atol=1e-6)
                np.testing.assert_allclose(got.attentions, clean[got.text].attentions, atol=1e-6)
    assert _same_state(before, _state(encoder))


# --- bad input ---------------------------------------------------------------------------------


def test_bad_input_gets_a_clear_message(tiny):
    enc = tiny["bert"]
    texts, labels = [t for t, _ in LABELLED], [y for _, y in LABELLED]
    cases = [
        (ProbeError, "Only 4 labelled", lambda: knockout_sweep(enc, texts[:4], labels[:4])),
        (ProbeError, "single class", lambda: head_sweep(enc, texts, ["same"] * len(texts), folds=2)),
        (ProbeError, "give a label", lambda: patching_sweep(enc, texts, None)),
        (ProbeError, "single class", lambda: patching_sweep(enc, texts, ["x"] * len(texts), folds=2)),
        (InterventionError, "same sentence", lambda: patch_cls(enc, TEXT, TEXT, 1)),
        (InterventionError, "same sentence", lambda: patch_profile(enc, TEXT, "  " + TEXT)),
        (InterventionError, "limit of 64", lambda: add_registers(enc, "word " * 100, 1)),
        (InterventionError, "do not fit", lambda: register_sweep(enc, texts, ks=(0, 70))),
        (InterventionError, "0 or more", lambda: add_registers(enc, TEXT, -1)),
        (InterventionError, "keys=", lambda: knockout(enc, TEXT, keys="words")),
        (InterventionError, "positions", lambda: knockout(enc, TEXT, keys=[99])),
        (InterventionError, "block numbers", lambda: knockout(enc, TEXT, layers=[0])),
        (InterventionError, "layer", lambda: patch_cls(enc, TEXT, OTHER, 9)),
        (InterventionError, "outside 0..3", lambda: ablate_heads(enc, TEXT, [(1, 4)])),
        (InterventionError, "pairs", lambda: ablate_heads(enc, TEXT, [1, 2])),
        (InterventionError, "mode=", lambda: ablate_heads(enc, TEXT, [(1, 1)], mode="half")),
        (InterventionError, r"\[L, H, dh\]", lambda: ablate_heads(enc, TEXT, [(1, 1)], mode="mean", mean_from=np.zeros(3))),
        (InterventionError, "dims", lambda: ablate_dimensions(enc, TEXT, [32], 1)),
        (InterventionError, r"expected \[2, 1\]", lambda: ablate_dimensions(enc, TEXT, [3], 1, "mean", np.zeros(3))),
        (InterventionError, r"expected \[2, 2\]", lambda: massive_sweep(enc, texts, dims=[1, 2], mean_from=np.zeros(2))),
        (InterventionError, "mode=", lambda: head_sweep(enc, texts, mode="half")),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message) as caught:
            call()
        assert isinstance(caught.value, ValueError)


# --- one plain sentence per experiment, from planted tables --------------------------------------


def _knockout_table(cls_from, cls_only, mean_from=(0.9,) * 6, accuracy=np.nan):
    rows = []
    for reading, scope, values in (("cls", "from", cls_from), ("cls", "only", cls_only), ("mean", "from", mean_from),
                                   ("mean", "only", mean_from)):  # fmt: skip
        for block, cos in enumerate(values, start=1):
            rows.append(dict(reading=reading, scope=scope, block=block, cosine=cos, accuracy=accuracy,
                             clean_accuracy=0.9, chance=0.5))  # fmt: skip
    return pd.DataFrame(rows)


def test_knockout_sentence_names_the_block_from_which_cls_stops_reading():
    from clsviz.experiments.interventions import summarize_knockout

    text = summarize_knockout(_knockout_table((0.4, 0.5, 0.8, 0.995, 0.999, 1.0), (0.9, 0.95, 0.7, 1, 1, 1)))
    assert "From block 4 on" in text and "block 3 upward moves it to 0.800" in text
    assert "only block 1, 2, 3 matters each" in text
    late = summarize_knockout(_knockout_table((0.7,) * 6, (1, 1, 1, 1, 1, 0.7), accuracy=0.2))
    assert "in the last block" in late and "block 6 alone" in late and "20%" in late
    never = summarize_knockout(_knockout_table((0.999,) * 6, (1,) * 6))
    assert "does not depend on reading the words" in never and "barely moves" in never


def test_other_sentences_from_planted_tables():
    from clsviz.experiments.interventions import (
        summarize_heads,
        summarize_massive,
        summarize_patch_profile,
        summarize_patching,
        summarize_registers,
    )

    flips = pd.DataFrame(dict(layer=range(7), flip_rate=[0, 0, 0.1, 0.7, 0.9, 1, 1], kept_rate=[1, 1, 0.9, 0.3, 0.1, 0, 0]))
    assert "From layer 3 on" in summarize_patching(flips) and "10% at layer 2" in summarize_patching(flips)
    late = flips.assign(flip_rate=[0, 0, 0, 0, 0, 0, 1.0])
    assert summarize_patching(late).startswith("Only the final [CLS]")
    profile = pd.DataFrame(dict(layer=range(4), cos_to_source=[0.2, 0.3, 0.9, 1.0], cos_to_target=[1, 0.95, 0.5, 0.4]))
    assert "layer 2 or later" in summarize_patch_profile(profile)
    heads = pd.DataFrame(dict(
        block=[1, 1, 1, 2, 2, 2], head=[0, 1, 2, 0, 1, 2], effect=[1e-4, 1e-4, 2e-4, 1e-4, 1e-4, 0.05],
        cosine=[1, 1, 1, 1, 1, 0.95], attention_to_cls=[0.1, 0.6, 0.7, 0.5, 0.1, 0.1],
        cls_reads_content=[0.5, 0.0, 0.0, 0.1, 0.1, 0.8], mode="mean",
    ))  # fmt: skip
    text = summarize_heads(heads)
    assert "block 2 head 3" in text and "Of the 3 heads" in text and "2 change it little" in text
    assert "1 head(s) are aggregators" in text
    massive = pd.DataFrame(dict(mode=["zero", "mean"], layer=1, dims="99, 223", times_median=3000.0, massive=True,
                                cosine=[0.5, 0.999], cosine_low=[0.45, 0.995], cosine_high=[0.55, 1.0], n=40,
                                accuracy=[0.4, 0.9], clean_accuracy=0.9, cls_share=[0.1, 0.5], cls_share_clean=0.5))  # fmt: skip
    text = summarize_massive(massive, pd.DataFrame(dict(share=[0.1])))
    assert "agrees with Sun et al." in text and "the sink moves" in text and "99, 223" in text
    assert "0.500 (0.450–0.550)" in text
    unbroken = summarize_massive(massive.assign(cosine=[0.995, 1.0], cosine_low=[0.99, 1.0], cosine_high=[0.999, 1.0]))
    assert "does not behave as Sun et al. (2024) report: zeroing does not break it" in unbroken
    straddle = massive.assign(cosine_low=[0.45, 0.98])  # the mean's interval reaches below 0.99
    assert "do not settle" in summarize_massive(straddle)
    small = summarize_massive(massive.assign(times_median=40.0, massive=False))
    assert "not massive by Sun et al.'s definition (1,000 times the median)" in small and "agrees" not in small
    regs = pd.DataFrame(dict(k=[0, 4], accuracy=[0.8, 0.82], cls_share=[0.5, 0.1], register_share=[0.0, 0.6]))
    with_control = regs.assign(shift_cls_share=[0.5, 0.48], shift_cos_to_no_registers=[1.0, 0.99],
                               cos_to_no_registers=[1.0, 0.8], shift_accuracy=[0.8, 0.81])  # fmt: skip
    assert "Shift-only control (no registers, the words moved 4 positions right): [CLS] gets 48%" in summarize_registers(with_control)
    assert "take over the sink role" in summarize_registers(regs) and "82%" in summarize_registers(regs)
    assert "[CLS] stays the sink" in summarize_registers(regs.assign(cls_share=[0.5, 0.5], register_share=[0, 0.02]))


# --- the per-sentence figures in the offline report ----------------------------------------------


def test_report_draws_the_causal_figures_of_the_sentence(tiny):
    from clsviz.report import build_report, report_sections

    enc = tiny["bert"]
    tr = trace(enc, TEXT)
    keys = ["interventions.knockout", "interventions.patch_profile", "interventions.heads", "interventions.massive",
            "interventions.registers"]  # fmt: skip
    sections = report_sections(tr, enc, only=keys)
    assert [s.key for s in sections] == keys and all(s.figure is not None for s in sections)
    knock = sections[0].figure.to_dict()["data"]
    want = knockout_sweep(enc, [TEXT]).table
    red = want[(want["reading"] == "cls") & (want["scope"] == "from")].sort_values("block")
    np.testing.assert_allclose(np.asarray(knock[0]["y"], float), np.round(red["cosine"].to_numpy(), 4))
    # The patch profile: the sentence as target, the first reference sentence as source;
    # at the last layer the target's final [CLS] is the source's (cosine 1).
    patch = sections[1].figure.to_dict()
    source = REFERENCE_SOURCES[0]
    profile = patch_profile(enc, source, TEXT)
    np.testing.assert_allclose(np.asarray(patch["data"][0]["y"], float), profile["cos_to_source"], atol=1e-4)
    np.testing.assert_allclose(np.asarray(patch["data"][1]["y"], float), profile["cos_to_target"], atol=1e-4)
    assert patch["data"][0]["y"][-1] == pytest.approx(1.0, abs=1e-4) and source in patch["layout"]["title"]["text"]
    heads = sections[2].figure.to_dict()["data"][0]
    table = head_sweep(enc, [TEXT], mode="mean", mean_from=head_means(enc, _demo())).table
    np.testing.assert_allclose(_arr(heads["z"]).astype(float), np.round(table["effect"].to_numpy().reshape(2, 4), 6))
    assert build_report(tr, enc, sections=sections).count("Plotly.newPlot(") == 5
    # A sentence that is the reference itself is patched from the next reference sentence.
    own = report_sections(trace(enc, source), enc, only=["interventions.patch_profile"])[0].figure.to_dict()
    assert REFERENCE_SOURCES[1] in own["layout"]["title"]["text"]


def _demo():
    from clsviz.experiments.interventions import demo_sample

    return demo_sample()
