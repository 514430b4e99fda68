"""The one typed configuration of a router; each component receives only its own sub-config."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EncoderTuningConfig(_Strict):
    """Fine-tuning MiniLM on the routing objective before the router embeds its log (minilm encoder only)."""

    epochs: int = Field(
        default=0,
        ge=0,
        description="Passes over the training queries (0: the bundled encoder as it is). The tuned encoder is saved "
        "in the router folder and embeds every query the router sees, when fitting and when serving.",
    )
    layers: int = Field(
        default=2, ge=1, le=6, description="Top transformer layers tuned (the ones below stay as bundled)."
    )
    lr: float = Field(default=2e-5, gt=0, description="AdamW learning rate of the tuned layers.")
    batch_size: int = Field(default=32, ge=2, description="Queries per step (the query-query contrast is in-batch).")
    temperature: float = Field(default=0.05, gt=0, description="Temperature of both contrastive losses.")
    task_weight: float = Field(
        default=1.0, ge=0, description="Weight of the query-query contrast (queries of one task pulled together)."
    )
    margin: float = Field(
        default=0.1,
        ge=0,
        description="A query teaches which LLMs suit it when its best and worst effects differ by more than this; "
        "the LLMs within it of the best are its positives, those within it of the worst its negatives.",
    )
    max_tokens: int = Field(default=64, gt=0, description="Tokens of each query read while tuning (speed).")


class EncoderConfig(_Strict):
    kind: Literal["minilm", "hashing"] = Field(
        default="minilm", description="'minilm': bundled all-MiniLM-L6-v2; 'hashing': fast deterministic (tests)."
    )
    dim: int = Field(default=384, gt=0, description="Output dimension of the hashing encoder.")
    batch_size: int = Field(default=32, gt=0, description="Texts per encoder batch (sorted by length).")
    cache_dir: str | None = Field(
        default=None,
        description="Folder of the on-disk embedding cache and the exported ONNX model; None: no cache, the model "
        "exported into a temporary folder per process.",
    )
    runtime: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="What runs MiniLM: 'onnx' (ONNX Runtime, about twice as fast on a CPU; checked against the "
        "reference at first use) or 'torch' (sentence-transformers, the reference).",
    )
    quantize: bool = Field(
        default=False,
        description="Run MiniLM quantised to int8 (onnx runtime only): faster, with vectors close to but not equal "
        "to the exact ones (a cache and a router of their own).",
    )
    tuning: EncoderTuningConfig = Field(default_factory=EncoderTuningConfig)

    @model_validator(mode="after")
    def _tunable(self) -> EncoderConfig:
        if self.tuning.epochs and self.kind != "minilm":
            raise ValueError(f"tuning.epochs: only the minilm encoder can be fine-tuned (kind is {self.kind!r})")
        return self


class GraphConfig(_Strict):
    k_neighbors: int = Field(default=10, gt=0, description="Similar training queries linked to each query.")
    unseen_task: Literal["gated", "nearest", "overall"] = Field(
        default="gated",
        description="Task evidence for a request naming a task the router never saw. 'nearest' borrows the "
        "table of the known task with the nearest centroid; 'overall' uses each LLM's overall mean; 'gated' "
        "borrows the nearest table as far as the query resembles that task's members (fully when it is as close "
        "to the centroid as the median member) and the overall mean for the rest (docs/benchmarks.md compares them). "
        "A request without a task always uses 'nearest'.",
    )


class ModelConfig(_Strict):
    hidden_channels: int = Field(default=64, gt=0, description="Width of every node state.")
    num_layers: int = Field(default=2, ge=1, le=6, description="Message-passing rounds of the node encoder.")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout on node states.")
    fallback: Literal["overall", "task"] = Field(
        default="overall",
        description="What the predicted differences between LLMs fall back to where validation does not confirm "
        "them: 'overall' each LLM's mean over the log (the best single LLM's ranking); 'task' its mean on the "
        "query's task, kept or dropped apart from the rest (the best LLM per task's ranking, then the best single "
        "LLM's). 'task' helps on logs with two outcomes per query whose per-query signal is noise "
        "(docs/benchmarks.md).",
    )


class TrainConfig(_Strict):
    epochs: int = Field(default=40, gt=0, description="Maximum epochs.")
    steps_per_epoch: int = Field(default=10, gt=0, description="Disjoint target batches per epoch.")
    lr: float = Field(default=1e-2, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(default=1e-4, ge=0, description="Adam weight decay.")
    patience: int = Field(default=6, gt=0, description="Epochs without validation gain before stopping.")
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="Queries carved from train for validation.")
    cost_weight: float = Field(default=0.5, ge=0, description="Weight of the cost loss beside the effect loss.")
    seed: int = Field(default=0, description="Seed of splits, initialisation and target sampling.")
    device: str = Field(default="cpu", description="'cpu', 'cuda' or 'auto' (GPU when present).")
    deterministic: bool = Field(
        default=True,
        description="Torch's deterministic kernels: one seed, one model (full-graph epochs run about a third slower).",
    )
    sampling: Literal["auto", "full", "neighbor"] = Field(
        default="auto",
        description="'full': every step encodes the whole graph; 'neighbor': mini-batches on sampled subgraphs "
        "(logs too large for full-graph steps); 'auto': neighbour sampling past 200,000 outcomes.",
    )
    batch_size: int = Field(default=2048, gt=0, description="Target queries per neighbour-sampled step.")
    fanouts: list[int] = Field(
        default=[10, 5],
        min_length=1,
        description="Incoming edges sampled per node and relation, per layer from the batch outwards (the last "
        "entry repeats for deeper models).",
    )


class OnboardingConfig(_Strict):
    prior: Literal["description", "average"] = Field(
        default="average",
        description="What a new LLM's effect starts from. 'average': the known LLMs' average, query by query (without "
        "probes its own level from description, prices and size is not used: on the benchmark catalogs it predicts "
        "worse than the average); 'description': that average shifted per task towards the task means of the known "
        "LLMs alike in description, as far as descriptions explain them leave-one-LLM-out (graphroute.prior).",
    )
    level_threshold: float = Field(
        default=0.0,
        ge=0.0,
        description="How many posterior standard deviations a probed task's level over the known LLMs' average is "
        "moved back towards it (to 0 where it would cross). 0: the posterior mean, which recovers most where a new "
        "LLM is worth having; 0.5 keeps new LLMs off queries they win by a few lucky probes, for catalogs of "
        "similar LLMs where there is little to recover (graphroute.probes).",
    )


class ExplorationConfig(_Strict):
    method: Literal["none", "epsilon", "thompson", "ucb"] = Field(
        default="none",
        description="How routing explores (graphroute.exploration): 'none' always picks the predicted best; "
        "'epsilon' sometimes picks another LLM at random; 'thompson' picks the best of a draw from each LLM's "
        "predicted utility and its uncertainty (LLMs with little evidence are tried more); 'ucb' picks the best "
        "utility plus ucb_beta times its uncertainty. Route answers state whether a choice explored and its "
        "propensity.",
    )
    budget: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Most predicted utility given up per request, on average over the requests served (an "
        "account: an LLM whose predicted loss exceeds what is left is not explored).",
    )
    max_share: float = Field(
        default=0.2, ge=0, le=1, description="epsilon and thompson: the largest chance that a request explores."
    )
    ucb_beta: float = Field(default=1.0, ge=0, description="ucb: weight of the uncertainty bonus.")
    seed: int = Field(default=0, description="Seed of the exploring draws.")


class PolicyConfig(_Strict):
    alpha: float = Field(default=0.5, ge=0, le=1, description="Default trade-off: alpha*effect - (1-alpha)*cost.")


class RouterConfig(_Strict):
    """Everything that defines a router; saved with it and validated on load.

    Example:
        >>> RouterConfig(model={"hidden_channels": 32}).model.hidden_channels
        32
    """

    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    graph: GraphConfig = Field(default_factory=GraphConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    onboarding: OnboardingConfig = Field(default_factory=OnboardingConfig)
    exploration: ExplorationConfig = Field(default_factory=ExplorationConfig)

    def with_seed(self, seed: int) -> RouterConfig:
        """The same config trained with another seed: one fit per seed in the benchmarks."""
        return self.model_copy(update={"train": self.train.model_copy(update={"seed": seed})})

    @classmethod
    def from_yaml(cls, path: str | Path) -> RouterConfig:
        """Read a YAML config; unknown keys are an error naming the key."""
        import yaml

        from graphroute.errors import DataValidationError

        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
            return cls.model_validate(raw)
        except FileNotFoundError as exc:
            raise DataValidationError(f"{path}: config file not found") from exc
        except Exception as exc:  # pydantic / yaml errors
            raise DataValidationError(f"{path}: invalid config: {exc}") from exc
