"""The pretraining loop: :func:`pretrain` trains a small BERT from scratch on running text and
watches it at checkpoints (see :mod:`clsviz.lab`).

The loop runs through Hugging Face ``accelerate``: on a CPU as plain PyTorch, on CUDA with mixed
precision (bf16 where the card has it, else fp16), and across several devices when started with
``accelerate launch -m clsviz pretrain ...`` (each process draws its own pairs; the gradients are
averaged; the first process measures the checkpoints and saves the model).
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from transformers import DataCollatorForLanguageModeling, get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

from ..artifacts import atomic_folder
from ..corpus import Corpus
from ..metrics import bootstrap_interval
from ..progress import check_cancel
from .config import (
    DEFAULT_CHECKPOINTS,
    DEFAULT_STEPS,
    LabConfig,
    check_objective,
    check_settings,
    check_summary,
    check_whole,
    variant_name,
)
from .data import PairSampler, check_running_text, documents, split_documents, train_tokenizer
from .measures import cka_rows, measure_checkpoint, probe_set
from .model import PretrainingLosses, batch_outputs, build_model
from .reference import parse_variant
from .run import METRIC_COLUMNS, PretrainRun, lab_dir

__all__ = ["check_new_folder", "checkpoint_steps", "pretrain", "pretrain_set"]

_HELDOUT_PAIRS = 256


def checkpoint_steps(steps: int, checkpoints: int) -> list[int]:
    """The steps measured: ``checkpoints`` evenly spaced points from step 0 to the last step (the
    last step only for 1, none for 0)."""
    if checkpoints <= 0:
        return []
    if checkpoints == 1:
        return [int(steps)]
    return sorted({round(steps * i / (checkpoints - 1)) for i in range(checkpoints)})


def check_new_folder(path) -> Path:
    """``path`` as a Path if a new model folder can be made there, else ``FileExistsError`` /
    ``FileNotFoundError`` saying what to change (nothing is ever overwritten). Checked before a run
    starts, so a run does not train for nothing; the folder is written through
    :func:`clsviz.artifacts.atomic_folder` when the run completes."""
    path = Path(path).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"'{path}' already exists and is not an empty folder; choose another (nothing is overwritten).")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"The folder '{path.parent}' does not exist; create it or choose another place for '{path.name}'.")
    return path


def _accelerator(device: str | None):
    cuda = torch.cuda.is_available() and device != "cpu"
    precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
    return Accelerator(cpu=not cuda, mixed_precision=precision)


def _optimizer(model, cfg: LabConfig, steps: int):
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    rest = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=cfg.learning_rate
    )
    return optimizer, get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup * steps), steps)


class _Batches:
    """Tokenized, masked batches of sentence pairs (transformers' masked-LM collator)."""

    def __init__(self, tokenizer, cfg: LabConfig, objective: str | None, seed: int, device):
        self.tokenizer, self.objective, self.device, self.max_tokens = tokenizer, objective, device, cfg.max_tokens
        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg.mlm_probability, seed=seed)
        # The masks' own generator, made here: given only the seed, the collator refuses to make it in a
        # process that is not the main one unless a DataLoader started it (the app's job worker is such one).
        self.collator.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, pairs) -> dict:
        a, b, labels = zip(*pairs)
        enc = self.tokenizer(list(a), list(b), truncation="longest_first", max_length=self.max_tokens,
                             return_special_tokens_mask=True)  # fmt: skip
        keys = ("input_ids", "token_type_ids", "special_tokens_mask")
        features = [{k: enc[k][i] for k in keys} for i in range(len(a))]
        if self.objective is not None:
            for f, label in zip(features, labels):
                f["next_sentence_label"] = int(label)
        batch = self.collator(features)
        batch.pop("special_tokens_mask", None)
        return {k: v.to(self.device) for k, v in batch.items()}


