"""Similarity: is [CLS] an aggregate of the sentence?"""

import streamlit as st

from clsviz import figures
from clsviz.baseline import REFERENCE_HELP, VIEW_HELP, VIEWS
from clsviz.narrative import benchmark_summary
from clsviz.norms import dimension_values, massive_dimensions, token_norms, top_dimensions
from clsviz.similarity import (
    cls_summary,
    cls_token_cosines,
    compare_sentences,
    comparison_at_layer,
    describe_summary,
    token_table,
)
from ui.similarity import cached_baseline, pair_benchmark, pairs_picker
from ui.state import current_encoder, current_traces, page_setup
from ui.text import plain
from ui.widgets import download_csv, number_input, radio, selectbox, sentence_picker, show, slider

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
        VIEWS if baseline is not None else ("raw",),
        key="similarity.view",
        horizontal=True,
        help="Contextual vectors share a few dominant directions, so even unrelated tokens can have a high "
        "cosine. 'minus baseline' subtracts the unrelated-pair cosine; 'centred' removes the shared mean.",
    )
    st.caption(VIEW_HELP[view])

cls_tab, compare_tab, bench_tab, norms_tab, baseline_tab = st.tabs(TABS, key="similarity.section", on_change="rerun")

with cls_tab:
    if cls_tab.open:
        cosines = cls_token_cosines(t, view, baseline)
        show("similarity.cls_tokens", figures.cls_token_cosine_figure(t, cosines, view))
        download_csv(token_table(t, cosines, "cosine"), "cls_token_cosines.csv", key="similarity.cls_tokens.csv")
        summary = cls_summary(t, view, baseline)
        show("similarity.summary", figures.cls_summary_figure(summary, baseline, view))
        st.markdown(describe_summary(summary, baseline, view))
        download_csv(summary, "cls_summary.csv", key="similarity.summary.csv")

with compare_tab:
    if compare_tab.open:
        if len(traces) < 2:
            st.info(
                "Comparing needs at least two lines in the sentence box. Add a paraphrase and an unrelated "
                "sentence, one per line, and see which pooling tells them apart.",
                icon=":material/compare_arrows:",
            )
        else:
            comparison = compare_sentences(traces, view=view, baseline=baseline)
            show("similarity.compare", figures.comparison_figure(comparison, view))
            st.dataframe(comparison_at_layer(comparison), hide_index=True, width="stretch")
            st.caption("The last layer's cosines (columns: pooling).")
            download_csv(comparison, "sentence_cosines.csv", key="similarity.compare.csv")

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
            result = pair_benchmark(encoder, pairs, name)
            if result is not None:
                table = result.table
                best = result.best()
                if best is None:
                    st.warning(
                        "Every cosine or every score is the same, so no ranking can be compared. "
                        "Use pairs with different scores.",
                        icon=":material/warning:",
                    )
                else:
                    st.info(plain(benchmark_summary(result, f"pairs ({name})")), icon=":material/lightbulb:")
                show("similarity.benchmark", figures.benchmark_figure(table))
                download_csv(table, "pair_benchmark.csv", key="similarity.benchmark.csv")
                layer = slider(st,
                    "Layer for the scatter plot", 0, t.num_layers, t.num_layers, key="similarity.benchmark.layer"
                )
                show(
                    "similarity.benchmark_scatter",
                    figures.benchmark_scatter_figure(result.pair_table(layer), result.poolings),
                    key="similarity.benchmark.scatter",
                )
                download_csv(
                    result.pair_table(layer),
                    f"pair_cosines_layer{layer}.csv",
                    key="similarity.benchmark.pairs.csv",
                    label="Download each pair's cosines (CSV)",
                )

with norms_tab:
    if norms_tab.open:
        norms = token_norms(t)
        show("similarity.norms", figures.token_norms_figure(t, norms))
        download_csv(token_table(t, norms, "norm"), "token_norms.csv", key="similarity.norms.csv")
        c1, c2 = st.columns(2)
        layer = slider(c1, "Layer", 0, t.num_layers, t.num_layers, key="similarity.massive.layer")
        k = number_input(c2, "Dimensions to show", 1, 20, 5, key="similarity.massive.k")
        top = top_dimensions(t, int(k))
        show("similarity.massive", figures.top_dimensions_figure(top, layer))
        download_csv(top, "top_dimensions.csv", key="similarity.massive.csv")
        dims = massive_dimensions(top[top["layer"] == layer])
        dim = selectbox(st,
            "Follow one dimension through the layers", dims, key="similarity.massive.dimension",
            help="Dimensions listed above, largest relative to the median first.",
        )
        values = dimension_values(t, dim)
        show("similarity.dimension", figures.dimension_figure(t, values, dim))
        download_csv(token_table(t, values, f"dim_{dim}"), f"dimension_{dim}.csv", key="similarity.dimension.csv")

with baseline_tab:
    if baseline_tab.open:
        if baseline is None:
            st.info("No baseline for this model (see the warning above).", icon=":material/info:")
        else:
            show("similarity.baseline", figures.anisotropy_figure(baseline, view))
            st.dataframe(
                [{"reference": r, "pairs of": REFERENCE_HELP[r]} for r in baseline.references],
                hide_index=True,
                width="stretch",
            )
            download_csv(baseline.table, "anisotropy_baseline.csv", key="similarity.baseline.csv")
