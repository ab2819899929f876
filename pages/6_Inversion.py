"""Can the sentence be recovered from its [CLS] vector?"""

import pandas as pd
import streamlit as st

from ui import runner
from ui.embeddings import corpus_source
from ui.inversion import (
    POOLING_NAMES,
    bow_result,
    cached_mlm_head,
    ladder_examples,
    page_vectors,
    pair_recall,
    published_inversion,
    recovered,
    saved_neighbours,
)
from ui.similarity import cached_baseline, pairs_picker
from ui.state import current_encoder, current_traces, page_setup
from ui.text import plain
from ui.widgets import download_csv, figure_caption, number_input, radio, sentence_picker, slider

TABS = ("Nearest neighbours", "Bag of words", "Masked-LM head", "Trained inverter", "What published work shows")

PUBLISHED = """
**What stronger decoders recover.** *vec2text* (Morris et al., 2023, "Text Embeddings Reveal (Almost) As
Much As Text") trains a sequence-to-sequence model to invert an embedding and then corrects its guess
step by step: re-embed the guess, compare with the target vector, rewrite. On 32-token inputs embedded
with GTR-base it recovers **92 %** of the texts *exactly* (BLEU about 97 with 50 correction steps and a
sequence-level beam search). A single pass of the same model, without the corrections, reaches about 30
BLEU.

**What the one-step readers on this page show is a lower bound.** A nearest-neighbour search can only
return sentences the corpus already holds, and the bag-of-words decoder is *linear* and reads an
unordered set of frequent words. So:

- a word the linear decoder misses may still be in the vector, readable by a non-linear decoder;
- a word it finds says that word is linearly present, not that word order or the exact sentence are;
- vec2text's numbers hold for the embedder its inverter was trained on (with millions of passages, on
  GPUs); they do not transfer to another model's [CLS] vector without training a new inverter.

The *Trained inverter* tab trains such an inverter here, small enough for a CPU, and sets its numbers
beside vec2text's. Neither result should be over-read: embeddings are not anonymous, and a weak
inverter failing is not evidence of privacy.
"""

page_setup("Recover the sentence?", needs_summary="Recover the sentence? (reading [CLS] back)")
st.title("Can we get the sentence back from [CLS]?")
st.caption(
    "How much of a sentence can be read back from its [CLS] vector — its nearest sentences, its words, the "
    "tokens a language-model head sees, what a trained inverter writes — always next to the mean of all tokens."
)

