"""clsviz.blocks: the encoder driven block by block from its weights, checked against the model
itself and against blocks written again here with plain torch ops from the raw parameters."""

from __future__ import annotations

import copy
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from clsviz import load_encoder, trace
from clsviz.blocks import (
    BlockStructureError,
    InterventionError,
    block_weights,
    embed,
    run_block,
    run_stack,
)
from tests.conftest import TINY, TINY_KINDS

TEXTS = ["The cat chased the dog across the yard.", "Why is it first?"]
KINDS = (*TINY_KINDS, "bundled")


@pytest.fixture(scope="module")
def encoders(tiny_model_dirs, encoder):
    """One encoder per family: the tiny random ones and the bundled all-MiniLM-L6-v2."""
    found = {kind: load_encoder(str(tiny_model_dirs[kind])) for kind in TINY_KINDS}
    found["bundled"] = encoder
    return found


def _batch(enc, texts=TEXTS):
    with enc.lock:
        tok = enc.tokenizer(list(texts), padding=True, return_tensors="pt")
    return tok["input_ids"].to(enc.device), tok["attention_mask"].to(enc.device)


def _model_run(enc, ids, mask):
    with torch.inference_mode():
        out = enc.eager_model(
            input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True
        )
    return torch.stack(out.hidden_states), torch.stack(out.attentions)


def _hooks(model) -> dict[str, tuple]:
    return {name: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for name, m in model.named_modules()}


# --- the block written again, by hand, from a BertLayer's raw parameters --------------------


def _layer_norm(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _bert_layer_by_hand(layer, h, num_heads, add_mask=None, value_keep=None, context=None, parts=None):
    """One BertLayer: ``add_mask`` [B|1, H|1, T, T] added to the scores, ``value_keep``
    [B, H, T] multiplies value vectors, ``context(ctx) -> ctx`` edits the per-head context."""
    sa, so, ffn_in, ffn_out = layer.attention.self, layer.attention.output, layer.intermediate, layer.output
    b, t, d = h.shape
    hd = d // num_heads

    def heads(lin):
        return (h @ lin.weight.T + lin.bias).reshape(b, t, num_heads, hd).permute(0, 2, 1, 3)

    q, k, v = heads(sa.query), heads(sa.key), heads(sa.value)
    if value_keep is not None:
        v = v * value_keep[..., None]
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if add_mask is not None:
        scores = scores + add_mask
    probs = torch.exp(scores - scores.amax(-1, keepdim=True))
    probs = probs / probs.sum(-1, keepdim=True)
    ctx = probs @ v
    if parts is not None:
        parts["ctx"] = ctx
    if context is not None:
        ctx = context(ctx)
    attn = ctx.permute(0, 2, 1, 3).reshape(b, t, d) @ so.dense.weight.T + so.dense.bias
    mid = _layer_norm(attn + h, so.LayerNorm)
    ff = _gelu(mid @ ffn_in.dense.weight.T + ffn_in.dense.bias) @ ffn_out.dense.weight.T + ffn_out.dense.bias
    return _layer_norm(ff + mid, ffn_out.LayerNorm)


@pytest.fixture(scope="module")
def bundled_state(encoder):
    """A real text on the bundled model: ids [1, T] and the model's hidden states [L+1, 1, T, D]."""
    ids, mask = _batch(encoder, TEXTS[:1])
    hidden, _ = _model_run(encoder, ids, mask)
    return ids, hidden


def _layer(encoder, block):
    return encoder.eager_model.encoder.layer[block - 1]


# --- the clean run reproduces the model -----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_clean_run_reproduces_the_model_on_a_padded_batch(encoders, kind):
    enc = encoders[kind]
    ids, mask = _batch(enc)
    assert mask[1].sum() < mask[0].sum()  # the batch really is padded
    want_hidden, want_attn = _model_run(enc, ids, mask)
    with torch.inference_mode():
        got = run_stack(enc, ids, attention_mask=mask)
        h = embed(enc, ids, attention_mask=mask)
        probs = []
        for w in block_weights(enc):
            h, parts = run_block(w, h, attention_mask=mask, return_parts=True)
            probs.append(parts.attn_probs)
    assert got.shape == want_hidden.shape == (enc.info.num_layers + 1, 2, ids.shape[1], enc.info.hidden_size)
    for row in range(2):
        real = mask[row].bool()
        torch.testing.assert_close(got[:, row][:, real], want_hidden[:, row][:, real], atol=1e-5, rtol=0)
        # Attention rows of real queries, every key (padding keys get 0 in both).
        torch.testing.assert_close(
            torch.stack(probs)[:, row][:, :, real], want_attn[:, row][:, :, real], atol=1e-5, rtol=0
        )
        assert torch.all(torch.stack(probs)[:, row][..., ~real] == 0)
    # Padding positions too: their queries read the real keys only, in both computations.
    torch.testing.assert_close(got, want_hidden, atol=1e-5, rtol=0)
    # Single unpadded text: the whole tensor matches.
    one = ids[:1, : int(mask[0].sum())]
    with torch.inference_mode():
        torch.testing.assert_close(
            run_stack(enc, one), _model_run(enc, one, torch.ones_like(one))[0], atol=1e-5, rtol=0
        )


def test_token_types_and_position_ids_follow_the_model(encoders):
    enc = encoders["bundled"]
    ids, mask = _batch(enc, TEXTS[:1])
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    positions = torch.arange(ids.shape[1])[None] + 3
    with torch.inference_mode():
        out = enc.eager_model(
            input_ids=ids, token_type_ids=types, position_ids=positions, output_hidden_states=True
        )
        got = run_stack(enc, ids, token_type_ids=types, position_ids=positions)
        plain = run_stack(enc, ids)
    torch.testing.assert_close(got, torch.stack(out.hidden_states), atol=1e-5, rtol=0)
    assert (got[0] - plain[0]).abs().max() > 1e-2
    with pytest.raises(InterventionError, match="no token-type embeddings"):
        embed(encoders["distilbert"], ids, token_type_ids=types)
    with pytest.raises(InterventionError, match="positions"):
        embed(enc, torch.zeros(1, 600, dtype=torch.long))


@pytest.mark.parametrize(
    "family, extra",
    [
        ("bert", dict(hidden_act="relu", layer_norm_eps=1e-5)),
        ("bert", dict(hidden_act="gelu_new", layer_norm_eps=1e-7)),
        ("xlm-roberta", {}),
        ("camembert", {}),
        ("electra", dict(embedding_size=32)),  # no embeddings_project when the sizes agree
    ],
)
def test_other_activations_eps_and_roberta_relatives(tiny_model_dirs, tmp_path, family, extra):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    torch.manual_seed(1)
    roberta_like = family in ("xlm-roberta", "camembert")
    source = tiny_model_dirs["roberta" if roberta_like else "bert"]
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    ids_extra = (
        dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, max_position_embeddings=66)
        if roberta_like
        else {}
    )
    config = AutoConfig.for_model(family, vocab_size=len(tokenizer), **{"max_position_embeddings": 64, **ids_extra},
                                  **TINY, **extra)  # fmt: skip
    AutoModel.from_config(config).save_pretrained(str(tmp_path))
    tokenizer.save_pretrained(str(tmp_path))
    enc = load_encoder(str(tmp_path))
    ids, mask = _batch(enc, ["the cat chased a dog", "why"])
    want, _ = _model_run(enc, ids, mask)
    with torch.inference_mode():
        got = run_stack(enc, ids, attention_mask=mask)
    for row in range(2):
        real = mask[row].bool()
        torch.testing.assert_close(got[:, row][:, real], want[:, row][:, real], atol=1e-5, rtol=0)