def _heldout_rows(model, batches: list[dict], run, step: int, seed: int) -> list[dict]:
    """``heldout_mlm_loss`` and the held-out sentence accuracy, with 95% bootstrap intervals over pairs."""
    if not batches:
        return []
    loss_sum, count, right = [], [], []
    model.eval()
    with torch.no_grad():
        for batch in batches:
            out = batch_outputs(model, run.summary, run.objective, **batch)
            n = batch["input_ids"].shape[0]
            loss_sum.append(torch.zeros(n, device=out["mlm_loss"].device).index_add_(0, out["mlm_row"], out["mlm_loss"]))
            count.append(torch.bincount(out["mlm_row"], minlength=n))
            if run.objective is not None:
                right.append(out["sentence_logits"].argmax(dim=-1) == batch["next_sentence_label"])
    model.train()
    sums, counts = torch.cat(loss_sum).cpu().double().numpy(), torch.cat(count).cpu().double().numpy()

    def ratio(s, c):
        return s.sum() / max(c.sum(), 1.0)

    value, low, high = bootstrap_interval(ratio, sums, counts, seed=seed)
    rows = [dict(step=step, metric="heldout_mlm_loss", value=value, low=low, high=high)]
    if right:
        hits = torch.cat(right).cpu().double().numpy()
        value, low, high = bootstrap_interval(np.mean, hits, seed=seed)
        rows.append(dict(step=step, metric=f"heldout_{run.objective}_accuracy", value=value, low=low, high=high))
    return rows


class _Run:
    """The settings of one call, checked."""

    def __init__(self, texts, summary, objective, config, steps, seed, checkpoints, out, corpus_name):
        self.summary = check_summary(summary)
        self.objective = check_objective(objective)
        self.cfg, self.steps, self.seed, self.checkpoints = check_settings(config, steps, seed, checkpoints)
        self.variant = variant_name(self.summary, self.objective)
        if out is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            out = lab_dir() / f"{self.variant.replace('+', '-')}-seed{self.seed}-{stamp}"
            out.parent.mkdir(parents=True, exist_ok=True)
        self.folder = check_new_folder(out)
        self.corpus = corpus_name or (texts.name if isinstance(texts, Corpus) else f"{len(texts)} texts")

    def layout(self, seconds: float, device: str, probe, messages) -> dict:
        return {
            "summary": self.summary,
            "sentence_objective": self.objective,
            "variant": self.variant,
            "corpus": self.corpus,
            "steps": self.steps,
            "seed": self.seed,
            "checkpoints": self.checkpoints,
            "config": self.cfg.to_dict(),
            "probe_set": None if probe is None else {"name": probe.name, "label": probe.label, "texts": len(probe.texts)},
            "tokenizer": f"WordPiece, {self.cfg.vocab_size} pieces, trained on the corpus (bundled model's normaliser)",
            "seconds": round(seconds, 1),
            "device": device,
            "messages": list(messages),
        }


def _prepare_data(texts, run: _Run):
    docs = documents(texts)
    check_running_text(docs)  # before the tokenizer is trained: bad text is refused at once
    train_docs, held_docs = split_documents(docs)
    tokenizer = train_tokenizer(train_docs, run.cfg.vocab_size, run.summary, run.cfg.max_tokens)
    budget = run.cfg.max_tokens - tokenizer.num_special_tokens_to_add(pair=True)

    def lengths(ds):
        flat = [s for d in ds for s in d]
        counts = iter(len(ids) for ids in tokenizer(flat, add_special_tokens=False, verbose=False)["input_ids"]) if flat else iter(())
        return [[next(counts) for _ in d] for d in ds]

    rng = np.random.default_rng(run.seed)
    sampler = PairSampler(train_docs, lengths(train_docs), budget, run.objective, rng)
    messages = []
    held_pairs = []
    if any(len(d) >= 2 for d in held_docs):
        held = PairSampler(held_docs, lengths(held_docs), budget, run.objective, np.random.default_rng(run.seed + 1))
        held_pairs = held.draws(_HELDOUT_PAIRS)
    else:
        messages.append("The texts are too short to hold out documents, so no held-out losses are recorded.")
    return tokenizer, sampler, held_pairs, messages


