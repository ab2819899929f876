"""clsviz.mixing: the context-mixing measures checked against blocks recomputed here by hand from
the layers' own parameters (plain torch ops, independent of clsviz.blocks)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from clsviz import faithfulness, load_encoder, mixing, trace
from clsviz.attention import rollout as attention_rollout
from tests.conftest import TINY
from tests.test_attention import tiny_mpnet_dir  # noqa: F401 (fixture)
from tests.test_blocks import (
    KINDS,
    _bert_layer_by_hand,
    _gelu,
    _layer_norm,
    encoders,  # noqa: F401 (fixture: one encoder per family and the bundled one)
)

TEXT = "Why is the [CLS] token always first?"


@pytest.fixture(scope="module")
def bundled_trace(encoder):
    return trace(encoder, TEXT)


@pytest.fixture(scope="module")
def zeroed(encoder, bundled_trace):
    return mixing.measure(encoder, bundled_trace, "value_zeroing")


@pytest.fixture(scope="module")
def long_tiny(tmp_path_factory):
    """A tiny random BERT with 512 positions (the bundled tokenizer): long inputs in seconds."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from clsviz.encoder import bundled_model_path

    folder = tmp_path_factory.mktemp("tiny-bert-512")
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    torch.manual_seed(3)
    BertModel(
        BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=512, **TINY)
    ).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return load_encoder(str(folder))


def _layer64(enc, block):
    """A float64 copy of BertLayer ``block`` (1-based): the shared model itself is not touched."""
    return copy.deepcopy(enc.model.encoder.layer[block - 1]).double()


def _zeroing_by_hand(enc, t, block, j):
    """float64 [T]: 1 - cos between block ``block``'s output and its output with token j's values
    zeroed in every head, from a BertLayer written out by hand."""
    layer = _layer64(enc, block)
    h = torch.as_tensor(t.hidden_states[block - 1], dtype=torch.float64)[None]
    keep = torch.ones(1, t.num_heads, t.seq_len, dtype=torch.float64)
    keep[..., j] = 0.0
    with torch.no_grad():
        clean = _bert_layer_by_hand(layer, h, t.num_heads)[0]
        altered = _bert_layer_by_hand(layer, h, t.num_heads, value_keep=keep)[0]
    cos = (clean * altered).sum(-1) / (clean.norm(dim=-1) * altered.norm(dim=-1))
    return (1.0 - cos.clamp(-1, 1)).numpy()


# --- value zeroing -------------------------------------------------------------------------------


@pytest.mark.parametrize(("block", "j"), [(1, 0), (3, 5), (6, 8)])
def test_value_zeroing_matches_a_block_rerun_by_hand(encoder, bundled_trace, zeroed, block, j):
    want = _zeroing_by_hand(encoder, bundled_trace, block, j)
    got = zeroed.raw[block - 1, :, j]
    # float64 on both sides: even the 1e-8-sized changes agree to many digits.
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-15)
    expected_share = want / zeroed.raw[block - 1].sum(axis=1)
    np.testing.assert_allclose(zeroed.matrix[block - 1, :, j], expected_share, rtol=1e-5, atol=1e-7)


def test_value_zeroing_shows_blocks_that_barely_mix_into_cls(zeroed):
    # What the issue measured on the bundled model: zeroing one value vector changes the [CLS] output
    # of most early blocks by 1 - cos far below 1e-5, below float32 resolution.
    magnitude = zeroed.raw_magnitude()
    assert (magnitude[:5] < 1e-5).sum() >= 2 and magnitude.min() < np.finfo(np.float32).eps
    np.testing.assert_array_equal(zeroed.barely_mixes(), magnitude < mixing.BARELY_MIXES)
    assert magnitude[-1] > 1e-3  # the last block does mix other tokens into [CLS]


def test_value_zeroing_in_chunks_equals_one_pass(encoders):  # noqa: F811
    enc = encoders["bert"]
    t = trace(enc, "the cat chased a dog across the yard")
    whole = mixing.measure(enc, t, "value_zeroing")
    steps = []
    chunked = mixing.measure(enc, t, "value_zeroing", budget=1, progress=lambda d, n, m: steps.append((d, n)))
    np.testing.assert_allclose(chunked.raw, whole.raw, rtol=1e-9, atol=1e-15)
    assert steps[-1] == (t.num_layers * t.seq_len,) * 2  # one rerun per chunk at a one-byte budget
    assert mixing.reruns_per_chunk(512, 384, 12, 1536) < 512  # the bundled model at 512 tokens is chunked