# --- precision, and the model left exactly as it was ---------------------------------------


def test_float64_agrees_and_leaves_the_model_untouched(encoder, bundled_state):
    ids, _ = bundled_state
    model = encoder.model
    before = {name: p.detach().clone() for name, p in model.state_dict().items()}
    hooks_before = (_hooks(encoder.model), _hooks(encoder.eager_model))
    with torch.inference_mode():
        f32 = run_stack(encoder, ids)
        f64 = run_stack(encoder, ids, dtype=torch.float64)
    assert f64.dtype == torch.float64 and f32.dtype == torch.float32
    torch.testing.assert_close(f64.float(), f32, atol=1e-5, rtol=1e-5)
    # Independent float64 reference: a private double copy of the model.
    double = copy.deepcopy(encoder.eager_model).double()
    with torch.inference_mode():
        ref = torch.stack(double(input_ids=ids, output_hidden_states=True).hidden_states)
    torch.testing.assert_close(f64, ref, atol=1e-10, rtol=0)
    for name, p in model.state_dict().items():
        assert p.dtype == before[name].dtype and torch.equal(p, before[name]), name
    assert (_hooks(encoder.model), _hooks(encoder.eager_model)) == hooks_before
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training and not encoder.eager_model.training


def test_fresh_model_gets_no_hooks_and_weights_are_views(tiny_model_dirs):
    enc = load_encoder(str(tiny_model_dirs["albert"]))
    ids, mask = _batch(enc)
    x = enc.model.get_input_embeddings()(ids).detach().requires_grad_(True)
    out = run_stack(enc, inputs_embeds=x, attention_mask=mask, dtype=torch.float64,
                    interventions={1: dict(blocked=torch.eye(ids.shape[1], dtype=torch.bool)[None].expand(2, -1, -1),
                                           value_scale=torch.zeros(2, ids.shape[1]), head_scale=torch.zeros(4),
                                           head_bias=torch.ones(4, 8))},
                    replace={1: lambda h: h * 2})  # fmt: skip
    out[-1].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for model in (enc.model, enc.eager_model):
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks
    blocks = block_weights(enc)
    layer = enc.model.encoder.albert_layer_groups[0].albert_layers[0]
    # Views of the parameters (no copies); ALBERT repeats its one shared layer.
    assert blocks[0].q_w.data_ptr() == layer.attention.query.weight.data_ptr()
    assert blocks[1].q_w is blocks[0].q_w and len(blocks) == enc.info.num_layers
    copied = blocks[0].to(dtype=torch.float64)
    assert copied.q_w.dtype == torch.float64 and blocks[0].q_w.dtype == torch.float32
    same = blocks[0].to()
    assert same.o_w.data_ptr() != blocks[0].o_w.data_ptr() and torch.equal(same.o_w, blocks[0].o_w)


