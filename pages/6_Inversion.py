"""Can the sentence be recovered from its [CLS] vector?"""

import pandas as pd
import streamlit as st

from clsviz import figures, pool
from clsviz.benchmark import COMPARE_POOLINGS
from clsviz.experiments.inversion import (
    decode_words,
    mlm_reading,
    summarize_bow,
    summarize_mlm_reading,
    summarize_recall,
)
from clsviz.experiments.neighbours import neighbour_table, neighbours_summary
from ui.corpus import corpus_vectors, vectors_key
from ui.embeddings import corpus_source
from ui.inversion import bow_table, cached_mlm_head, pair_recall, saved_neighbours, saved_sample
from ui.similarity import cached_baseline, pairs_picker
from ui.state import current_encoder, current_traces, page_setup
from ui.text import plain
from ui.widgets import download_csv, figure_caption, number_input, sentence_picker, show, slider

TABS = ("Nearest neighbours", "Bag of words", "Masked-LM head", "What published work shows")
POOLING_NAMES = {"cls": "[CLS]", "mean": "mean of all tokens"}

PUBLISHED = """
**What stronger decoders recover.** *vec2text* (Morris et al., 2023, "Text Embeddings Reveal (Almost) As
Much As Text") trains a sequence-to-sequence model to invert an embedding and then corrects its guess
step by step: re-embed the guess, compare with the target vector, rewrite. On 32-token inputs embedded
with GTR-base it recovers **92 %** of the texts *exactly*. A single pass of the same model, without
the corrections, does far worse.

**What this page shows is a lower bound.** A nearest-neighbour search can only return sentences the
corpus already holds, and the decoder here is *linear* and reads an unordered bag of frequent words.
So:

- a word the linear decoder misses may still be in the vector, readable by a non-linear decoder;
- a word it finds says that word is linearly present, not that word order or the exact sentence are;
- vec2text's numbers hold for the embedder its inverter was trained on (with a large text
  collection); they do not transfer to another model's [CLS] vector without training a new inverter.

Neither result should be over-read: embeddings are not anonymous, and a weak probe failing is not
evidence of privacy.
"""

page_setup("Recover the sentence?")
st.title("Can we get the sentence back from [CLS]?")
st.caption(
    "How much of a sentence can be read back from its [CLS] vector — its nearest sentences, its words, the "
    "tokens a language-model head sees — always next to the mean of all tokens."
)

st.info(
    "**Read the results as a lower bound.** The decoders here are linear and the search only finds sentences "
    "the corpus holds. A trained, iterative inverter does far more: vec2text (Morris et al., 2023) recovers "
    "92 % of 32-token inputs *exactly* from GTR embeddings by correcting its guess step by step. A word missed "
    "here may still be in the vector; a word found here is not the sentence. More in the last tab.",
    icon=":material/menu_book:",
)

traces = current_traces()
if not traces:
    st.stop()
encoder = current_encoder()
info = encoder.info

c_sentence, c_layer = st.columns([3, 2])
with c_sentence:
    t = sentence_picker(traces, key="inversion.sentence")
with c_layer:
    layer = slider(st,
        "Layer", 0, info.num_layers, info.num_layers, key="inversion.layer",
        help="0 = the embedding layer, then the output of each transformer layer.",
    )

picked = corpus_source("inversion.corpus")  # the demo, an upload, or saved vectors (a shard folder too)
if picked is None:
    st.stop()
corpus, saved = picked
# The number belongs to this corpus: a new corpus starts again from all of its texts (saved vectors
# can be far larger: the decoder then starts from their first 1,000).
high = len(corpus) if saved is None else min(len(corpus), 1000)
sample = number_input(st,
    "Corpus texts to use",
    min_value=min(2, high),
    max_value=high,
    value=high,
    step=100,
    key=f"inversion.sample.{corpus.content_hash[:16]}",
    help="The first texts of the corpus (all by default). Every page shares the embedded corpus, so it is "
    "computed once per model.",
)
if saved is not None:
    st.caption("Saved vectors: the neighbour search uses every text; the decoder below uses the first texts.")
elif sample < high:
    st.caption(f"Using the first {int(sample):,} of the corpus's {high:,} texts.")
    corpus = corpus.subset(range(int(sample)), name=f"{corpus.name} (first {int(sample)})")
if len(set(corpus.texts)) < 2:
    st.error(
        "Every text of this corpus is the same sentence, so there is nothing to search or decode. "
        "Pick the demo corpus or upload varied sentences.",
        icon=":material/error:",
    )
    st.stop()
queries = {"cls": t.cls(layer), "mean": pool(t, "mean", layer)}


def corpus_vectors_or_stop():
    """The corpus embedded once per model (shared cache); only the tabs that search or decode need it.
    Saved vectors are used as they are (their first texts for the decoder)."""
    if saved is not None:
        return saved_sample(saved, int(sample))
    vectors = corpus_vectors(encoder, corpus, COMPARE_POOLINGS)
    if vectors is None:
        st.stop()
    return vectors


nn_tab, bow_tab, mlm_tab, paper_tab = st.tabs(TABS, key="inversion.section", on_change="rerun")