# --- the attention sublayer decomposed (value norm, GlobEnc, ALTI) --------------------------------


def _sublayer_by_hand(enc, t, block):
    """(alpha [H, T, T], f [H, T, D], mid, ffn, out, layer) of a BertLayer, by hand, float64."""
    layer = _layer64(enc, block)
    sa, so = layer.attention.self, layer.attention.output
    h = torch.as_tensor(t.hidden_states[block - 1], dtype=torch.float64)
    heads, hd = t.num_heads, t.hidden_size // t.num_heads
    with torch.no_grad():
        q = (h @ sa.query.weight.T + sa.query.bias).view(-1, heads, hd).transpose(0, 1)
        k = (h @ sa.key.weight.T + sa.key.bias).view(-1, heads, hd).transpose(0, 1)
        v = (h @ sa.value.weight.T + sa.value.bias).view(-1, heads, hd).transpose(0, 1)
        alpha = torch.softmax(q @ k.transpose(-1, -2) / hd**0.5, dim=-1)
        w_o = so.dense.weight.view(-1, heads, hd)  # [D, H, dh]
        f = torch.stack([v[i] @ w_o[:, i, :].T for i in range(heads)])  # [H, T, D]
        attn = torch.einsum("hij,hjd->id", alpha, f) + so.dense.bias
        mid = _layer_norm(attn + h, so.LayerNorm)
        ffn = _gelu(mid @ layer.intermediate.dense.weight.T + layer.intermediate.dense.bias)
        ffn = ffn @ layer.output.dense.weight.T + layer.output.dense.bias
        out = _layer_norm(ffn + mid, layer.output.LayerNorm)
    return alpha, f, mid, ffn, out, layer


@pytest.mark.parametrize("block", [1, 2])
def test_decomposition_sums_back_to_the_block_output(encoders, block):  # noqa: F811
    enc = encoders["bert"]
    t = trace(enc, "the cat chased a dog")
    alpha, f, mid, ffn, out, layer = _sublayer_by_hand(enc, t, block)
    dec = mixing.decompose_block(enc, t, block)
    # ALTI's parts plus the bias are the attention + residual + LayerNorm output.
    np.testing.assert_allclose(dec.parts.sum(axis=1) + dec.bias, mid.numpy(), atol=2e-5)
    # GlobEnc's parts, with what the FFN adds and LN2's bias, are the whole block's output.
    ln2 = layer.output.LayerNorm
    sigma2 = torch.sqrt((ffn + mid).var(dim=-1, unbiased=False) + ln2.eps).numpy()
    np.testing.assert_allclose(dec.ln2_scale, 1.0 / sigma2, rtol=1e-4)
    rest = torch.as_tensor(dec.bias) + ffn
    rest = (ln2.weight * (rest - rest.mean(-1, keepdim=True))).numpy() / sigma2[:, None] + ln2.bias.numpy()
    np.testing.assert_allclose(dec.globenc_parts.sum(axis=1) + rest, out.numpy(), atol=2e-5)
    np.testing.assert_allclose(out.numpy(), t.hidden_states[block], atol=2e-5)
    # The scores read from these parts, by their papers' definitions.
    y = dec.parts.sum(axis=1) + dec.bias
    alti = np.clip(np.abs(y).sum(-1)[:, None] - np.abs(y[:, None, :] - dec.parts).sum(-1), 0.0, None)
    value_norm = np.linalg.norm(torch.einsum("hij,hjd->ijd", alpha, f).numpy(), axis=-1)
    for method, want in (("alti", alti), ("globenc", np.linalg.norm(dec.globenc_parts, axis=-1)),
                         ("value_norm", value_norm)):  # fmt: skip
        got = mixing.measure(enc, t, method).raw[block - 1]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=method)


