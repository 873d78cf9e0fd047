"""RPC workers without workers: endpoints, layer shares, the budget's split, per-model settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from mr.engine import EngineOptions
from mr.errors import InvalidArgumentError
from mr.rpc import LayerPlacement, WorkerMemory, parse_endpoints, shares
from mr.runner import ModelSettings, SettingsFile
from mr.runner import workers as budget
from mr.runner.memory import MemoryEstimate

MIB = 1 << 20


def test_endpoints_are_checked() -> None:
    assert parse_endpoints("10.0.0.2:50052, host-b:7000") == ("10.0.0.2:50052", "host-b:7000")
    assert parse_endpoints(["a:1"]) == ("a:1",)
    assert parse_endpoints("none") == parse_endpoints("") == parse_endpoints(None) == ()
    for bad in ("nohost", "a:0", "a:65536", ":1", "a:b", "a:1,a:1", "a b:1"):
        with pytest.raises(InvalidArgumentError):
            parse_endpoints(bad)
    with pytest.raises(InvalidArgumentError):
        EngineOptions(rpc=("a:x",)).validate()


def test_shares_count_layers_and_the_output_layer() -> None:
    placement = [LayerPlacement("CPU", "", 10, False), LayerPlacement("RPC0", "w1:1", 11, False),
                 LayerPlacement("RPC1", "w2:1", 9, True)]
    local, remote = shares(placement, 30)
    assert local == pytest.approx(10 / 31)
    assert remote == pytest.approx({"w1:1": 11 / 31, "w2:1": 10 / 31})
    assert shares([], 30) == (1.0, {})


def test_the_budget_splits_a_model_by_memory_and_refuses_what_a_worker_cannot_hold() -> None:
    est = MemoryEstimate(weights=200 * MIB, kv_cache=50 * MIB, compute=50 * MIB, n_ctx=2048)
    reported = [WorkerMemory("w1:1", "RPC0", 1024 * MIB, 1024 * MIB), WorkerMemory("w2:1", "RPC1", 1024 * MIB,
                                                                                  1024 * MIB)]
    plan = budget.predict(est, reported, local_memory=1024 * MIB)
    assert plan.local == pytest.approx(100 * MIB, rel=0.01)
    assert plan.remote == pytest.approx({"w1:1": 100 * MIB, "w2:1": 100 * MIB}, rel=0.01)
    room = budget.room(budget.reported_totals(reported), {"w1:1": 1000 * MIB})
    assert room == {"w1:1": 24 * MIB, "w2:1": 1024 * MIB}
    why = budget.refusal("big", est, plan, pool=512 * MIB, room=room)
    assert why is not None and "w1:1" in why
    assert budget.refusal("big", est, plan, pool=512 * MIB, room=budget.room({"w1:1": MIB << 10,
                                                                              "w2:1": MIB << 10}, {})) is None
    assert "this machine" in (budget.refusal("big", est, plan, pool=10 * MIB, room=room) or "")


def test_workers_are_a_per_model_setting(tmp_path: Path) -> None:
    file = SettingsFile(tmp_path / "settings.json")
    file.set("m", ModelSettings(rpc=["w1:1", "w2:1"]))
    assert file.set("m", ModelSettings(parallel=2)).rpc == ["w1:1", "w2:1"]  # kept by other changes
    assert file.set("m", ModelSettings(rpc=[])).rpc == []  # none: this machine only
    assert SettingsFile(tmp_path / "settings.json").get("m").rpc == []
    with pytest.raises(InvalidArgumentError) as info:
        ModelSettings(rpc=["bad"]).validate()
    assert info.value.param == "rpc"  # type: ignore[attr-defined]
