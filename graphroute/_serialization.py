"""The saved-router folder: config.json (+ versions), model.safetensors, graph.pt (plain tensors), vocab.json,
scalers.json, arrays.safetensors. Nothing pickles a Python object, so loading runs no foreign code."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pandas as pd
import torch

from graphroute.config import RouterConfig
from graphroute.costs import CostScaler, catalog_costs
from graphroute.data.tables import LogTables, QueryBatch
from graphroute.errors import CorruptRouterError
from graphroute.events import EventCursor
from graphroute.graph.builder import similarity_lists
from graphroute.probes import ProbeMap
from graphroute.schema import LLMProfile
from graphroute.users import UserPreference

if TYPE_CHECKING:
    from graphroute.router import Router

logger = logging.getLogger(__name__)
# 2: pair evidence gained the neighbours' level over all LLMs (14 features, was 11); 3: task_member_sims_ saved
FORMAT_VERSION = 3
FILES = (
    "config.json",
    "model.safetensors",
    "graph.pt",
    "vocab.json",
    "scalers.json",
    "arrays.safetensors",
    "queries.parquet",
    "log.parquet",
    "users.json",
)
R = TypeVar("R", bound="Router")


def _versions() -> dict[str, str]:
    import torch_geometric

    from graphroute._version import __version__

    return {"graphroute": __version__, "torch": torch.__version__, "torch_geometric": torch_geometric.__version__}


def save_router(router: Router, path: Path) -> None:
    from safetensors.torch import save_file

    router.fold()  # feedback not yet in the graph is saved with it
    path.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT_VERSION,
        "versions": _versions(),
        "encoder": router.encoder_.name,
        "config": router.config.model_dump(),
        "model_shape": router.model_shape_,
    }
    (path / "config.json").write_text(json.dumps(meta, indent=2))
    save_file({k: v.contiguous() for k, v in router.model_.state_dict().items()}, str(path / "model.safetensors"))
    torch.save(router.graph_.to_dict(), path / "graph.pt")
    vocab = {
        "llms": [m.model_dump() for m in router.llms_],
        "tasks": router.task_names_,
        "users": router.user_ids_,
        "enabled": router.enabled_.tolist(),
        "probe_maps": {name: m.to_dict() for name, m in router.probe_maps_.items()},
        "events": router.events_cursor_.to_dict() if router.events_cursor_ else None,
    }
    (path / "vocab.json").write_text(json.dumps(vocab, indent=2))
    scalers = {"cost": router.cost_scaler_.to_dict(), "log_cost": list(router.log_cost_stats_)}
    (path / "scalers.json").write_text(json.dumps(scalers, indent=2))
    arrays = {
        name: torch.as_tensor(np.ascontiguousarray(array))
        for name, array in (
            ("task_centroids_", router.task_centroids_),
            ("task_member_sims_", router.task_member_sims_),
            ("user_x_", router.user_x_),
            ("llm_x_", router.llm_x_),
            ("task_x_", router.task_x_),
        )
    }
    q = router.tables_.queries
    arrays.update(query_emb=torch.as_tensor(q.emb), query_tokens=torch.as_tensor(q.tokens))
    save_file(arrays, str(path / "arrays.safetensors"))
    pd.DataFrame(
        {"query_id": router.tables_.query_ids, "query": q.texts, "task": q.tasks, "user_id": q.user_ids}
    ).to_parquet(path / "queries.parquet", index=False)
    router.tables_.frame.to_parquet(path / "log.parquet", index=False)
    prefs = {u: p.to_dict() for u, p in router.user_prefs_.items()}
    (path / "users.json").write_text(json.dumps(prefs))


def check_saved(path: Path) -> None:
    """Cheap checks of a saved router without loading it: every file there, config.json readable and of this
    format, the weights' header readable. Raises CorruptRouterError naming what is wrong."""
    from safetensors import safe_open

    _check_files(path)
    try:
        meta = json.loads((path / "config.json").read_text())
        _check_format(meta, path)
        RouterConfig.model_validate(meta["config"])
        with safe_open(str(path / "model.safetensors"), framework="pt") as weights:
            weights.keys()
    except CorruptRouterError:
        raise
    except Exception as exc:
        raise CorruptRouterError(f"{path}: cannot load saved router: {type(exc).__name__}: {_first_line(exc)}") from exc