# --- each knob against the block by hand ---------------------------------------------------


@pytest.mark.parametrize("block", [1, 4])
def test_knobs_match_the_block_written_by_hand(encoder, bundled_state, block):
    ids, hidden = bundled_state
    h = hidden[block - 1].clone()
    w = block_weights(encoder)[block - 1]
    layer, heads = _layer(encoder, block), encoder.info.num_heads
    t, hd = h.shape[1], w.head_dim
    with torch.inference_mode():
        clean_parts: dict = {}
        clean = _bert_layer_by_hand(layer, h, heads, parts=clean_parts)
        torch.testing.assert_close(run_block(w, h), clean, atol=1e-5, rtol=0)
        torch.testing.assert_close(clean, hidden[block], atol=1e-5, rtol=0)

        # value_scale: key 3's value vector zeroed for every head.
        keep = torch.ones(1, t)
        keep[0, 3] = 0
        want = _bert_layer_by_hand(layer, h, heads, value_keep=keep[:, None, :].expand(1, heads, t))
        got = run_block(w, h, value_scale=keep)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        assert (got - clean).abs().max() > 1e-3
        # ... and per head ([B, H, T]): key 2 zeroed in head 5 only.
        keep_h = torch.ones(1, heads, t)
        keep_h[0, 5, 2] = 0
        torch.testing.assert_close(run_block(w, h, value_scale=keep_h),
                                   _bert_layer_by_hand(layer, h, heads, value_keep=keep_h), atol=1e-5, rtol=0)  # fmt: skip

        # blocked: query 0 may read only itself == an additive mask written here.
        blocked = torch.zeros(1, t, t, dtype=torch.bool)
        blocked[:, 0, 1:] = True
        add = torch.zeros(1, 1, t, t)
        add[..., 0, 1:] = float("-inf")
        got, parts = run_block(w, h, blocked=blocked, return_parts=True)
        torch.testing.assert_close(got, _bert_layer_by_hand(layer, h, heads, add_mask=add), atol=1e-5, rtol=0)
        assert torch.all(parts.attn_probs[0, :, 0, 0] == 1)

        # head_scale 0 for every head: the attention output is just W_O's bias.
        zero = torch.zeros(heads)
        mid = _layer_norm(w.o_b + h, layer.attention.output.LayerNorm)
        ff = _gelu(mid @ layer.intermediate.dense.weight.T + layer.intermediate.dense.bias)
        want = _layer_norm(
            ff @ layer.output.dense.weight.T + layer.output.dense.bias + mid, layer.output.LayerNorm
        )
        got, parts = run_block(w, h, head_scale=zero, return_parts=True)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        torch.testing.assert_close(parts.attn_out, w.o_b.expand_as(h), atol=0, rtol=0)

        # head_bias: mean ablation of head 7 (its context replaced by its mean over tokens).
        mean7 = clean_parts["ctx"][0, 7].mean(0)

        def ablate(ctx):
            ctx = ctx.clone()
            ctx[:, 7] = mean7
            return ctx

        scale = torch.ones(heads)
        scale[7] = 0
        bias = torch.zeros(heads, hd)
        bias[7] = mean7
        got, parts = run_block(w, h, head_scale=scale, head_bias=bias, return_parts=True)
        torch.testing.assert_close(
            got, _bert_layer_by_hand(layer, h, heads, context=ablate), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(parts.context[0, 7], mean7.expand(t, hd), atol=1e-6, rtol=0)


def test_a_query_with_every_key_blocked_reads_itself(encoder, bundled_state):
    ids, hidden = bundled_state
    w, layer = block_weights(encoder)[2], _layer(encoder, 3)
    h, t = hidden[2], hidden.shape[2]
    with torch.inference_mode():
        got, parts = run_block(w, h, blocked=torch.ones(1, t, t, dtype=torch.bool), return_parts=True)
        add = torch.full((t, t), float("-inf")).fill_diagonal_(0)
        want = _bert_layer_by_hand(layer, h, encoder.info.num_heads, add_mask=add)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(
        parts.attn_probs[0], torch.eye(t).expand_as(parts.attn_probs[0]), atol=0, rtol=0
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_replace_and_resume_equal_the_remaining_blocks_by_hand(encoder, bundled_state):
    ids, hidden = bundled_state
    other_ids, _ = _batch(encoder, ["Stock markets fell sharply after the announcement today."])
    other, _ = _model_run(encoder, other_ids, torch.ones_like(other_ids))
    k = 3

    def patch_cls(h):  # [CLS] after block 3 taken from another sentence
        h = h.clone()
        h[:, 0] = other[k, :, 0]
        return h

    with torch.inference_mode():
        got = run_stack(encoder, ids, replace={k: patch_cls})
        h = patch_cls(hidden[k])
        want = [h]
        for block in range(k + 1, encoder.info.num_layers + 1):
            h = _bert_layer_by_hand(_layer(encoder, block), h, encoder.info.num_heads)
            want.append(h)
        resumed = run_stack(encoder, ids, start=k, hidden=patch_cls(hidden[k]))
    torch.testing.assert_close(got[:k], hidden[:k], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[k:], torch.stack(want), atol=1e-5, rtol=0)
    assert (got[-1] - hidden[-1]).abs().max() > 1e-3
    # Resuming: rows before `start` are NaN (not computed), the rest equal the replace run.
    assert torch.isnan(resumed[:k]).all()
    torch.testing.assert_close(resumed[k:], got[k:], atol=1e-6, rtol=0)


def test_cls_cut_off_from_every_token_equals_cls_alone(encoder, bundled_state):
    ids, hidden = bundled_state
    t = ids.shape[1]
    blocked = torch.zeros(1, t, t, dtype=torch.bool)
    blocked[:, 0, 1:] = True
    plan = {block: dict(blocked=blocked) for block in range(1, encoder.info.num_layers + 1)}
    with torch.inference_mode():
        cut = run_stack(encoder, ids, interventions=plan)
        alone, _ = _model_run(encoder, ids[:, :1], torch.ones_like(ids[:, :1]))
    torch.testing.assert_close(cut[:, 0, 0], alone[:, 0, 0], atol=1e-4, rtol=0)
    assert (hidden[-1, 0, 0] - alone[-1, 0, 0]).abs().max() > 0.1  # it does read the others normally


# --- gradients -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_wrt_inputs_embeds_matches_the_model(encoders, kind):
    enc = encoders[kind]
    ids, mask = _batch(enc)
    words = enc.model.get_input_embeddings()(ids).detach()
    # A fixed random direction, not a plain sum: a random-init final LayerNorm (weight 1, bias 0)
    # makes the sum over D identically 0, so its gradient would be 0 in both runs.
    direction = torch.randn(enc.info.hidden_size, generator=torch.Generator().manual_seed(0))
    ours = words.clone().requires_grad_(True)
    (run_stack(enc, inputs_embeds=ours, attention_mask=mask)[-1][:, 0] @ direction).sum().backward()
    theirs = words.clone().requires_grad_(True)
    (
        enc.eager_model(inputs_embeds=theirs, attention_mask=mask).last_hidden_state[:, 0] @ direction
    ).sum().backward()
    scale = theirs.grad.abs().max()
    assert scale > 0
    torch.testing.assert_close(ours.grad / scale, theirs.grad / scale, atol=1e-5, rtol=0)
    assert not any(p.requires_grad or p.grad is not None for p in enc.model.parameters())


# --- threads -------------------------------------------------------------------------------


def test_interventions_in_threads_leave_concurrent_traces_clean(encoder):
    texts = ["The cat chased the dog across the yard.", "Why is the [CLS] token always first?"]
    clean = {text: trace(encoder, text) for text in texts}
    ids, mask = _batch(encoder, texts)
    t, heads = ids.shape[1], encoder.info.num_heads
    blocked = torch.zeros(2, t, t, dtype=torch.bool)
    blocked[:, 0, 1:] = True
    plans = [
        {2: dict(blocked=blocked)},
        {1: dict(value_scale=torch.zeros(2, t)), 5: dict(head_scale=torch.zeros(heads))},
        {3: dict(head_scale=torch.zeros(2, heads), head_bias=torch.ones(heads, 32))},
        {6: dict(value_scale=torch.rand(2, heads, t, generator=torch.Generator().manual_seed(0)))},
    ]
    with torch.inference_mode():
        alone = [run_stack(encoder, ids, attention_mask=mask, interventions=p) for p in plans]

    def intervene(i):
        with torch.inference_mode():
            return [run_stack(encoder, ids, attention_mask=mask, interventions=plans[i]) for _ in range(5)]

    def tracer(_):
        return [trace(encoder, text) for _ in range(4) for text in texts]

    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = [pool.submit(intervene, i) for i in range(4)]
        traces = [pool.submit(tracer, j) for j in range(2)]
        runs, traces = [f.result() for f in runs], [f.result() for f in traces]
    for i, results in enumerate(runs):
        for got in results:
            torch.testing.assert_close(got, alone[i], atol=1e-6, rtol=0)
    for results in traces:
        for got in results:
            want = clean[got.text]
            np.testing.assert_allclose(got.hidden_states, want.hidden_states, atol=1e-6)
            np.testing.assert_allclose(got.attentions, want.attentions, atol=1e-6)


# --- what is refused, with a message --------------------------------------------------------


def _saved(tmp_path, tiny_model_dirs, model):
    from transformers import AutoTokenizer

    model.save_pretrained(str(tmp_path))
    AutoTokenizer.from_pretrained(str(tiny_model_dirs["bert"])).save_pretrained(str(tmp_path))
    return load_encoder(str(tmp_path))


def test_unsupported_architectures_are_refused_by_name(tiny_model_dirs, tmp_path):
    from transformers import AlbertConfig, AlbertModel, MPNetConfig, MPNetModel

    vocab = 30522
    mpnet = _saved(tmp_path / "mpnet", tiny_model_dirs, MPNetModel(MPNetConfig(vocab_size=vocab, **TINY)))
    with pytest.raises(BlockStructureError, match="'mpnet' model") as err:
        run_stack(mpnet, torch.tensor([[101, 102]]))
    assert isinstance(err.value, ValueError)
    assert "bert" in str(err.value) and "distilbert" in str(err.value) and "albert" in str(err.value)
    albert = _saved(tmp_path / "albert", tiny_model_dirs,
                    AlbertModel(AlbertConfig(vocab_size=vocab, embedding_size=16, inner_group_num=2, **TINY)))  # fmt: skip
    with pytest.raises(BlockStructureError, match="inner_group_num=2"):
        block_weights(albert)


def test_bad_interventions_say_what_is_allowed(encoder, bundled_state):
    ids, hidden = bundled_state
    w, t, heads = block_weights(encoder)[0], ids.shape[1], encoder.info.num_heads
    layers = encoder.info.num_layers
    with pytest.raises(InterventionError, match=r"value_scale.*\[B, T\] or \[B, H, T\]"):
        run_block(w, hidden[0], value_scale=torch.ones(t + 1))
    with pytest.raises(InterventionError, match="blocked"):
        run_block(w, hidden[0], blocked=torch.zeros(t, t + 1, dtype=torch.bool))
    with pytest.raises(InterventionError, match="head_scale"):
        run_block(w, hidden[0], head_scale=torch.ones(heads + 1))
    with pytest.raises(InterventionError, match=rf"blocks are numbered 1\.\.{layers}"):
        run_stack(encoder, ids, interventions={0: dict(head_scale=torch.ones(heads))})
    with pytest.raises(InterventionError, match="attention_mask"):
        run_stack(encoder, ids, interventions={2: dict(attention_mask=torch.ones(1, t))})
    with pytest.raises(InterventionError, match="needs hidden"):
        run_stack(encoder, ids, start=2)
    with pytest.raises(InterventionError, match="replace"):
        run_stack(encoder, ids, start=2, hidden=hidden[2], replace={1: lambda h: h})
    with pytest.raises(InterventionError, match="must return a tensor of shape"):
        run_stack(encoder, ids, replace={2: lambda h: h[:, :1]})
    # [B, H, dh] and [H, T, dh] cannot be told apart when B == H == T: ask for the 4-D form.
    square = torch.zeros(heads, heads, w.head_dim)
    with pytest.raises(InterventionError, match=r"\[B, H, T, dh\]"):
        run_block(w, torch.zeros(heads, heads, w.q_w.shape[1]), head_bias=square)
