"""Similarity: is [CLS] an aggregate of the sentence?"""

import streamlit as st

from ui import runner
from ui.similarity import REFERENCE_HELP, VIEW_HELP, benchmark_vectors, cached_baseline, pairs_picker
from ui.state import current_encoder, current_traces, page_setup
from ui.text import plain
from ui.widgets import number_input, radio, selectbox, sentence_picker, slider

TABS = ("[CLS] and its tokens", "Compare sentences", "Benchmark", "Norms & massive activations", "Baseline")

page_setup("Similarity")
st.title("Is [CLS] an aggregate of the sentence?")
st.caption(
    "How close the [CLS] vector is to the sentence's own tokens and to other sentences, layer by layer — "
    "always next to what unrelated text looks like to the same model."
)

traces = current_traces()
if not traces:
    st.stop()
encoder = current_encoder()
baseline = cached_baseline(encoder)

left, right = st.columns([3, 2])
with left:
    t = sentence_picker(traces, key="similarity.sentence")
with right:
    view = radio(st,
        "Cosine view",
        runner.choices("similarity", "view") if baseline is not None else ("raw",),
        key="similarity.view",
        horizontal=True,
        help="Contextual vectors share a few dominant directions, so even unrelated tokens can have a high "
        "cosine. 'minus baseline' subtracts the unrelated-pair cosine; 'centred' removes the shared mean.",
    )
    st.caption(VIEW_HELP[view])

cls_tab, compare_tab, bench_tab, norms_tab, baseline_tab = st.tabs(TABS, key="similarity.section", on_change="rerun")

with cls_tab:
    if cls_tab.open:
        similarity = runner.run("similarity", t, baseline, view=view)
        runner.draw(similarity, "similarity.cls_tokens", csv="cls_token_cosines.csv")
        runner.draw(similarity, "similarity.summary")
        for sentence in similarity.summary():
            st.markdown(sentence)
        runner.download(similarity, "similarity.summary", "cls_summary.csv")

with compare_tab:
    if compare_tab.open:
        if len(traces) < 2:
            st.info(
                "Comparing needs at least two lines in the sentence box. Add a paraphrase and an unrelated "
                "sentence, one per line, and see which pooling tells them apart.",
                icon=":material/compare_arrows:",
            )
        else:
            comparison = runner.run("similarity.compare", traces, baseline, view=view)
            runner.draw(comparison, "similarity.compare")
            st.dataframe(comparison.last_layer(), hide_index=True, width="stretch")
            st.caption("The last layer's cosines (columns: pooling).")
            runner.download(comparison, "similarity.compare", "sentence_cosines.csv")

with bench_tab:
    if bench_tab.open:
        st.caption(
            "Spearman correlation between cosine and human similarity scores, per layer and pooling — the live "
            "version of Sentence-BERT's Table 1, where off-the-shelf BERT's [CLS] scored far below mean pooling. "
            "Whether your model agrees depends on how it was trained (the bundled model was trained with mean "
            "pooling and a contrastive loss, unlike that BERT) and on the pairs: the demo's 170 pairs are short "
            "written sentences, so read the intervals before the ranking."
        )
        picked = pairs_picker("similarity.pairs")
        if picked is not None:
            pairs, name = picked
            vectors = benchmark_vectors(encoder, pairs, name)
            result = None
            if vectors is not None:
                try:
                    result = runner.run("similarity.benchmark", vectors, pairs, source=name)
                except ValueError as exc:
                    st.error(plain(f"The benchmark could not run: {exc}"), icon=":material/error:")
            if result is not None:
                (sentence,) = result.summary()
                if result.benchmark.best() is None:
                    st.warning(plain(sentence), icon=":material/warning:")
                else:
                    st.info(plain(sentence), icon=":material/lightbulb:")
                runner.draw(result, "similarity.benchmark", csv="pair_benchmark.csv")
                layer = slider(st,
                    "Layer for the scatter plot", 0, t.num_layers, t.num_layers, key="similarity.benchmark.layer"
                )
                runner.draw(result, "similarity.benchmark_scatter", chart_key="similarity.benchmark.scatter",
                            csv=f"pair_cosines_layer{layer}.csv", csv_key="similarity.benchmark.pairs.csv",
                            download_label="Download each pair's cosines (CSV)", layer=layer)  # fmt: skip

with norms_tab:
    if norms_tab.open:
        norms = runner.run("norms", t)
        runner.draw(norms, "similarity.norms", csv="token_norms.csv")
        c1, c2 = st.columns(2)
        layer = slider(c1, "Layer", 0, t.num_layers, t.num_layers, key="similarity.massive.layer")
        k = int(number_input(c2, "Dimensions to show", 1, 20, 5, key="similarity.massive.k"))
        runner.draw(norms, "similarity.massive", csv="top_dimensions.csv", layer=layer, k=k)
        dim = selectbox(st,
            "Follow one dimension through the layers", norms.dimensions(layer, k), key="similarity.massive.dimension",
            help="Dimensions listed above, largest relative to the median first.",
        )
        runner.draw(norms, "similarity.dimension", csv=f"dimension_{dim}.csv", layer=layer, k=k, dimension=dim)

with baseline_tab:
    if baseline_tab.open:
        if baseline is None:
            st.info("No baseline for this model (see the warning above).", icon=":material/info:")
        else:
            reference = runner.run("baseline", baseline, view=view)
            runner.draw(reference, "similarity.baseline")
            st.dataframe(
                [{"reference": r, "pairs of": REFERENCE_HELP[r]} for r in baseline.references],
                hide_index=True,
                width="stretch",
            )
            runner.download(reference, "similarity.baseline", "anisotropy_baseline.csv")
