"""Progress bars for long work (embedding, training epochs): one switch for the whole library.

Off by default in library use unless logging is at INFO, so scripts and notebooks stay quiet; the CLI turns it on
when stderr is a terminal. Plain tqdm, not tqdm.auto: the notebook widget needs ipywidgets and warns without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
_enabled: bool | None = None


def enable(on: bool | None) -> None:
    """True or False: always or never show bars; None: show them when graphroute logs at INFO."""
    global _enabled
    _enabled = on


def enabled() -> bool:
    if _enabled is not None:
        return _enabled
    return logging.getLogger("graphroute").isEnabledFor(logging.INFO)


def bar(items: Iterable[T], desc: str, total: int | None = None, show: bool = True) -> tqdm[T]:
    """``items`` with a progress bar that disappears when done; ``show`` False (short work) keeps it off."""
    return tqdm(items, desc=desc, total=total, leave=False, disable=not (show and enabled()), dynamic_ncols=True)