def test_decomposed_scores_in_chunks_equal_one_pass(encoders):  # noqa: F811
    enc = encoders["electra"]
    t = trace(enc, "why is the token always first")
    for method in ("value_norm", "globenc", "alti"):
        whole = mixing.measure(enc, t, method).raw
        np.testing.assert_allclose(
            mixing.measure(enc, t, method, budget=1).raw, whole, rtol=1e-6, err_msg=method
        )


# --- every method, every family ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_rows_are_non_negative_and_sum_to_one(encoders, kind):  # noqa: F811
    enc = encoders[kind]
    t = trace(enc, "The cat chased the dog across the yard.")
    for method in mixing.METHODS:
        m = mixing.contributions(enc, t, method)
        assert m.shape == (t.num_layers, t.seq_len, t.seq_len) and m.dtype == np.float32, method
        assert np.isfinite(m).all() and (m >= 0).all(), method
        np.testing.assert_allclose(m.sum(axis=-1), 1.0, atol=1e-5, err_msg=method)
        r = mixing.rollout(m)
        assert r.shape == m.shape and (r >= 0).all()
        np.testing.assert_allclose(r.sum(axis=-1), 1.0, atol=1e-4, err_msg=method)


def test_raw_attention_is_the_mean_over_heads_and_its_rollout_the_attention_rollout(encoder, bundled_trace):
    m = mixing.contributions(encoder, bundled_trace, "attention")
    np.testing.assert_allclose(m, bundled_trace.attentions.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(mixing.rollout(m), attention_rollout(bundled_trace.attentions), atol=1e-5)
    # Explicitly: (0.5 A + 0.5 I) chained.
    a = 0.5 * bundled_trace.attentions.mean(axis=1).astype(np.float64) + 0.5 * np.eye(bundled_trace.seq_len)
    np.testing.assert_allclose(
        mixing.rollout(np.asarray(m), "attention")[-1], np.linalg.multi_dot(a[::-1]), atol=1e-5
    )


def test_whole_block_measures_are_chained_as_they_are(encoders):  # noqa: F811
    enc = encoders["roberta"]
    t = trace(enc, "the cat chased a dog")
    m = mixing.contributions(enc, t, "alti")
    assert m.method == "alti"
    chained = np.asarray(m[1], dtype=np.float64) @ np.asarray(m[0], dtype=np.float64)
    np.testing.assert_allclose(mixing.rollout(m)[1], chained, atol=1e-6)
    np.testing.assert_allclose(
        mixing.rollout(np.asarray(m), residual=0.5)[0], 0.5 * m[0] + 0.5 * np.eye(t.seq_len), atol=1e-6
    )


def test_tables_and_top_contributors(encoders):  # noqa: F811
    enc = encoders["distilbert"]
    t = trace(enc, "the cat chased a dog")
    mix = mixing.measure(enc, t, "globenc")
    table = mixing.cls_row_table(mix)
    assert len(table) == t.num_layers * t.seq_len
    np.testing.assert_allclose(
        table["share"].to_numpy().reshape(t.num_layers, -1), mix.matrix[:, t.cls_index], atol=1e-7
    )
    block = mixing.block_table(mix, 2)
    np.testing.assert_allclose(block["raw"].to_numpy().reshape(t.seq_len, -1), mix.raw[1])
    top = mixing.top_contributors(mix, k=2)
    row = mix.rollout()[-1, t.cls_index]
    assert [p for p, _, _ in top] == list(np.argsort(-row)[:2]) and top[0][2] == pytest.approx(row.max())


# --- bad input -------------------------------------------------------------------------------------


def test_a_single_token_sentence_works_for_every_method(encoder):
    t = trace(encoder, "Hi")
    assert t.seq_len == 3
    for method in mixing.METHODS:
        m = mixing.contributions(encoder, t, method)
        np.testing.assert_allclose(m.sum(axis=-1), 1.0, atol=1e-5, err_msg=method)


def test_a_512_token_input_is_measured_in_chunks(encoder, long_tiny):
    text = " ".join(["the cat chased a dog"] * 130)
    t = trace(long_tiny, text)
    assert t.seq_len == 512 and t.truncated
    vz = mixing.measure(long_tiny, t, "value_zeroing", budget=64 * 2**20)  # several reruns per chunk, not all
    assert 1 < mixing.reruns_per_chunk(512, 32, 4, 64, 64 * 2**20) < 512
    np.testing.assert_allclose(vz.raw[1, :, 7], _zeroing_by_hand(long_tiny, t, 2, 7), rtol=1e-6, atol=1e-15)
    np.testing.assert_allclose(vz.matrix.sum(axis=-1), 1.0, atol=1e-5)
    # The bundled model's own limit with a whole-block measure: rows of 512 receiving tokens in chunks.
    real = trace(encoder, text)
    assert real.seq_len == 512
    alti = mixing.contributions(encoder, real, "alti", budget=128 * 2**20)
    np.testing.assert_allclose(alti.sum(axis=-1), 1.0, atol=1e-5)


def test_a_model_without_the_block_structure_gets_a_clear_message(tiny_mpnet_dir):  # noqa: F811
    mpnet = load_encoder(str(tiny_mpnet_dir))
    t = trace(mpnet, "the cat")
    assert mixing.contributions(mpnet, t, "attention").shape == (t.num_layers, t.seq_len, t.seq_len)
    for method in ("value_norm", "globenc", "alti", "value_zeroing"):
        with pytest.raises(mixing.MixingError, match=r"'mpnet'.*bert, roberta"):
            mixing.contributions(mpnet, t, method)


def test_unknown_methods_and_foreign_traces_are_refused(encoders, bundled_trace):  # noqa: F811
    with pytest.raises(
        mixing.MixingError, match="choose one of attention, value_norm, globenc, alti, value_zeroing"
    ):
        mixing.contributions(encoders["bundled"], bundled_trace, "flow")
    with pytest.raises(mixing.MixingError, match="not with"):
        mixing.contributions(encoders["bert"], bundled_trace, "alti")
    with pytest.raises(mixing.MixingError, match=r"\[L, T, T\]"):
        mixing.rollout(np.ones((3, 3)))
    with pytest.raises(mixing.MixingError, match="between 0 and 1"):
        mixing.rollout(np.ones((1, 3, 3)) / 3, residual=2.0)


def test_the_shared_model_is_never_changed(encoder, bundled_trace):
    before = {n: p.detach().clone() for n, p in encoder.model.named_parameters()}
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in encoder.model.modules())
    mixing.measure(encoder, bundled_trace, "value_zeroing")
    mixing.measure(encoder, bundled_trace, "globenc")
    assert not encoder.model.training
    assert hooks == sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in encoder.model.modules())
    for n, p in encoder.model.named_parameters():
        assert p.dtype == torch.float32 and not p.requires_grad and torch.equal(p, before[n]), n


