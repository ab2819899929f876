"""The layer convention, stated once and used by every module, figure, table and page.

* A *layer* is a hidden-state index: 0 is the embedding output, ``l`` (1..L) is the output
  of encoder block ``l``. ``Trace.hidden_states[l]``, ``PooledVectors.vectors[:, l]``,
  ``pool(trace, p, layer=l)`` and every "layer" column of a table count this way.
* A *block* is numbered 1..L, as people number them: block ``l`` reads layer ``l - 1`` and
  writes layer ``l``. Its attention is ``Trace.attention(l)`` and ``Trace.attentions[l - 1]``
  (arrays with one row per block start at index 0, like every numpy axis).
* Negative numbers count from the end (-1 = the last layer / the last block).

Figures and tables label layers with :func:`layer_names` and blocks with :func:`block_names`,
so no caller adds or subtracts 1 by hand.
"""

from __future__ import annotations

__all__ = ["block_input", "block_names", "block_of_row", "block_row", "check_block", "check_layer", "later_blocks",
           "layer_names"]


def check_layer(layer: int, num_layers: int) -> int:
    """The hidden-state index ``layer`` (0..L, or -(L+1)..-1 from the end) as 0..L.

    Raises IndexError naming the valid range."""
    n = int(num_layers) + 1
    idx = int(layer) + n if int(layer) < 0 else int(layer)
    if not 0 <= idx < n:
        raise IndexError(
            f"layer {layer} is outside 0..{n - 1} (0 = embeddings, {n - 1} = last block's output; "
            f"-1 counts from the end)"
        )
    return idx


def check_block(block: int, num_layers: int) -> int:
    """The block number ``block`` (1..L, or -L..-1 from the end) as 1..L.

    Raises IndexError naming the valid range (block 0 does not exist: the embeddings have no
    attention)."""
    n = int(num_layers)
    idx = int(block) + n + 1 if int(block) < 0 else int(block)
    if not 1 <= idx <= n:
        raise IndexError(
            f"block {block} is outside 1..{n} (blocks are numbered from 1; layer 0, the embeddings, "
            "has no attention; -1 is the last block)"
        )
    return idx


def layer_names(num_layers: int) -> list[str]:
    """Axis labels for the ``num_layers + 1`` hidden-state rows: ``"0 (embeddings)"``, ``"1"``, ..."""
    return ["0 (embeddings)", *[str(i) for i in range(1, int(num_layers) + 1)]]


def block_names(num_layers: int) -> list[str]:
    """Axis labels for the ``num_layers`` blocks: ``"1"`` .. ``"L"``."""
    return [str(i) for i in range(1, int(num_layers) + 1)]


def block_row(block: int) -> int:
    """The row of block ``block`` (1..L) in an array with one row per block (``[L, ...]``:
    ``Trace.attentions``, mixing matrices, a model's block weights, per-block sums)."""
    return int(block) - 1


def block_of_row(row: int) -> int:
    """The block number (1..L) of row ``row`` of an array with one row per block."""
    return int(row) + 1


def block_input(block: int) -> int:
    """The hidden-state index (layer) that block ``block`` reads: ``Trace.hidden_states[block_input(l)]``
    is block ``l``'s input, ``hidden_states[l]`` its output."""
    return int(block) - 1


def later_blocks(layer: int, num_layers: int) -> range:
    """The blocks that run after hidden state ``layer`` (or after block ``layer``): ``layer + 1 .. L``."""
    return range(int(layer) + 1, int(num_layers) + 1)
