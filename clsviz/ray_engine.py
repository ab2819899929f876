"""The Ray engine of :func:`clsviz.extraction.embed_to_shards`: shards embedded by Ray Data
``map_batches`` over actors that each hold the model.

One dataset row is one shard (its texts and labels as JSON); each actor loads the encoder once
and turns a shard into the same Parquet bytes the in-process engine writes
(:func:`clsviz.shards.embed_shard`); the driver writes them, so the output folder needs no
shared file system. Actors take one GPU each (``num_gpus=1``) where the cluster has GPUs, one
CPU otherwise.

Without ``RAY_ADDRESS`` an embedded local Ray is started (and stopped afterwards); with it, the
run joins that cluster, which must have clsviz and the model installed. Ray is an optional extra
(``pip install clsviz[ray]``).

An embedded Ray's object store is given room for :data:`IN_FLIGHT` finished shards per actor
(:func:`object_store_floor_mb`): Ray Data holds its actors back once the shards waiting in the
store fill their share of it, and with a store of 200 MB and 33 MB shards (2,048 short texts x 7
layers x 3 poolings) two actors ran one at a time after the first four shards (20,000 texts: 58 s,
against 42 s with room for both).
"""

from __future__ import annotations

import json
import math
import os
import socket
import warnings
from collections.abc import Callable, Sequence
from urllib.parse import urlparse

import numpy as np

from .encoder import load_encoder
from .progress import check_cancel
from .shards import embed_shard

__all__ = ["IN_FLIGHT", "RayUnavailable", "check_ray_address", "object_store_floor_mb", "run_ray_shards",
           "shard_output_bytes"]

IN_FLIGHT = 8
"""Finished shards per actor an embedded Ray's object store has room for (see the module docstring)."""


class RayUnavailable(ValueError):
    """Ray is not installed, or the cluster named by RAY_ADDRESS cannot be reached."""


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailable(
            "--engine ray needs Ray: pip install 'clsviz[ray]' (or 'ray[data]'). The default engine needs nothing."
        ) from exc
    return ray


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Refuse quickly, with a clear message, a cluster address nothing answers on.

    ``address``: ``host:port``, ``ray://host:port`` or ``auto`` (``auto`` is left to Ray)."""
    if address.strip() in ("", "auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise RayUnavailable(f"RAY_ADDRESS={address!r} is not an address; write host:port or ray://host:port.")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        raise RayUnavailable(
            f"No Ray cluster answers at {address} ({exc.strerror or exc}). Start the cluster (ray start --head), "
            "fix RAY_ADDRESS, or unset it to run on an embedded local Ray."
        ) from None


class ShardEmbedder:
    """A Ray Data actor: loads the encoder once, turns shard rows into Parquet bytes."""

    def __init__(self, settings: dict, device: str | None = None):
        self.settings = settings
        self.encoder = load_encoder(settings["model"], device=device)

    def __call__(self, batch: dict) -> dict:
        out = []
        for index, start, payload in zip(batch["index"], batch["start"], batch["payload"]):
            data = json.loads(payload)
            out.append(embed_shard(self.encoder, self.settings, int(index), int(start), data["texts"], data["labels"]))
        return {"index": np.asarray(batch["index"]), "start": np.asarray(batch["start"]),
                "rows": np.asarray(batch["rows"]), "data": np.array(out, dtype=object)}


def shard_output_bytes(settings: dict, rows: int) -> int:
    """Bytes of the vectors of one shard of ``rows`` texts (every layer x pooling asked for)."""
    width = 2 if settings["dtype"] == "float16" else 4
    return rows * len(settings["layers"]) * len(settings["poolings"]) * int(settings["hidden_size"]) * width


def object_store_floor_mb(settings: dict, todo: Sequence[tuple[int, int, int]], actors: int) -> int:
    """The smallest object store (MB) an embedded Ray gets for these shards: :data:`IN_FLIGHT`
    of the largest finished shards per actor, and never below Ray's own minimum of 75 MB."""
    largest = max((rows for _, _, rows in todo), default=0)
    return max(75, math.ceil(IN_FLIGHT * max(1, actors) * shard_output_bytes(settings, largest) / 2**20))


def _init(ray, num_cpus: int | None, object_store_mb: int | None) -> bool:
    """Connect to RAY_ADDRESS or start an embedded local Ray; True when this call started it."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS", "").strip()
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address:
        check_ray_address(address)
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayUnavailable(f"Could not join the Ray cluster at {address}: {' '.join(str(exc).split())[:300]}") from exc
        return True
    # Local workers import this very clsviz (a source checkout need not be installed).
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=num_cpus,
        object_store_memory=None if object_store_mb is None else int(object_store_mb) * 2**20,
        runtime_env={"env_vars": {"PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false"}},
        **options,
    )
    return True


def run_ray_shards(
    settings: dict,
    todo: Sequence[tuple[int, int, int]],
    payload: Callable[[int, int], tuple[list[str], dict]],
    commit: Callable[[int, int, int, bytes], None],
    *,
    actors: int | None = None,
    num_cpus: int | None = None,
    object_store_mb: int | None = None,
    device: str | None = None,
    cancel=None,
) -> None:
    """Embed the shards ``todo`` ((index, first row, rows) each) on Ray actors and hand each
    one's bytes to ``commit(index, start, rows, data)`` as it arrives.

    ``payload(start, rows)`` gives a shard's (texts, labels). ``actors``: how many model-holding
    actors (default: the cluster's GPUs, else its CPUs, at most the shards). ``num_cpus`` /
    ``object_store_mb`` size an embedded local Ray. Raises :class:`RayUnavailable` when Ray is
    missing or the cluster cannot be reached."""
    if not todo:
        return
    ray = _import_ray()
    if object_store_mb is not None and not os.environ.get("RAY_ADDRESS", "").strip() and not ray.is_initialized():
        floor = object_store_floor_mb(settings, todo, actors or num_cpus or os.cpu_count() or 1)
        if object_store_mb < floor:
            warnings.warn(f"an object store of {object_store_mb} MB would hold the Ray actors back (each finished shard "
                          f"takes {shard_output_bytes(settings, max(r for _, _, r in todo)) / 2**20:.0f} MB); using "
                          f"{floor} MB", RuntimeWarning, stacklevel=2)  # fmt: skip
            object_store_mb = floor
    started = _init(ray, num_cpus, object_store_mb)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if actors is None:
            actors = gpus or max(1, int(resources.get("CPU", 1)))
        actors = max(1, min(int(actors), len(todo)))
        rows = []
        for index, start, n in todo:
            texts, labels = payload(start, n)
            rows.append({"index": index, "start": start, "rows": n,
                         "payload": json.dumps({"texts": texts, "labels": labels}, ensure_ascii=False)})
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        placement = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        mapped = ds.map_batches(
            ShardEmbedder,
            fn_constructor_kwargs={"settings": settings, "device": device or ("cuda" if gpus else "cpu")},
            batch_size=1,
            concurrency=actors,
            batch_format="numpy",
            **placement,
        )
        for batch in mapped.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=0):
            check_cancel(cancel, "Embedding")
            for index, start, n, data in zip(batch["index"], batch["start"], batch["rows"], batch["data"]):
                commit(int(index), int(start), int(n), bytes(data))
    finally:
        if started:
            ray.shutdown()
