"""GC tuning for emulator processes: frozen start-up objects, rarer young collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from iotnotify_emulator.runtime import tune_gc_for_serving


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tuning_freezes_what_exists_and_raises_only_the_young_threshold() -> None:
    before = gc.get_threshold()
    tune_gc_for_serving()
    after = gc.get_threshold()
    assert gc.get_freeze_count() > 0
    assert after[0] > before[0]
    assert after[1:] == before[1:]
