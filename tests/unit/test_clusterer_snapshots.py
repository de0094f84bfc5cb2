"""Clusterer snapshots written before a class moved still restore, to the same state."""

from __future__ import annotations

import pickle
import zlib
from collections import OrderedDict
from pathlib import Path

import pytest
from test_clustering import _toy

from newsflow.domain import clusterer_settings, clustering
from newsflow.readside import story_clusterer

# Written by the code of commit ede0e4d (newsflow.story_clusterer.ClustererState holding a
# newsflow.domain.clustering.Settings), from the toy stream of test_clustering.py.
BEFORE_LAYOUT = Path(__file__).parents[1] / "fixtures" / "clusterer_snapshot_before_layout.bin"


def _state_now() -> story_clusterer.ClustererState:
    model = clustering.OnlineClusterer(clusterer_settings.ClustererSettings(threshold=0.2))
    state = story_clusterer.ClustererState(model, OrderedDict(), {})
    for a in _toy():
        state.remember(a.article_id, model.add(a).story_id)
        state.articles += 1
    return state


def _plain(value: object) -> object:
    """Objects as nested plain data; sets sorted (their pickled order follows the process's hash seed)."""
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return [(k, _plain(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)  # type: ignore[type-var]
    return value


def test_a_snapshot_naming_the_old_module_paths_restores_the_same_state() -> None:
    blob = BEFORE_LAYOUT.read_bytes()
    assert b"newsflow.story_clusterer" in zlib.decompress(blob), "the fixture names the old paths"
    with pytest.raises(ModuleNotFoundError):  # plain pickle cannot read it: the alias table is what restores it
        pickle.loads(zlib.decompress(blob))
    restored = story_clusterer._load(blob)
    assert _plain(restored) == _plain(_without_dense_fields(_state_now()))
    assert restored.model.s.threshold == 0.2


DENSE_SETTINGS = ("w_dense", "dense_center", "cross_threshold", "center_shrink")


def _without_dense_fields(state: story_clusterer.ClustererState) -> story_clusterer.ClustererState:
    """The state as the fixture's code had it: no dense signal (tests/unit/test_dense_signal.py restores that)."""
    model = state.model
    for field in DENSE_SETTINGS:
        object.__delattr__(model.s, field)
    for story in model.stories.values():
        del story.__dict__["dense"], story.__dict__["languages"]
    return state
