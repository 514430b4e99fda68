"""Turn the shared benchmark sets into the interaction-log format. The data is read where it lies, never copied."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from graphroute import schema as s
from graphroute.errors import DataValidationError
from graphroute.schema import LLMProfile

ROUTERDC_OOD = ("ceval", "MATH_prealgebra", "mbpp", "javascript")


@dataclass(frozen=True)
class Benchmark:
    """A train log, named test logs, and the catalog."""

    train: pd.DataFrame
    tests: dict[str, pd.DataFrame]
    llms: list[LLMProfile]


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise DataValidationError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        if ".jsonl" in path.name:
            return [json.loads(line) for line in handle if line.strip()]
        return json.load(handle)


def _long(rows: list[dict], task_of: dict[str, str] | None = None, task: str | None = None) -> pd.DataFrame:
    records: list[dict[str, object]] = []
    for row in rows:
        q = row["question"]
        t = task if task is not None else (task_of or {}).get(q, s.DEFAULT_TASK)
        records.extend({s.QUERY: q, s.LLM: m, s.EFFECT: float(v), s.TASK: t} for m, v in row["scores"].items())
    return pd.DataFrame(records)


def load_llmrouter(folder: str | Path) -> Benchmark:
    """llmrouter-9llm: 9 scored LLMs, task from the query files; test questions seen in train are dropped
    from train, so no test question is trained on. Cost is left to the catalog estimate (no token counts in the set)."""
    folder = Path(folder)
    catalog = _read_json(folder / "default_llm.json")
    train_rows = _read_json(folder / "train.json.gz")
    test_rows = _read_json(folder / "test.json.gz")
    task_of: dict[str, str] = {}
    for name in ("default_query_train.jsonl.gz", "default_query_test.jsonl.gz"):
        for row in _read_json(folder / name):
            task_of.setdefault(row["query"], row["task_name"])
    test_questions = {r["question"] for r in test_rows}
    train_rows = [r for r in train_rows if r["question"] not in test_questions]
    scored = set(test_rows[0]["scores"])
    llms = [
        LLMProfile(
            name=name,
            description=m["feature"],
            input_price=m["input_price"],
            output_price=m["output_price"],
            size=float(str(m.get("size", "0")).rstrip("Bb") or 0),
        )
        for name, m in catalog.items()
        if name in scored
    ]
    train = _long(train_rows, task_of).drop_duplicates([s.QUERY, s.LLM])
    test = _long(test_rows, task_of).drop_duplicates([s.QUERY, s.LLM])
    return Benchmark(train, {"test": test}, llms)


ROUTERDC_DESCRIPTIONS = {
    "mistralai/Mistral-7B-v0.1": "Mistral 7B base model, a general English pretrained model.",
    "meta-math/MetaMath-Mistral-7B": "Mistral 7B fine-tuned on MetaMathQA for math reasoning and word problems.",
    "itpossible/Chinese-Mistral-7B-v0.1": "Mistral 7B adapted to Chinese with extended vocabulary and pretraining.",
    "HuggingFaceH4/zephyr-7b-beta": "Zephyr 7B, Mistral fine-tuned with DPO as a helpful chat assistant.",
    "cognitivecomputations/dolphin-2.6-mistral-7b": "Dolphin 2.6, uncensored Mistral 7B tuned for code and chat.",
    "meta-llama/Meta-Llama-3-8B": "Meta Llama 3 8B base model, strong general knowledge and code.",
    "cognitivecomputations/dolphin-2.9-llama3-8b": "Dolphin 2.9, Llama 3 8B instruction-tuned for code, math and chat.",
}


def load_routerdc(folder: str | Path) -> Benchmark:
    """routerdc-7llm: train on the in-distribution train files; tests 'id' (their test files) and 'ood'
    (ceval, MATH_prealgebra, mbpp, javascript). All 7 LLMs are 7–8B, so they share one price."""
    folder = Path(folder)
    train_parts, id_parts, ood_parts = [], [], []
    for path in sorted(folder.glob("*.json.gz")):
        stem = path.name.removesuffix(".json.gz")
        task = stem.replace("-train", "").replace("-test", "").removesuffix("_train").removesuffix("_test")
        frame = _long(_read_json(path), task=task)
        if stem in ROUTERDC_OOD:
            ood_parts.append(frame)
        elif stem.endswith(("train", "_train")):
            train_parts.append(frame)
        else:
            id_parts.append(frame)
    if not train_parts:
        raise DataValidationError(f"{folder}: no routerdc train files")
    test_id, test_ood = pd.concat(id_parts), pd.concat(ood_parts)
    held_out = set(test_id[s.QUERY]) | set(test_ood[s.QUERY])
    train = pd.concat(train_parts)
    train = train[~train[s.QUERY].isin(held_out)].drop_duplicates([s.QUERY, s.LLM])
    llms = [
        LLMProfile(name=n, description=d, input_price=0.2, output_price=0.2, size=7.5)
        for n, d in ROUTERDC_DESCRIPTIONS.items()
    ]
    return Benchmark(
        train.reset_index(drop=True),
        {
            "id": test_id.drop_duplicates([s.QUERY, s.LLM]).reset_index(drop=True),
            "ood": test_ood.drop_duplicates([s.QUERY, s.LLM]).reset_index(drop=True),
        },
        llms,
    )
