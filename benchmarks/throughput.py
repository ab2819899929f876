"""Corpus throughput on equal terms, and how close it comes to the machine's matmul peak.

``extract`` (every layer x cls/mean/max) against sentence-transformers' ``encode`` (one
mean-pooled vector): the same texts, the same model weights, the same batch size, the same
process and torch threads, warm-up excluded for both sides, runs interleaved. Two corpora: the
demo texts (short) and texts of 128-256 tokens built from them, where attention's quadratic cost
shows. With a CUDA device the same runs are repeated there.
"""

from __future__ import annotations

from benchmarks.inputs import demo_texts, long_texts
from benchmarks.results import Collector
from benchmarks.timing import Settings, pair_ratios, side_by_side, timed

__all__ = ["extract_flops", "matmul_gflops", "measure_breakdown", "measure_gpu", "measure_throughput"]

BATCHES = (32, 64)
POOLINGS = ("cls", "mean", "max")


def extract_flops(encoder, texts, batch_size: int) -> float:
    """Floating-point operations of the forward passes ``extract`` makes over ``texts``: the
    matmuls of every block on the padded, length-sorted batches (2 per multiply-add)."""
    cfg = encoder.model.config
    d, layers, inter = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    with encoder.lock:
        lengths = sorted((len(x) for x in encoder.tokenizer(list(texts), truncation=True,
                                                            max_tokens=encoder.info.max_tokens)["input_ids"]),
                         reverse=True)
    flops = 0.0
    for start in range(0, len(lengths), batch_size):
        batch = lengths[start : start + batch_size]
        width = batch[0]
        tokens = len(batch) * width
        per_token = 2 * layers * (4 * d * d + 2 * d * inter)  # q, k, v, output projections + feed-forward
        flops += tokens * per_token + len(batch) * layers * 4 * width * width * d  # + scores and weighted sum
    return flops


def matmul_gflops(device: str = "cpu", n: int | None = None, sync=None) -> float:
    """The best of five float32 n x n matmuls on ``device``, in GFLOP/s (the machine's practical peak)."""
    import torch

    n = n or (8192 if device.startswith("cuda") else 2048)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b), sync) for _ in range(5))
    return 2 * n**3 / best / 1e9


def _corpora(settings: Settings) -> dict[str, list[str]]:
    return {"demo": demo_texts(settings.pick(2000, 128)), "long": long_texts(settings.pick(256, 24))}


def _both_sides():
    """(the bundled Encoder, sentence-transformers on the same weights and device)."""
    from sentence_transformers import SentenceTransformer

    from clsviz import load_encoder
    from clsviz.encoder import bundled_model_path

    enc = load_encoder()
    return enc, SentenceTransformer(str(bundled_model_path()), device=str(enc.device))


def measure_throughput(settings: Settings, out: Collector) -> None:
    """Ratios extract / sentence-transformers at batch 32 and 64 on both corpora, texts/s of each
    side (batch 32, the app's), and extract's share of the measured matmul peak (batch 64)."""
    from clsviz import extract

    enc, st_model = _both_sides()
    for name, texts in _corpora(settings).items():
        for batch in BATCHES:
            pv = {}
            times = side_by_side({
                "extract": lambda pv=pv, texts=texts, batch=batch: pv.update(
                    v=extract(enc, texts, POOLINGS, batch_size=batch)),
                "st": lambda texts=texts, batch=batch: st_model.encode(texts, batch_size=batch,
                                                                       show_progress_bar=False),
            }, settings.runs, warmup=1)
            layers = pv["v"].vectors.shape[1]
            out.add(f"corpus_throughput_ratio_{name}_batch{batch}", pair_ratios(times["st"], times["extract"]),
                    f"{len(texts):,} {name} texts, batch {batch} both sides, {settings.runs} interleaved runs after a "
                    f"warm-up; extract yields {layers} layers x {len(POOLINGS)} poolings, sentence-transformers one "
                    "mean-pooled vector; ratio = their time / ours")
            if batch == 32:
                out.add(f"extract_{name}_texts_per_s", [len(texts) / t for t in times["extract"]],
                        f"{len(texts):,} {name} texts, batch 32")
                out.add(f"sentence_transformers_{name}_texts_per_s", [len(texts) / t for t in times["st"]],
                        f"{len(texts):,} {name} texts, batch 32")
            else:
                _peak_fraction(enc, texts, batch, times["extract"], name, out, "")


