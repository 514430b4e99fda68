"""The saved-router folder: config.json (+ versions), model.safetensors, graph.pt (plain tensors), vocab.json,
scalers.json, arrays.safetensors. Nothing pickles a Python object, so loading runs no foreign code."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from graphroute.config import RouterConfig
from graphroute.costs import CostScaler, catalog_costs
from graphroute.data.tables import LogTables, QueryBatch
from graphroute.encoders import make_encoder, model_folder
from graphroute.errors import CorruptRouterError
from graphroute.events import EventCursor
from graphroute.fallback import ThinEvidenceFallback
from graphroute.graph.builder import similarity_lists
from graphroute.prior import TaskPrior
from graphroute.probes import ProbeMap
from graphroute.schema import LLMProfile
from graphroute.state import GNNState, NodeFeatures
from graphroute.uncertainty import IntervalCalibration
from graphroute.users import UserPreference

logger = logging.getLogger(__name__)
# 2: pair evidence gained the neighbours' level over all LLMs (14 features, was 11); 3: task_member_sims saved;
# 4: arrays named after the state's fields
FORMAT_VERSION = 6
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
ENCODER_DIR = "encoder"  # a tuned MiniLM (sentence-transformers folder), only when the router was fitted with one


def tuned_encoder_dir(path: Path) -> Path | None:
    """The tuned encoder saved in a router folder, or None when the router uses the bundled one."""
    folder = path / ENCODER_DIR
    return folder if folder.is_dir() else None


def _versions() -> dict[str, str]:
    import torch_geometric

    from graphroute._version import __version__

    return {"graphroute": __version__, "torch": torch.__version__, "torch_geometric": torch_geometric.__version__}


def save_state(state: GNNState, config: RouterConfig, path: Path) -> None:
    """Write a router's config and state as the folder ``load_state`` reads."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT_VERSION,
        "versions": _versions(),
        "encoder": state.encoder.name,
        "config": config.model_dump(),
        "model_shape": state.model_shape,
    }
    (path / "config.json").write_text(json.dumps(meta, indent=2))
    tuned = model_folder(state.encoder)
    if tuned is not None and tuned.resolve() != (path / ENCODER_DIR).resolve():
        shutil.copytree(tuned, path / ENCODER_DIR, dirs_exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.model.state_dict().items()}, str(path / "model.safetensors"))
    torch.save(state.graph.to_dict(), path / "graph.pt")
    vocab = {
        "llms": [m.model_dump() for m in state.llms],
        "tasks": state.task_names,
        "users": state.user_ids,
        "enabled": state.enabled.tolist(),
        "probe_maps": {name: m.to_dict() for name, m in state.probe_maps.items()},
        "task_priors": {name: p.to_dict() for name, p in state.task_priors.items()},
        "events": state.events_cursor.to_dict() if state.events_cursor else None,
    }
    (path / "vocab.json").write_text(json.dumps(vocab, indent=2))
    scalers = {
        "cost": state.cost_scaler.to_dict(),
        "log_cost": list(state.features.log_cost),
        "interval": state.interval_calibration.to_dict(),
        "fallback": state.fallback.to_dict(),
    }
    (path / "scalers.json").write_text(json.dumps(scalers, indent=2))
    f, q = state.features, state.tables.queries
    arrays = {
        "task_centroids": state.task_centroids,
        "task_member_sims": state.task_member_sims,
        "user_x": f.user_x,
        "llm_x": f.llm_x,
        "task_x": f.task_x,
        "query_emb": q.emb,
        "query_tokens": q.tokens,
    }
    save_file(
        {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in arrays.items()}, str(path / "arrays.safetensors")
    )
    pd.DataFrame(
        {"query_id": state.tables.query_ids, "query": q.texts, "task": q.tasks, "user_id": q.user_ids}
    ).to_parquet(path / "queries.parquet", index=False)
    state.tables.frame.to_parquet(path / "log.parquet", index=False)
    prefs = {u: p.to_dict() for u, p in state.user_prefs.items()}
    (path / "users.json").write_text(json.dumps(prefs))