with nn_tab:
    if nn_tab.open and saved is not None:
        saved_neighbours(saved, t, layer, encoder.name)
    elif nn_tab.open:
        vectors = corpus_vectors_or_stop()
        max_k = min(20, len(corpus) - 1)
        k = slider(st, "Neighbours", 1, max_k, min(5, max_k), key="inversion.k") if max_k > 1 else 1
        try:
            table = neighbour_table(queries, vectors, layer, k=k, exclude_text=t.text)
        except ValueError as exc:
            st.error(plain(str(exc)), icon=":material/error:")
            table = None
        if table is not None:
            show("inversion.neighbours", figures.neighbours_figure(table, title=f"Nearest corpus sentences at layer {layer}"))
            left, right = st.columns(2)
            for col, s in ((left, "cls"), (right, "mean")):
                with col:
                    st.markdown(f"**{POOLING_NAMES[s]}**")
                    st.dataframe(
                        table[table["pooling"] == s][["rank", "text", "cosine"]], hide_index=True, width="stretch"
                    )
            st.markdown(
                f"**For {plain(info.name)}:** "
                + plain(neighbours_summary(table, layer, k, cached_baseline(encoder)))
            )
            download_csv(table, f"neighbours_layer{layer}.csv", key="inversion.neighbours.csv")

        st.markdown("#### Does the nearest sentence turn out to be its paraphrase?")
        st.caption(
            "For every paraphrase pair, each sentence is a query: is the single closest other sentence (among "
            "all sentences of all pairs) its partner? Uploaded pairs without a 'kind' column count pairs "
            "scored 4 or more as paraphrases."
        )
        picked = pairs_picker("inversion.pairs")
        if picked is not None:
            pairs, name = picked
            outcome = pair_recall(encoder, pairs, name)
            if outcome is not None:
                recall, ps = outcome
                for note in ps.notes:
                    st.info(plain(note), icon=":material/info:")
                show("inversion.recall", figures.recall_figure(recall))
                st.markdown(f"**For {plain(info.name)}:** {plain(summarize_recall(recall))}")
                download_csv(recall, "paraphrase_recall.csv", key="inversion.recall.csv")

with bow_tab:
    if bow_tab.open:
        c_vocab, c_k = st.columns(2)
        with c_vocab:
            vocab_size = slider(st,
                "Vocabulary (most frequent content words)", 20, 1000, 300, step=20, key="inversion.vocab",
                help="The decoder predicts, for each of these words, whether the sentence contains it.",
            )
        with c_k:
            top_k = slider(st, "Words to show (k)", 3, 20, 8, key="inversion.top_k")
        vectors = corpus_vectors_or_stop()
        key = vectors_key(encoder, corpus, COMPARE_POOLINGS) if saved is None else f"saved|{corpus.content_hash}|{int(sample)}"
        outcome = bow_table(vectors, key, vocab_size)
        if outcome is not None:
            bow, vocab = outcome
            show("inversion.bow", figures.bow_f1_figure(bow))
            st.markdown(f"**For {plain(info.name)}:** {plain(summarize_bow(bow))}")
            download_csv(bow, "bag_of_words_f1.csv", key="inversion.bow.csv")

            st.markdown(f"#### The words read from this sentence at layer {layer}")
            cols = st.columns(2)
            decoded = {}
            for col, s in zip(cols, ("cls", "mean")):
                with col:
                    try:
                        d = decode_words(queries[s], t.text, vectors.get(s, layer), vectors.texts,
                                         vocab_size=vocab_size, k=top_k)
                    except ValueError as exc:
                        st.error(plain(str(exc)), icon=":material/error:")
                        continue
                    decoded[s] = d
                    show(
                        "inversion.words",
                        figures.decoded_words_figure(d.table, title=f"{POOLING_NAMES[s]}: top {len(d.table)} words"),
                        key=f"inversion.words.{s}",
                        caption=False,
                    )
                    recall_text = "n/a" if d.recall_at_k != d.recall_at_k else f"{d.recall_at_k:.0%}"  # NaN: undefined
                    st.caption(plain(f"precision@{len(d.table)} {d.precision_at_k:.0%} · recall@{len(d.table)} {recall_text}"))
            if decoded:
                any_d = next(iter(decoded.values()))
                if any_d.outside_vocabulary:
                    st.caption(
                        "Words of this sentence the decoder cannot name (not among the corpus's frequent words): "
                        + plain(", ".join(any_d.outside_vocabulary))
                    )
                if not any_d.in_vocabulary:
                    st.info(
                        "None of this sentence's content words is in the decoder's vocabulary, so recall is "
                        "undefined. Try a sentence about the corpus's topics, or a larger vocabulary.",
                        icon=":material/info:",
                    )
                words = pd.concat([d.table.assign(pooling=s) for s, d in decoded.items()], ignore_index=True)
                download_csv(words, f"decoded_words_layer{layer}.csv", key="inversion.words.csv")
            figure_caption("inversion.words")

with mlm_tab:
    if mlm_tab.open:
        head = cached_mlm_head(encoder)
        if not head.available:
            st.info(plain(head.note), icon=":material/block:")
            st.caption(
                "Models pre-trained with masked-language modelling (bert-base-uncased, roberta-base, "
                "distilbert-base-uncased) ship the head; pick one in the sidebar where the machine can reach "
                "the Hugging Face hub."
            )
        else:
            k_mlm = slider(st, "Tokens per layer", 1, 10, 5, key="inversion.mlm_k")
            reading = mlm_reading(head, t.hidden_states[:, t.cls_index], encoder.tokenizer, k=k_mlm)
            show("inversion.mlm", figures.mlm_reading_figure(reading))
            st.markdown(f"**For {plain(info.name)}:** " + plain(summarize_mlm_reading(reading, t.text)))
            download_csv(reading, "mlm_reading.csv", key="inversion.mlm.csv")

with paper_tab:
    if paper_tab.open:
        with st.container(border=True):
            st.markdown(PUBLISHED)
        st.caption(
            "Morris, Kuleshov, Shmatikov, Rush (2023). Text Embeddings Reveal (Almost) As Much As Text. EMNLP 2023."
        )