def _peak_fraction(enc, texts, batch, seconds, name, out, prefix: str, device: str = "cpu", sync=None) -> None:
    """extract's achieved FLOP/s over ``seconds`` (one per run) / the matmul peak measured after each run."""
    flops = extract_flops(enc, texts, batch)
    peaks = [matmul_gflops(device, sync=sync) for _ in seconds]
    out.add(f"{prefix}matmul_peak_fraction_{name}", [flops / s / 1e9 / p for s, p in zip(seconds, peaks)],
            f"extract's FLOP/s at batch {batch} on the {name} texts / the best of five float32 matmuls "
            f"({'8192' if device.startswith('cuda') else '2048'}^2) measured after each run; "
            f"extract ran at {flops / min(seconds) / 1e9:,.0f} GFLOP/s at best")
    out.add(f"{prefix}matmul_gflops", peaks, f"float32 matmul on {device}, best of five per run")


def _bare_forward(enc, texts, batch_size: int) -> None:
    """The model run on extract's own batches (tokenized, sorted, padded alike), every hidden
    state returned, nothing pooled or copied: the floor under extract and under encode."""
    import torch

    from clsviz.vectors import padded_batches, tokenize_texts

    tok = tokenize_texts(enc, texts, None)
    with torch.inference_mode():
        for _rows, ids, mask, _special, _positions in padded_batches(enc, tok.input_ids, tok.special_masks, batch_size):
            enc.model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)


def measure_breakdown(settings: Settings, out: Collector) -> None:
    """Where the throughput ratio comes from: extract and sentence-transformers' encode, each as a
    ratio to the bare forward pass both of them make (same texts, batch 32, runs interleaved)."""
    from clsviz import extract

    enc, st_model = _both_sides()
    for name, texts in _corpora(settings).items():
        times = side_by_side({
            "forward": lambda texts=texts: _bare_forward(enc, texts, 32),
            "extract": lambda texts=texts: extract(enc, texts, POOLINGS, batch_size=32),
            "st": lambda texts=texts: st_model.encode(texts, batch_size=32, show_progress_bar=False),
        }, settings.runs)
        where = f"{len(texts):,} {name} texts, batch 32, runs interleaved"
        out.add(f"extract_vs_forward_{name}_ratio", pair_ratios(times["extract"], times["forward"]),
                f"extract (every layer x cls/mean/max) / the bare forward pass on its batches; {where}")
        out.add(f"sentence_transformers_vs_forward_{name}_ratio", pair_ratios(times["st"], times["forward"]),
                f"sentence-transformers encode (last layer, mean) / the same bare forward pass; {where}")


def measure_gpu(settings: Settings, out: Collector) -> None:
    """The throughput figures on a CUDA device, beside the CPU ones (skipped, with the reason,
    when there is none)."""
    import torch

    keys = ("gpu_extract_demo_texts_per_s", "gpu_extract_long_texts_per_s", "gpu_matmul_peak_fraction_demo",
            "gpu_matmul_peak_fraction_long", "gpu_matmul_gflops")
    if not torch.cuda.is_available():
        for key in keys:
            out.missing(key, "no CUDA device on this machine (torch.cuda.is_available() is False); "
                             "the same code runs on one when present")
        return
    from clsviz import extract, load_encoder

    enc = load_encoder(device="cuda")
    out.context["gpu"] = torch.cuda.get_device_name(0)
    sync = torch.cuda.synchronize
    for name, texts in _corpora(settings).items():
        times = side_by_side({"extract": lambda texts=texts: extract(enc, texts, POOLINGS, batch_size=64)}, settings.runs,
                             warmup=1, sync=sync)["extract"]
        out.add(f"gpu_extract_{name}_texts_per_s", [len(texts) / t for t in times],
                f"{len(texts):,} {name} texts, batch 64, every layer x cls/mean/max, on {torch.cuda.get_device_name(0)}")
        _peak_fraction(enc, texts, 64, times, name, out, "gpu_", "cuda", sync)