def _log_rows(window: dict, step: int, objective: str | None) -> list[dict]:
    rows = [dict(step=step, metric="mlm_loss", value=float(np.mean(window["mlm_loss"])))]
    rows.append(dict(step=step, metric="mlm_accuracy", value=sum(window["mlm_correct"]) / max(1, sum(window["mlm_count"]))))
    if objective is not None:
        rows.append(dict(step=step, metric=f"{objective}_loss", value=float(np.mean(window["sentence_loss"]))))
        rows.append(dict(step=step, metric=f"{objective}_accuracy",
                         value=sum(window["sentence_correct"]) / max(1, sum(window["sentence_count"]))))  # fmt: skip
    return rows


def _message(step: int, steps: int, window: dict, objective: str | None) -> str:
    text = f"step {step}/{steps} · MLM loss {np.mean(window['mlm_loss']):.2f}"
    if objective is not None and window["sentence_count"]:
        text += f" · {objective.upper()} accuracy {sum(window['sentence_correct']) / sum(window['sentence_count']):.0%}"
    return text


def pretrain(texts, summary="first", sentence_objective="nsp", config=None, steps: int = DEFAULT_STEPS, seed: int = 0,
             out=None, checkpoints: int = DEFAULT_CHECKPOINTS, progress=None, cancel=None, *, heldout: Corpus | None = None,
             probe_label: str = "topic", log_every: int | None = None, corpus_name: str | None = None,
             device: str | None = None, threads: int | None = None) -> PretrainRun:  # fmt: skip
    """Pretrain a small BERT from scratch on ``texts`` and watch it at ``checkpoints`` points.

    texts : running text - a list of strings (``""`` between documents) or a Corpus (see
        :func:`clsviz.lab.data.documents`); sentence pairs come from neighbouring sentences
    summary : ``"first"``, ``"last"`` or ``"none"`` (:data:`clsviz.lab.config.Summary`)
    sentence_objective : ``"nsp"``, ``"sop"`` or None; masked language modelling is always on
    config : a dict (or :class:`~clsviz.lab.config.LabConfig`) with ``layers``, ``hidden``, ``heads``,
        ``intermediate``, ``max_tokens`` and optionally the training settings
    steps, seed : optimiser steps (batches of ``config.batch_size`` pairs) and the random seed
    out : the folder the model is saved to (new, or empty); default a new folder in :func:`lab_dir`
    checkpoints : measurement points from step 0 to the last step (0: none)
    progress, cancel : ``progress(done, total, message)`` after each step; a set ``cancel`` event
        stops the run (:class:`clsviz.progress.Cancelled`) and nothing is saved
    heldout, probe_label : the labelled texts the probes read (default: the demo corpus, ``topic``)
    log_every : steps between two points of the loss curves (default: about 100 points)
    device : ``"cpu"`` to stay off a GPU (default: CUDA when present)
    threads : CPU threads torch uses during the run (process-wide, restored afterwards; default:
        unchanged). On a busy machine 1 thread can be several times faster than 2.

    Returns a :class:`~clsviz.lab.run.PretrainRun` (``.metrics``, ``.folder``, ...). The folder is
    written in one step when the run completes (a cancelled or killed run leaves none).
    """
    run = _Run(texts, summary, sentence_objective, config, steps, seed, checkpoints, out, corpus_name)
    log_every = check_whole("log_every", log_every, 1, run.steps) if log_every is not None else max(1, round(run.steps / 100))
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_whole("threads", threads, 1, 1024))
    try:
        return _pretrain(texts, run, log_every, progress, cancel, heldout, probe_label, device)
    finally:
        torch.set_num_threads(before)