def read_events_cursor(path: Path) -> EventCursor | None:
    """The store position a saved router includes, read without loading it."""
    vocab = json.loads((path / "vocab.json").read_text())
    return EventCursor.from_dict(vocab["events"]) if vocab.get("events") else None


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


def load_state(path: Path) -> tuple[RouterConfig, GNNState]:
    """Read a folder written by ``save_state``; any unreadable part is a CorruptRouterError."""
    _check_files(path)
    try:
        return _load(path)
    except CorruptRouterError:
        raise
    except Exception as exc:
        raise CorruptRouterError(f"{path}: cannot load saved router: {type(exc).__name__}: {_first_line(exc)}") from exc


def _load(path: Path) -> tuple[RouterConfig, GNNState]:
    from safetensors.torch import load_file
    from torch_geometric.data import HeteroData

    from graphroute.nn.model import RouterGNN

    meta = json.loads((path / "config.json").read_text())
    _check_format(meta, path)
    config = RouterConfig.model_validate(meta["config"])
    encoder = make_encoder(config.encoder, model_dir=tuned_encoder_dir(path))
    if encoder.name != meta["encoder"]:
        raise CorruptRouterError(f"{path}: saved with encoder {meta['encoder']!r}, config gives {encoder.name!r}")
    vocab = json.loads((path / "vocab.json").read_text())
    llms = [LLMProfile.model_validate(m) for m in vocab["llms"]]
    scalers = json.loads((path / "scalers.json").read_text())
    arrays = {name: tensor.numpy() for name, tensor in load_file(str(path / "arrays.safetensors")).items()}
    queries = pd.read_parquet(path / "queries.parquet")
    tokens = arrays["query_tokens"]
    batch = QueryBatch(
        queries["query"].tolist(),
        queries["task"].tolist(),
        queries["user_id"].tolist(),
        arrays["query_emb"],
        tokens,
        catalog_costs(tokens, llms),
    )
    shape = meta["model_shape"]
    model = RouterGNN(
        shape["in_channels"], {tuple(k.split("|")): v for k, v in shape["edge_dims"].items()}, **shape["kwargs"]
    )
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    graph = HeteroData.from_dict(torch.load(path / "graph.pt", weights_only=True))
    users = json.loads((path / "users.json").read_text())
    state = GNNState(
        encoder=encoder,
        llms=llms,
        enabled=np.array(vocab["enabled"], dtype=bool),
        cost_scaler=CostScaler.from_dict(scalers["cost"]),
        task_names=vocab["tasks"],
        task_centroids=arrays["task_centroids"],
        user_ids=vocab["users"],
        features=NodeFeatures(
            (float(scalers["log_cost"][0]), float(scalers["log_cost"][1])),
            arrays["llm_x"],
            arrays["task_x"],
            arrays["user_x"],
        ),
        task_member_sims=arrays["task_member_sims"],
        model=model.eval(),
        model_shape=shape,
        tables=LogTables(batch, queries["query_id"].tolist(), pd.read_parquet(path / "log.parquet")),
        graph=graph,
        user_prefs={u: UserPreference.from_dict(p) for u, p in users.items()},
        probe_maps={name: ProbeMap.from_dict(m) for name, m in vocab.get("probe_maps", {}).items()},
        task_priors={name: TaskPrior.from_dict(p) for name, p in vocab.get("task_priors", {}).items()},
        events_cursor=EventCursor.from_dict(vocab["events"]) if vocab.get("events") else None,
        interval_calibration=IntervalCalibration.from_dict(scalers["interval"]),
        fallback=ThinEvidenceFallback.from_dict(scalers["fallback"]),
        # the saved lists, not a new search: queries appended since fit keep theirs
        neighbor_lists=similarity_lists(graph),
    )
    return config, state