st.info(
    "**Read the one-step results as a lower bound.** The decoders of the first tabs are linear and the search "
    "only finds sentences the corpus holds. A trained, iterative inverter does far more: vec2text (Morris et "
    "al., 2023) recovers 92 % of 32-token inputs *exactly* from GTR embeddings by correcting its guess step by "
    "step. The *Trained inverter* tab trains a small one on this corpus. More in the last tab.",
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
    st.caption("Saved vectors: the neighbour search uses every text; the decoders below use the first texts.")
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
texts = list(corpus.texts[: int(sample)])


def vectors_or_stop():
    """The corpus's vectors; only the tabs that search or decode need them."""
    vectors = page_vectors(encoder, corpus, saved, int(sample))
    if vectors is None:
        st.stop()
    return vectors


nn_tab, bow_tab, mlm_tab, inverter_tab, paper_tab = st.tabs(TABS, key="inversion.section", on_change="rerun")

with nn_tab:
    if nn_tab.open and saved is not None:
        saved_neighbours(saved, t, layer, encoder)
    elif nn_tab.open:
        vectors = vectors_or_stop()
        max_k = min(20, len(corpus) - 1)
        k = slider(st, "Neighbours", 1, max_k, min(5, max_k), key="inversion.k") if max_k > 1 else 1
        try:
            neighbours = runner.run("inversion.neighbours", t, vectors, cached_baseline(encoder), layer=layer, k=k)
        except ValueError as exc:
            st.error(plain(str(exc)), icon=":material/error:")
            neighbours = None
        if neighbours is not None:
            runner.draw(neighbours, "inversion.neighbours")
            table = neighbours.table()
            left, right = st.columns(2)
            for col, s in ((left, "cls"), (right, "mean")):
                with col:
                    st.markdown(f"**{POOLING_NAMES[s]}**")
                    st.dataframe(
                        table[table["pooling"] == s][["rank", "text", "cosine"]], hide_index=True, width="stretch"
                    )
            st.markdown(f"**For {plain(info.name)}:** " + plain(" ".join(neighbours.summary())))
            runner.download(neighbours, "inversion.neighbours", f"neighbours_layer{layer}.csv",
                            csv_key="inversion.neighbours.csv")  # fmt: skip

        st.markdown("#### Does the nearest sentence turn out to be its paraphrase?")
        st.caption(
            "For every paraphrase pair, each sentence is a query: is the single closest other sentence (among "
            "all sentences of all pairs) its partner? Uploaded pairs without a 'kind' column count pairs "
            "scored 4 or more as paraphrases."
        )
        picked = pairs_picker("inversion.pairs")
        if picked is not None:
            pairs, name = picked
            recall = pair_recall(encoder, pairs, name)
            if recall is not None:
                for note in recall.data.notes:
                    st.info(plain(note), icon=":material/info:")
                runner.draw(recall, "inversion.recall", csv="paraphrase_recall.csv", csv_key="inversion.recall.csv")
                st.markdown(f"**For {plain(info.name)}:** {plain(' '.join(recall.summary()))}")

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
        vectors = vectors_or_stop()
        bow = bow_result(vectors, vocab_size)
        if bow is not None:
            runner.draw(bow, "inversion.bow")
            st.markdown(f"**For {plain(info.name)}:** {plain(' '.join(bow.summary()))}")
            runner.download(bow, "inversion.bow", "bag_of_words_f1.csv", csv_key="inversion.bow.csv")

            st.markdown(f"#### The words read from this sentence at layer {layer}")
            decoded = {}
            for col, s in zip(st.columns(2), ("cls", "mean")):
                with col:
                    try:
                        words = runner.run("inversion.words", t, vectors, pooling=s, layer=layer,
                                           vocab_size=vocab_size, k=top_k)  # fmt: skip
                    except ValueError as exc:
                        st.error(plain(str(exc)), icon=":material/error:")
                        continue
                    decoded[s] = words.data
                    runner.draw(words, "inversion.words", chart_key=f"inversion.words.{s}", caption=False)
                    d = words.data
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
                rows = [d.table.assign(pooling=s) for s, d in decoded.items()]
                download_csv(lambda: pd.concat(rows, ignore_index=True), f"decoded_words_layer{layer}.csv",
                             key="inversion.words.csv")
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
            try:
                reading = runner.run("inversion.mlm", encoder, t, k=k_mlm)
            except runner.NotApplicable as exc:
                st.info(plain(str(exc)), icon=":material/block:")
                reading = None
            if reading is not None:
                runner.draw(reading, "inversion.mlm", csv="mlm_reading.csv", csv_key="inversion.mlm.csv")
                st.markdown(f"**For {plain(info.name)}:** " + plain(" ".join(reading.summary())))

with inverter_tab:
    if inverter_tab.open:
        st.markdown("#### The inversion ladder")
        st.caption(
            "A small decoder is trained per layer and pooling on 80% of the corpus to write the sentence back "
            "from one vector, then scored on the other 20% (token F1 on words, BLEU, exact match, with 95% "
            "intervals), beside returning the training sentence with the nearest vector and the linear "
            "bag-of-words decoder. It trains on the CPU in minutes, once per model and corpus; everyone who "
            "asks for the same one shares it."
        )
        c1, c2, c3 = st.columns(3)
        ladder_layers = radio(c1, "Layers", runner.choices("inversion.ladder", "layers"), key="inversion.ladder.layers",
                              horizontal=True,
                              help="all: every layer; every_other: 0, 2, 4 ... and the last; last: only the last.")
        steps = int(number_input(c2, "Training steps per inverter", 50, 5000, 600, step=50,
                                 key="inversion.ladder.steps"))  # fmt: skip
        corrections = int(number_input(c3, "Correction steps", 0, 10, 0, key="inversion.ladder.corrections",
                                       help="vec2text-style: embed the guess, condition on the difference, write "
                                       "again; 0 = one pass."))  # fmt: skip
        ladder = runner.background("inversion.ladder", encoder, texts, button="Train the ladder",
                                   what="The inversion ladder", slot="inversion.ladder",
                                   hint=f"Trains one inverter per layer and pooling on {len(texts):,} texts.",
                                   layers=ladder_layers, steps=steps, corrections=corrections)  # fmt: skip
        if ladder is not None:
            runner.draw(ladder, "inversion.ladder", csv="inversion_ladder.csv", csv_key="inversion.ladder.csv")
            for sentence in ladder.summary():
                st.markdown(plain(sentence))
            st.caption("vec2text's published figures, with the setup they hold for:")
            st.dataframe(published_inversion(), hide_index=True, width="stretch")
            shown = max(ladder.data.settings["layers"]) if layer not in ladder.data.settings["layers"] else layer
            st.caption(plain(f"What the inverters wrote for held-out sentences at layer {shown}:"))
            st.dataframe(ladder_examples(ladder, shown), hide_index=True, width="stretch")
            download_csv(lambda: ladder.data.examples, "inversion_ladder_examples.csv",
                         key="inversion.ladder.examples.csv", label="Download every held-out output (CSV)")

        st.markdown(f"#### Recover a sentence you type (layer {layer})")
        st.caption(
            "Two inverters trained on the whole corpus at the layer chosen above, one reading [CLS], one the mean "
            "of the tokens. They can only write word pieces the corpus contains."
        )
        pair = runner.background("inversion.inverter", encoder, texts, button="Train the inverters",
                                 what=f"Inverters for layer {layer}", slot="inversion.inverter",
                                 hint="Trains two inverters (about a minute on a CPU).", layer=layer, steps=steps)
        if pair is not None:
            c_text, c_steps = st.columns([4, 1])
            typed = c_text.text_input("Sentence to recover", value=t.text, key="inversion.typed", max_chars=500)
            steps_back = int(number_input(c_steps, "Correction steps", 0, 10, 0, key="inversion.typed.corrections"))
            if typed.strip():
                table = recovered(pair, encoder, typed, steps_back)
                for col, s in zip(st.columns(2), ("cls", "mean")):
                    row = table[table["pooling"] == s].iloc[0]
                    with col:
                        st.markdown(f"**From {POOLING_NAMES[s]}**")
                        st.text(row["output"] or "(nothing)")
                        st.caption(plain(f"token F1 {row['token_f1']:.2f} · BLEU {row['bleu']:.1f} · "
                                         f"cosine of its vector to yours {row['cosine']:.3f}"))
                download_csv(table, "recovered_sentence.csv", key="inversion.typed.csv")
            for sentence in pair.summary():
                st.caption(plain(sentence))

with paper_tab:
    if paper_tab.open:
        with st.container(border=True):
            st.markdown(PUBLISHED)
        st.dataframe(published_inversion(), hide_index=True, width="stretch")
        st.caption(
            "Morris, Kuleshov, Shmatikov, Rush (2023). Text Embeddings Reveal (Almost) As Much As Text. EMNLP 2023."
        )