def _check_files(path: Path) -> None:
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise CorruptRouterError(f"{path}: not a saved router (missing {', '.join(missing)})")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


def _check_format(meta: dict[str, object], path: Path) -> None:
    version = meta.get("format", 0)
    if not isinstance(version, int):
        raise CorruptRouterError(f"{path}: config.json has no router format")
    if version > FORMAT_VERSION:
        warnings.warn(f"{path} was written by a newer graphroute ({meta.get('versions')})", stacklevel=3)
    elif version < FORMAT_VERSION:
        raise CorruptRouterError(
            f"{path}: saved in router format {version} by {meta.get('versions')}; this graphroute "
            f"reads format {FORMAT_VERSION}: train the router again (`graphroute train`)"
        )


def load_router(cls: type[R], path: Path) -> R:
    """Rebuild from config.json, then load weights and state; any unreadable part is a CorruptRouterError."""
    _check_files(path)
    try:
        return _load(cls, path)
    except CorruptRouterError:
        raise
    except Exception as exc:
        raise CorruptRouterError(f"{path}: cannot load saved router: {type(exc).__name__}: {_first_line(exc)}") from exc


def _load(cls: type[R], path: Path) -> R:
    from safetensors.torch import load_file
    from torch_geometric.data import HeteroData

    from graphroute.encoders import make_encoder
    from graphroute.nn.model import RouterGNN

    meta = json.loads((path / "config.json").read_text())
    _check_format(meta, path)
    router = cls(RouterConfig.model_validate(meta["config"]))
    router.encoder_ = make_encoder(router.config.encoder)
    if router.encoder_.name != meta["encoder"]:
        raise CorruptRouterError(
            f"{path}: saved with encoder {meta['encoder']!r}, config gives {router.encoder_.name!r}"
        )
    vocab = json.loads((path / "vocab.json").read_text())
    router.llms_ = [LLMProfile.model_validate(m) for m in vocab["llms"]]
    router.llm_names_ = [m.name for m in router.llms_]
    router.task_names_, router.user_ids_ = vocab["tasks"], vocab["users"]
    router.enabled_ = np.array(vocab["enabled"], dtype=bool)
    router.probe_maps_ = {name: ProbeMap.from_dict(m) for name, m in vocab.get("probe_maps", {}).items()}
    router.events_cursor_ = EventCursor.from_dict(vocab["events"]) if vocab.get("events") else None
    scalers = json.loads((path / "scalers.json").read_text())
    router.cost_scaler_ = CostScaler.from_dict(scalers["cost"])
    router.log_cost_stats_ = (float(scalers["log_cost"][0]), float(scalers["log_cost"][1]))
    arrays = {name: tensor.numpy() for name, tensor in load_file(str(path / "arrays.safetensors")).items()}
    emb, tokens = arrays["query_emb"], arrays["query_tokens"]
    router.task_centroids_, router.task_member_sims_ = arrays["task_centroids_"], arrays["task_member_sims_"]
    router.user_x_, router.llm_x_, router.task_x_ = arrays["user_x_"], arrays["llm_x_"], arrays["task_x_"]
    queries = pd.read_parquet(path / "queries.parquet")
    batch = QueryBatch(
        queries["query"].tolist(),
        queries["task"].tolist(),
        queries["user_id"].tolist(),
        emb,
        tokens,
        catalog_costs(tokens, router.llms_),
    )
    router.tables_ = LogTables(batch, queries["query_id"].tolist(), pd.read_parquet(path / "log.parquet"))
    raw = json.loads((path / "users.json").read_text())
    router.user_prefs_ = {u: UserPreference.from_dict(p) for u, p in raw.items()}
    router.graph_ = HeteroData.from_dict(torch.load(path / "graph.pt", weights_only=True))
    router.clear_pending()
    lists = similarity_lists(router.graph_)
    if lists is not None:  # the saved lists, not a new search: queries appended since fit keep theirs
        router._knn_cache = lists
    shape = router.model_shape_ = meta["model_shape"]
    router.model_ = RouterGNN(
        shape["in_channels"], {tuple(k.split("|")): v for k, v in shape["edge_dims"].items()}, **shape["kwargs"]
    )
    router.model_.load_state_dict(load_file(str(path / "model.safetensors")))
    router.model_.eval()
    return router