def _pretrain(texts, run: _Run, log_every: int, progress, cancel, heldout, probe_label, device) -> PretrainRun:
    start = time.perf_counter()
    tokenizer, sampler, held_pairs, messages = _prepare_data(texts, run)
    probe = probe_set(heldout, probe_label, seed=run.seed) if run.checkpoints else None
    accelerator = _accelerator(device)
    sampler.rng = np.random.default_rng([run.seed, accelerator.process_index])
    model = build_model(run.cfg, tokenizer, run.objective, run.seed)
    optimizer, scheduler = _optimizer(model, run.cfg, run.steps)
    losses, optimizer = accelerator.prepare(PretrainingLosses(model, run.summary, run.objective), optimizer)
    batches = _Batches(tokenizer, run.cfg, run.objective, run.seed, accelerator.device)
    held_batches = [batches(held_pairs[i : i + 64]) for i in range(0, len(held_pairs), 64)]
    marks = checkpoint_steps(run.steps, run.checkpoints)
    rows: list[dict] = []
    states: dict[int, np.ndarray] = {}

    def measure(step: int) -> None:
        if not accelerator.is_main_process:
            return
        hf = accelerator.unwrap_model(losses).model
        if progress is not None:
            progress(step, run.steps, f"measuring checkpoint {marks.index(step) + 1}/{len(marks)} (step {step})")
        point = measure_checkpoint(hf.bert, tokenizer, run.summary, probe, step, run.seed, f"lab {run.variant}")
        rows.extend(point.rows)
        states[step] = point.tokens
        rows.extend(_heldout_rows(hf, held_batches, run, step, run.seed))

    if 0 in marks:
        measure(0)
    window: dict[str, list] = defaultdict(list)
    losses.train()
    for step in range(1, run.steps + 1):
        check_cancel(cancel, "The pretraining run")
        out = losses(**batches(sampler.draws(run.cfg.batch_size)))
        accelerator.backward(out["loss"])
        accelerator.clip_grad_norm_(losses.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        for key, value in out.items():
            window[key].append(float(value.detach()))
        if step % log_every == 0 or step == run.steps:
            rows.extend(_log_rows(window, step, run.objective))
            if progress is not None:
                progress(step, run.steps, _message(step, run.steps, window, run.objective))
            window = defaultdict(list)
        if step in marks:
            measure(step)
    rows.extend(cka_rows(states))
    metrics = pd.DataFrame(rows).reindex(columns=METRIC_COLUMNS)
    layout = run.layout(time.perf_counter() - start, str(accelerator.device), probe, messages)
    if accelerator.is_main_process:
        _save(accelerator.unwrap_model(losses).model, tokenizer, metrics, layout, run, progress, cancel)
    accelerator.wait_for_everyone()
    return PretrainRun(metrics=metrics, folder=run.folder, layout=layout)


def _save(model, tokenizer, metrics: pd.DataFrame, layout: dict, run: _Run, progress, cancel) -> None:
    """Write the model, tokenizer, metrics and run note into ``run.folder`` in one step."""
    hf_logging.disable_progress_bar()
    model.config.clsviz_pretraining = {k: layout[k] for k in ("summary", "sentence_objective", "corpus", "steps", "seed")}
    with atomic_folder(run.folder) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        metrics.to_csv(tmp / "metrics.csv", index=False)
        (tmp / "lab_run.json").write_text(json.dumps(layout, indent=1), encoding="utf-8")
        if progress is not None:
            progress(run.steps, run.steps, "saving the model")
        check_cancel(cancel, "The pretraining run")


def pretrain_set(texts, variants: Sequence[str], out, *, steps: int, checkpoints: int, config=None, seed: int = 0,
                 corpus_name: str | None = None, progress=None, cancel=None, **options) -> list[PretrainRun]:
    """:func:`~clsviz.lab.training.pretrain` each of ``variants`` (``"first+nsp"``, ...) in turn
    into ``out/<summary>-<objective>`` with the same settings; ``progress`` messages start with
    ``"[i/n] variant:"`` and the fraction counts the whole set. ``options`` go to ``pretrain``."""
    parsed = [parse_variant(v) for v in variants]
    if not parsed:
        raise ValueError("No variants to pretrain: name at least one, e.g. 'first+nsp'.")
    check_settings(config, steps, seed, checkpoints)  # refused before the set's folder is made
    check_running_text(documents(texts))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for i, (name, (summary, objective)) in enumerate(zip(variants, parsed)):

        def report(done, total, message="", i=i, name=name):
            if progress is not None:
                progress(i * total + done, len(parsed) * total, f"[{i + 1}/{len(parsed)}] {name}: {message}")

        runs.append(pretrain(
            texts, summary=summary, sentence_objective=objective, config=config, steps=steps, seed=seed,
            out=out / name.replace("+", "-"), checkpoints=checkpoints, progress=report, cancel=cancel,
            corpus_name=corpus_name, **options,
        ))  # fmt: skip
    return runs
