from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from graphroute import RouterConfig
from graphroute.errors import DataValidationError

REPO = Path(__file__).resolve().parents[1]


def test_base_yaml_is_valid() -> None:
    cfg = RouterConfig.from_yaml(REPO / "training" / "configs" / "base.yaml")
    assert cfg.model.num_layers == 2


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  hidden_chanels: 8\n")
    with pytest.raises(DataValidationError, match="hidden_chanels"):
        RouterConfig.from_yaml(path)


def test_config_is_frozen() -> None:
    cfg = RouterConfig()
    with pytest.raises(ValidationError):
        cfg.policy.alpha = 0.1  # type: ignore[misc]
