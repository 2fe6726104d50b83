"""The analysis functions of notebook 05's study module, on hand-made run tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analoglib.studies import pipeline_training as study


def _table() -> pd.DataFrame:
    # two runs of one rule: async M = 1 and M = 4, accuracy crossing 0.5 between evaluations
    return pd.DataFrame(
        [
            {"stages": 1, "mode": "async", "rule": "sgd", "samples": [10, 20, 30],
             "cycles": [20, 40, 60], "accuracy": [0.2, 0.4, 0.6]},
            {"stages": 4, "mode": "async", "rule": "sgd", "samples": [10, 20, 30],
             "cycles": [26, 46, 66], "accuracy": [0.3, 0.7, 0.8]},
            {"stages": 4, "mode": "sync", "rule": "sgd", "samples": [10, 20, 30],
             "cycles": [40, 80, 120], "accuracy": [0.2, 0.3, 0.5]},
        ]
    )  # fmt: skip


def test_cycles_to_target_interpolates_and_derives_no_pipeline() -> None:
    ctt = study.cycles_to_target(_table(), target=0.5).set_index(["stages", "mode"])
    # M = 1 async: between (20, 40, 0.4) and (30, 60, 0.6): halfway
    assert ctt.loc[(1, "async"), "samples"] == pytest.approx(25.0)
    assert ctt.loc[(1, "async"), "cycles"] == pytest.approx(50.0)
    assert ctt.loc[(4, "async"), "cycles"] == pytest.approx(26 + 0.5 * 20)
    assert ctt.loc[(4, "sync"), "cycles"] == pytest.approx(120.0)
    # no pipeline at M = 4 is the M = 1 run at 2M instead of 2 cycles per micro-batch
    assert ctt.loc[(4, "none"), "cycles"] == pytest.approx(4 * 50.0)
    assert bool(ctt.loc[(4, "none"), "derived"])
    never = study.cycles_to_target(_table(), target=0.95)
    assert never["cycles"].map(math.isnan).all()


def test_speedup_table_sits_beside_the_closed_forms() -> None:
    ctt = study.cycles_to_target(_table(), target=0.5)
    table = study.speedup_table(ctt, microbatches_per_minibatch=5).set_index("stages")
    assert table.loc[4, "closed_sync_over_async"] == pytest.approx((5 + 4 - 1) / 5)
    assert table.loc[4, "closed_none_over_async"] == 4.0
    assert table.loc[4, "sync_over_async"] == pytest.approx(120 / 36)
    assert table.loc[4, "none_over_async"] == pytest.approx(200 / 36)


def test_staleness_table_expects_m_minus_stage_in_async_only() -> None:
    runs = pd.DataFrame(
        [
            {"stages": 3, "mode": mode, "rule": "sgd",
             "staleness": [{"stage": m, "mean": 3 - m if mode == "async" else 0, "min": 0, "max": 3}
                           for m in (1, 2, 3)]}
            for mode in ("async", "sync")
        ]
    )  # fmt: skip
    table = study.staleness_table(runs).set_index(["mode", "stage"])
    assert table.loc[("async", 1), "expected"] == 2
    assert table.loc[("async", 3), "expected"] == 0
    assert (table.xs("sync")["expected"] == 0).all()
    assert (table["mean"] == table["expected"]).all()