def test_measures_and_attributions_in_threads_leave_concurrent_traces_clean(encoder, bundled_trace, zeroed):
    """Value zeroing (float64 block copies), ALTI and integrated gradients (autograd through the
    blocks) run in threads while other threads trace with the same shared model."""
    from concurrent.futures import ThreadPoolExecutor

    from clsviz.attribution import attribute

    texts = ["The cat chased the dog across the yard.", TEXT]
    clean = {text: trace(encoder, text) for text in texts}
    alone = attribute(encoder, TEXT, other=texts[0], steps=8)

    def work(kind):
        if kind == "value_zeroing":
            return mixing.measure(encoder, bundled_trace, "value_zeroing").raw
        if kind == "alti":
            return mixing.measure(encoder, bundled_trace, "alti").raw
        return attribute(encoder, TEXT, other=texts[0], steps=8).scores

    def tracer(_):
        return [trace(encoder, text) for _ in range(3) for text in texts]

    with ThreadPoolExecutor(max_workers=5) as pool:
        runs = {kind: pool.submit(work, kind) for kind in ("value_zeroing", "alti", "attribution")}
        traces = [pool.submit(tracer, j) for j in range(2)]
        runs, traces = {k: f.result() for k, f in runs.items()}, [f.result() for f in traces]
    np.testing.assert_allclose(runs["value_zeroing"], zeroed.raw, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(runs["alti"], mixing.measure(encoder, bundled_trace, "alti").raw, rtol=1e-9)
    np.testing.assert_allclose(runs["attribution"], alone.scores, atol=1e-6)
    for results in traces:
        for got in results:
            want = clean[got.text]
            np.testing.assert_allclose(got.hidden_states, want.hidden_states, atol=1e-6)
            np.testing.assert_allclose(got.attentions, want.attentions, atol=1e-6)


# --- the report and the command line ---------------------------------------------------------------


def test_the_report_and_inspect_carry_the_mixing_section(encoder, tiny_mpnet_dir, capsys):  # noqa: F811
    from clsviz import cli
    from clsviz.report import report_sections

    text = "The cat chased the dog."
    t = trace(encoder, text)
    sections = {
        s.key: s
        for s in report_sections(t, encoder, only=["mixing.cls_row", "mixing.compare", "attribution.tokens"])
    }
    z = np.asarray(sections["mixing.cls_row"].figure.data[1].z, dtype=np.float64)
    np.testing.assert_allclose(z, mixing.measure(encoder, t, "alti").row(), atol=1e-4)
    assert [tr.y for tr in sections["attribution.tokens"].figure.data] == [("cls pooling", "mean pooling")]
    # The last block token by token, ALTI beside raw attention (mean over heads).
    more = {s.key: s for s in report_sections(t, encoder, only=["mixing.block", "faithfulness.ranking",
                                                                 "faithfulness.curves"])}  # fmt: skip
    left, right = (np.asarray(tr.z, dtype=np.float64) for tr in more["mixing.block"].figure.data)
    np.testing.assert_allclose(left, t.attentions[-1].mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(right, mixing.measure(encoder, t, "alti").matrix[-1], atol=1e-4)
    # The scoreboard of this one sentence: raw attention's AOPC recomputed here from masked reruns,
    # its target the default one on a model without a classifier - the demo probe's logit of the
    # class it picks for the whole sentence - and Samek et al.'s average over k = 0..n.
    ranking = more["faithfulness.ranking"].figure
    names = list(ranking.data[0].y)
    aopc = dict(zip(names, ranking.data[0].x, strict=True))
    assert len(names) == len(faithfulness.MEASURES)
    order = faithfulness.token_ranking(t.attentions[-1].mean(axis=0)[t.cls_index], t.special_mask)
    ids = np.repeat(t.input_ids[None], len(order), axis=0)
    for k in range(len(order)):
        ids[k, order[: k + 1]] = encoder.tokenizer.mask_token_id
    with torch.inference_mode():
        cls = encoder.eager_model(input_ids=torch.as_tensor(ids)).last_hidden_state[:, 0].double().numpy()
    probe = faithfulness.default_probe(encoder)
    whole = probe.decision_function(t.hidden_states[-1, t.cls_index].astype(np.float64)[None])
    if whole.ndim == 1:  # binary: the logit of the picked class is +z or -z
        sign = 1.0 if whole[0] > 0 else -1.0
        full, deleted = sign * whole[0], sign * probe.decision_function(cls)
    else:
        c = int(np.argmax(whole[0]))
        full, deleted = whole[0, c], probe.decision_function(cls)[:, c]
    expected = np.sum(full - deleted) / (len(order) + 1)
    assert aopc[faithfulness.MEASURE_NAMES["attention"]] == pytest.approx(expected, abs=1e-4)
    assert len(more["faithfulness.curves"].figure.data) == len(faithfulness.MEASURES)
    long = trace(encoder, "the cat chased a dog " * 20)
    board = report_sections(long, encoder, only=["faithfulness.ranking"])[0]
    assert board.figure is None and f"{long.seq_len} tokens" in board.note
    mpnet = load_encoder(str(tiny_mpnet_dir))
    skipped = report_sections(trace(mpnet, "the cat"), mpnet, only=["mixing.rollout"])[0]
    assert skipped.figure is None and "'mpnet'" in skipped.note

    assert cli.main(["inspect", text, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "What flows into [CLS]" in out
    top = mixing.top_contributors(mixing.measure(encoder, t, "alti"))
    assert "  ALTI: " + ", ".join(f"{tok} {share:.2f}" for _, tok, share in top) in out.splitlines()
    assert cli.main(["inspect", "the cat", "--model", str(tiny_mpnet_dir), "--quiet"]) == 0
    assert "ALTI: not available" in capsys.readouterr().out
