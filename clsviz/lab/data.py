"""From running text to training examples: documents of sentences, the tokenizer with the variant's
layout, and sentence pairs for the sentence objective.

* :func:`documents` - running text (a list of strings, ``""`` between documents, or a Corpus) as
  documents of sentences; consecutive texts are neighbours, and a text with several sentences
  gives several
* :func:`split_documents` - training documents and held-out documents (for held-out losses)
* :func:`train_tokenizer` - a WordPiece vocabulary trained on the corpus with the bundled model's
  normaliser and pre-tokeniser (lower case, BERT's word splitting), saved with the model, and the
  variant's layout of special tokens (:func:`layout_template`)
* :class:`PairSampler` - segment pairs (A, B, label) as BERT builds them: A and B are runs of
  consecutive sentences; NSP swaps B for a run of another document half of the time (label 1),
  SOP swaps A and B half of the time (label 1); without a sentence objective B always follows A

Why a vocabulary trained here and not the bundled model's: a 30,522-piece vocabulary would be most
of a small model's weights (30,522 x 128 embeddings against about 0.8 M in four blocks) and most of
its time (the masked-LM softmax); 8,000 pieces fitted to the corpus cost a quarter and split its
words less. The bundled vocabulary's normaliser and word splitting are kept, so text is read the
same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..corpus import Corpus
from ..sources import bundled_model_path

__all__ = [
    "LabDataError",
    "PairSampler",
    "check_running_text",
    "documents",
    "layout_template",
    "split_documents",
    "split_sentences",
    "train_tokenizer",
]

# A sentence ends at . ! or ? (and any closing quotes or brackets) before white space and a
# capital letter, a digit or an opening quote.
_END = re.compile(r"(?<=[.!?])([\"'\u2019\u201d)\]]*)\s+(?=[\"'\u2018\u201c(\[]?[A-Z0-9])")
# Special-token strings typed as text: the tokenizer reads them as the special tokens themselves.
_SPECIAL_STRINGS = re.compile(r"\[(?:CLS|SEP|MASK|PAD|UNK)\]")
_ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Col|Capt|Gen|Lt|Sgt|Messrs|Esq|Rev|Hon|Prof|No|vs|etc)|\b[A-Z])\.$")


class LabDataError(ValueError):
    """The texts cannot be used for pretraining as given; the message says what is needed."""


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (a rule-based splitter: abbreviations such as "Mr." and initials
    do not end a sentence)."""
    pieces, start = [], 0
    for match in _END.finditer(text):
        end = match.end(1)
        if _ABBREVIATION.search(text[start:end].rstrip("\"'\u2019\u201d)]")):
            continue
        pieces.append(text[start:end].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def documents(texts) -> list[list[str]]:
    """Documents of sentences from running text.

    ``texts``: a list of strings, read in order as running text, where an empty (or blank) string
    starts a new document; or a :class:`~clsviz.corpus.Corpus`, read the same way, whose label
    column ``document`` (when it has one) starts a new document wherever its value changes.
    """
    if isinstance(texts, Corpus):
        column = texts.labels.get("document")
        items: list[str] = []
        for i, text in enumerate(texts.texts):
            if column is not None and i and column[i] != column[i - 1]:
                items.append("")
            items.append(text)
        texts = items
    if isinstance(texts, str):
        raise LabDataError("texts must be a list of strings (or a clsviz Corpus), not one string: wrap it in a list.")
    docs: list[list[str]] = [[]]
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise LabDataError(f"texts[{i}] is a {type(text).__name__}; every text must be a string.")
        if not text.strip():
            if docs[-1]:
                docs.append([])
            continue
        docs[-1].extend(split_sentences(" ".join(text.split())))
    return [d for d in docs if d]


PAIRS_NEEDED = (
    "Pretraining needs running text: at least one document with two or more consecutive sentences "
    "(sentence pairs come from neighbours). Give paragraphs or consecutive sentences, not single words."
)


def check_running_text(docs: list[list[str]]) -> None:
    """:class:`LabDataError` unless ``docs`` (from :func:`documents`) can be pretrained on: a word
    that is not a special-token string, and a document of two or more sentences. Checked before
    the tokenizer is trained, so bad text is refused at once."""
    if not docs:
        raise LabDataError("No text to pretrain on: every text is empty.")
    if not any(re.search(r"\w", _SPECIAL_STRINGS.sub(" ", s)) for d in docs for s in d):
        raise LabDataError("The texts hold no words, only special-token strings such as [CLS], [SEP] and [MASK] (or "
                           "punctuation): there is nothing to mask and predict. Give running text.")
    if not any(len(d) >= 2 for d in docs):
        raise LabDataError(PAIRS_NEEDED)


def split_documents(docs: list[list[str]], share: float = 0.1) -> tuple[list[list[str]], list[list[str]]]:
    """(training documents, held-out documents): every ``1/share``-th document is held out when
    there are at least ``2/share`` of them; otherwise the last ``share`` of each document's sentences
    (at least 2) is, from documents of at least 6 sentences."""
    every = max(2, round(1 / share))
    if len(docs) >= 2 * every:
        train = [d for i, d in enumerate(docs) if i % every != every - 1]
        held = [d for i, d in enumerate(docs) if i % every == every - 1]
        return train, held
    train, held = [], []
    for d in docs:
        k = max(2, round(len(d) * share)) if len(d) >= 6 else 0
        train.append(d[: len(d) - k])
        if k:
            held.append(d[len(d) - k :])
    return train, held


def layout_template(summary: str) -> tuple[str, str]:
    """(single, pair) templates of the ``tokenizers`` post-processor for a summary layout."""
    if summary == "first":
        return "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1"
    if summary == "last":
        return "$A [SEP] [CLS]", "$A [SEP] $B:1 [SEP]:1 [CLS]:1"
    return "$A [SEP]", "$A [SEP] $B:1 [SEP]:1"


# Trained vocabularies of this process (the last few), by (corpus digest, size): the variants of a
# set train on the same corpus, and training a vocabulary takes most of a run's set-up time.
_VOCABULARIES: dict[tuple, str] = {}


def _digest(sentences: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for sentence in sentences:
        h.update(sentence.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()


def train_tokenizer(docs: Sequence[Sequence[str]], vocab_size: int, summary: str, max_tokens: int):
    """A WordPiece tokenizer trained on the sentences of ``docs`` (see the module note), with the
    layout of ``summary`` and ``max_tokens`` as its limit. Deterministic for the same input (a
    vocabulary trained on the same sentences before, in this process, is reused)."""
    # Loaded when a tokenizer is trained: importing clsviz.lab (the app's model list, the command
    # line's --help, the analysis registry) stays free of transformers.
    from tokenizers import Tokenizer, processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast


    sentences = [s for d in docs for s in d]
    key = (_digest(sentences), int(vocab_size))
    if key not in _VOCABULARIES:
        base = AutoTokenizer.from_pretrained(str(bundled_model_path()), trust_remote_code=False)
        trained = base.train_new_from_iterator(sentences, vocab_size=int(vocab_size), show_progress=False)
        while len(_VOCABULARIES) >= 4:
            _VOCABULARIES.pop(next(iter(_VOCABULARIES)))
        _VOCABULARIES[key] = trained.backend_tokenizer.to_str()
    backend = Tokenizer.from_str(_VOCABULARIES[key])
    backend.no_truncation()
    backend.no_padding()
    single, pair = layout_template(summary)
    specials = [(t, backend.token_to_id(t)) for t in ("[CLS]", "[SEP]") if t in single + pair]
    backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        unk_token="[UNK]",
        model_max_length=int(max_tokens),
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


@dataclass
class PairSampler:
    """Draws segment pairs from documents (see the module note).

    ``lengths[d][i]``: tokens of sentence ``i`` of document ``d``; ``budget``: tokens A and B may
    take together (the limit less the special tokens). :meth:`draw` returns ``(a, b, label)``
    strings and int labels (0: B follows A in order; 1: B is random (NSP) or the two are swapped
    (SOP); -1 without a sentence objective).
    """

    docs: list[list[str]]
    lengths: list[list[int]]
    budget: int
    objective: str | None
    rng: np.random.Generator

    def __post_init__(self) -> None:
        self._starts = [d for d, doc in enumerate(self.docs) if len(doc) >= 2]
        if not self._starts:
            raise LabDataError(PAIRS_NEEDED)
        weights = np.array([len(self.docs[d]) - 1 for d in self._starts], dtype=np.float64)
        self._weights = weights / weights.sum()

    def _run(self, d: int, start: int, budget: int, at_least: int = 1) -> list[int]:
        """Indices of consecutive sentences of document ``d`` from ``start`` until ``budget`` tokens."""
        out, total = [], 0
        for i in range(start, len(self.docs[d])):
            if len(out) >= at_least and total + self.lengths[d][i] > budget:
                break
            out.append(i)
            total += self.lengths[d][i]
        return out

    def _random_run(self, avoid: int, avoid_span: range, budget: int) -> str:
        others = [d for d in range(len(self.docs)) if d != avoid]
        if others:
            d = int(others[self.rng.integers(len(others))])
            start = int(self.rng.integers(len(self.docs[d])))
        else:  # one document: a run that does not touch A's and B's sentences
            d = avoid
            outside = [i for i in range(len(self.docs[d])) if i not in avoid_span]
            start = int(outside[self.rng.integers(len(outside))]) if outside else 0
        return " ".join(self.docs[d][i] for i in self._run(d, start, budget))

    def draw(self) -> tuple[str, str, int]:
        d = int(self._starts[self.rng.choice(len(self._starts), p=self._weights)])
        start = int(self.rng.integers(len(self.docs[d]) - 1))
        run = self._run(d, start, self.budget, at_least=2)
        if len(run) < 2:  # the document ends: take the run back one sentence
            start = len(self.docs[d]) - 2
            run = [start, start + 1]
        split = int(self.rng.integers(1, len(run)))
        a = " ".join(self.docs[d][i] for i in run[:split])
        b = " ".join(self.docs[d][i] for i in run[split:])
        if self.objective is None:
            return a, b, -1
        if self.rng.random() >= 0.5:
            return a, b, 0
        if self.objective == "sop":
            return b, a, 1
        left = self.budget - sum(self.lengths[d][i] for i in run[:split])
        return a, self._random_run(d, range(run[0], run[-1] + 1), max(1, left)), 1

    def draws(self, n: int) -> list[tuple[str, str, int]]:
        return [self.draw() for _ in range(int(n))]
