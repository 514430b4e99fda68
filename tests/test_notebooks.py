"""Each notebook runs top to bottom (hashing encoder, so seconds each) and ships without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

BOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_three_notebooks() -> None:
    assert [b.stem for b in BOOKS] == ["01_explore_graph", "02_train_and_evaluate", "03_onboard_llm_and_users"]


@pytest.mark.slow
@pytest.mark.parametrize("path", BOOKS, ids=[b.stem for b in BOOKS])
def test_notebook_runs_without_errors_or_warnings(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), "outputs must be stripped"
    monkeypatch.setenv("GRAPHROUTE_NOTEBOOK_ENCODER", "hashing")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for c in book.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    warned = [o["text"] for o in outputs if o.get("name") == "stderr" and "Warning" in o.get("text", "")]
    assert warned == []
