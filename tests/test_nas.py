"""AnalogNAS: search spaces, network builder, bench loader, surrogate, searches, evaluator."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from analoglib import nas
from analoglib.models import AnalogNASResNet
from analoglib.nas import evaluate as nas_evaluate
from analoglib.parallel import PointError

SPACES = [nas.cpu_small(), nas.analognas_code(), nas.analognas_paper()]


def _bench_or_skip() -> pd.DataFrame:
    try:
        return nas.load_analognas_bench()
    except FileNotFoundError as err:
        pytest.skip(str(err))


# ---- N1: sampling, ranges, encoding ---------------------------------------------------------
@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_sampling_respects_every_range_and_zeroes_unused_groups(space) -> None:
    rng = np.random.default_rng(0)
    configs = space.sample(rng, 300) + space.latin_hypercube(rng, 300)
    for config in configs:
        assert space.contains(config), config
        m = config["M"]
        assert all(config[f"R{i}"] == config[f"B{i}"] == 0 for i in range(m + 1, 6))
    # the draws reach both ends of the group range
    assert {c["M"] for c in configs} >= {space.groups[0], space.groups[1]}


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_encode_decode_round_trips(space) -> None:
    configs = space.sample(np.random.default_rng(1), 50)
    features = space.encode(configs)
    assert features.shape == (50, len(nas.FEATURES))
    assert space.decode(features) == configs


def test_latin_hypercube_uses_every_stratum_once() -> None:
    space = nas.cpu_small()
    n = len(space.out_channels0) * 4
    configs = space.latin_hypercube(np.random.default_rng(2), n)
    counts = pd.Series([c["out_channel0"] for c in configs]).value_counts()
    assert set(counts) == {4}  # each of the 3 stem widths in exactly n / 3 rows


@pytest.mark.parametrize("kind", ["width", "depth", "other"])
def test_mutations_stay_in_range_and_change_the_config(kind: str) -> None:
    space = nas.cpu_small()
    rng = np.random.default_rng(3)
    for config in space.sample(rng, 100):
        child = space.mutate(config, kind, rng)
        assert space.contains(child)
        assert child != config


def test_nb201_space_encoding_and_mutation() -> None:
    space = nas.NB201Space()
    rng = np.random.default_rng(4)
    cells = space.sample(rng, 100)
    assert space.decode(space.encode(cells)) == cells
    child = space.mutate(cells[0], "op", rng)
    assert sum(a != b for a, b in zip(child, cells[0], strict=True)) == 1
    lhs = space.latin_hypercube(rng, 10)
    for edge in range(6):
        assert sorted(c[edge] for c in lhs) == sorted(list(range(5)) * 2)


def test_space_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError, match="groups"):
        nas.ResNetLikeSpace("x", (8,), (1, 6), (1, 2), (1, 2), (1, 1), (0.5, 0.8))
    with pytest.raises(ValueError, match="widen_divisor"):
        nas.ResNetLikeSpace("x", (8,), (1, 2), (1, 2), (1, 2), (1, 1), (0.5, 1.5))
    with pytest.raises(ValueError, match="kind"):
        nas.cpu_small().mutate(
            nas.cpu_small().sample(np.random.default_rng(0))[0], "x", np.random.default_rng(0)
        )


# ---- N2: network builder ---------------------------------------------------------------------
def _config(c0: int, groups: list[tuple[int, int, float]]) -> dict:
    config = {"out_channel0": c0, "M": len(groups)}
    for i in range(5):
        r, b, w = groups[i] if i < len(groups) else (0, 0, 0.0)
        config.update(
            {
                f"R{i + 1}": r,
                f"B{i + 1}": b,
                f"convblock{i + 1}": int(r > 0),
                f"widenfact{i + 1}": w,
            }
        )
    return {name: config[name] for name in nas.FEATURES}


def test_parameter_count_of_a_hand_computed_config() -> None:
    # stem 7x7 1->4 + BN; one block 4->8 with one branch (3x3 4->8, BN, 3x3 8->8, BN) and a
    # two-path 1x1 shortcut 4->8 + BN; classifier 8->10 with bias
    config = _config(4, [(1, 1, 0.5)])
    stem = 49 * 1 * 4 + 2 * 4
    branch = 9 * 4 * 8 + 2 * 8 + 9 * 8 * 8 + 2 * 8
    shortcut = 4 * 8 + 2 * 8
    head = 8 * 10 + 10
    model = AnalogNASResNet(config, in_channels=1, num_classes=10)
    total = sum(p.numel() for p in model.parameters())
    assert total == stem + branch + shortcut + head
    assert nas.parameter_count(config, 1, 10) == total


@pytest.mark.parametrize("space", SPACES[:2], ids=lambda s: s.name)
def test_parameter_count_closed_form_matches_the_built_network(space) -> None:
    for config in space.sample(np.random.default_rng(5), 6):
        if nas.parameter_count(config, 3) > 3_000_000:
            continue  # keeps the test fast; the formula does not depend on size
        model = AnalogNASResNet(config, in_channels=3, num_classes=10)
        assert nas.parameter_count(config, 3, 10) == sum(p.numel() for p in model.parameters())


def test_network_output_shape_and_strides() -> None:
    config = _config(6, [(1, 2, 0.5), (2, 1, 0.8), (1, 1, 0.6)])
    model = AnalogNASResNet(config, in_channels=1, num_classes=7).eval()
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 7)
    # strides 1, 2, 2: 28 -> 24 (7x7 stem, padding 1) -> 24 -> 12 -> 6
    features = model.blocks(model.stem_bn(model.stem(torch.randn(1, 1, 28, 28))))
    assert features.shape[-1] == 6


# ---- N3: bench loader ------------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_bench_loader_refuses_other_globals(tmp_path) -> None:
    path = tmp_path / "crafted.anb"
    path.write_bytes(pickle.dumps({(0,) * 6: _Evil()}))
    with pytest.raises(nas.BenchFormatError, match="system"):
        nas.load_analognas_bench(path)
    path.write_bytes(pickle.dumps({(0,) * 6: pd.Timestamp(0)}))
    with pytest.raises(nas.BenchFormatError, match="pandas"):
        nas.load_analognas_bench(path)


def test_bench_has_every_cell_and_the_empty_cell_is_chance() -> None:
    bench = _bench_or_skip()
    assert len(bench) == 5**6 == bench["cell"].nunique()
    empty = bench[bench["cell"] == (1,) * 6].iloc[0]  # every edge "none": no path, chance
    accuracies = [
        c
        for c in bench.columns
        if c.split("_")[0] in ("baseline", "ptq", "qat", "noisy", "hwa", "direct")
        and not c.endswith("std")
    ]
    assert all(empty[c] == pytest.approx(10.0) for c in accuracies)
    assert (bench.filter(like="_std") >= 0).all().all()
    assert (
        bench["n_none"]
        + bench["n_skip"]
        + bench["n_conv3x3"]
        + bench["n_conv1x1"]
        + bench["n_avgpool3x3"]
        == 6
    ).all()


# ---- N4: rank statistics and the surrogate ----------------------------------------------------
def test_kendall_tau_equals_scipy_with_ties() -> None:
    rng = np.random.default_rng(6)
    x = rng.integers(0, 20, 700).astype(float)
    y = x + rng.normal(0, 5, 700).round()
    assert nas.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert nas.kendall_tau(x, -x) == pytest.approx(-1.0)


def test_ndcg_is_one_for_the_true_order_and_lower_otherwise() -> None:
    true = np.arange(100.0)
    assert nas.ndcg_at_k(true, true, 10) == pytest.approx(1.0)
    assert nas.ndcg_at_k(true, -true, 10) < 0.2


def test_surrogate_ranks_a_monotone_target_and_not_a_shuffled_one() -> None:
    rng = np.random.default_rng(7)
    space = nas.cpu_small()
    train, test = space.sample(rng, 400), space.sample(rng, 300)

    def target(configs):  # a monotone function of the features plus noise
        x = space.encode(configs)
        return x[:, 0] + 5 * x[:, 1] + 0.5 * x[:, 2] + rng.normal(0, 0.5, len(x))

    y_train, y_test = target(train), target(test)
    fitted = nas.Surrogate(seed=0).fit(space.encode(train), y_train, avm=y_train, std=y_train)
    predicted = fitted.predict(space.encode(test))
    assert nas.kendall_tau(predicted["score"], y_test) > 0.8
    assert nas.kendall_tau(predicted["avm"], y_test) > 0.8
    shuffled = nas.Surrogate(seed=0).fit(space.encode(train), rng.permutation(y_train))
    assert abs(nas.kendall_tau(shuffled.predict(space.encode(test))["score"], y_test)) < 0.1


# ---- N5/N6: searches ------------------------------------------------------------------------
TARGET = (2, 3, 0, 4, 2, 1)


def _oracle(cells: list) -> np.ndarray:
    """Known optimum TARGET: the score is the number of edges that agree with it."""
    return np.array([sum(a == b for a, b in zip(c, TARGET, strict=True)) for c in cells], float)


def _no_none_on_edge0(cells: list) -> np.ndarray:
    return np.array([c[0] != 1 for c in cells])


def test_evolution_beats_random_search_at_equal_budget() -> None:
    space = nas.NB201Space()
    wins = 0
    for seed in range(20):
        evo = nas.evolutionary_search(
            space,
            _oracle,
            60,
            np.random.default_rng(seed),
            population=10,
            iterations=100,
            feasible=_no_none_on_edge0,
        )
        rand = nas.random_search(
            space, _oracle, 60, np.random.default_rng(seed), feasible=_no_none_on_edge0
        )
        assert len(evo) == len(rand) == 60
        for trace in (evo, rand):
            assert _no_none_on_edge0(trace.configs).all()
            assert len({space.key(c) for c in trace.configs}) == len(trace)
        wins += evo.best[1] > rand.best[1]
    assert wins >= 15


def test_same_seed_same_trace_and_budget_counted() -> None:
    space = nas.cpu_small()

    def objective(configs):
        return space.encode(configs) @ np.linspace(1, 2, len(nas.FEATURES))

    calls = []

    def counted(configs):
        calls.append(len(configs))
        return objective(configs)

    a = nas.evolutionary_search(
        space, counted, 37, np.random.default_rng(8), population=8, iterations=50
    )
    b = nas.evolutionary_search(
        space, objective, 37, np.random.default_rng(8), population=8, iterations=50
    )
    assert sum(calls) == len(a) == 37
    assert a.configs == b.configs and a.scores == b.scores
    with pytest.raises(ValueError, match="budget"):
        nas.random_search(space, objective, 0, np.random.default_rng(0))


def test_surrogate_search_spends_exactly_its_budget_within_the_constraint() -> None:
    space = nas.cpu_small()
    limit = 20_000

    def feasible(configs):
        return np.array([nas.parameter_count(c, 1) <= limit for c in configs])

    evaluated = []

    def objective(configs):
        evaluated.extend(configs)
        x = space.encode(configs)
        return pd.DataFrame({"accuracy": x[:, 0] + x[:, 1], "avm": x[:, 2], "std": x[:, 3]})

    trace = nas.surrogate_search(
        space,
        objective,
        30,
        np.random.default_rng(9),
        n_train=12,
        population=20,
        iterations=5,
        feasible=feasible,
        max_avm=1.5,
    )
    assert len(trace) == len(evaluated) == 30
    assert trace.info["n_train"] == 12
    assert feasible(evaluated).all()


def test_digital_best_evaluates_one_architecture_analog() -> None:
    space = nas.NB201Space()
    analog_calls = []

    def analog(cells):
        analog_calls.append(cells)
        return -_oracle(cells)

    trace = nas.digital_best(space, _oracle, analog, 50, np.random.default_rng(10))
    assert len(trace) == 1 and len(analog_calls) == 1
    assert trace.scores[0] == -trace.info["digital_score"]


# ---- N7: the candidate evaluator --------------------------------------------------------------
SPEC = nas.CandidateSpec(
    dataset="digits",
    n_train=200,
    n_test=100,
    batch_size=50,
    epochs_fp=1,
    epochs_hwa=1,
    ramp_steps=2,
    n_reps=2,
    t_inferences=(1.0, 86400.0),
)


def test_evaluator_caches_bit_for_bit_and_resumes(tmp_path, monkeypatch) -> None:
    configs = nas.cpu_small().sample(np.random.default_rng(11), 2)
    path = tmp_path / "candidates.jsonl"
    real = nas_evaluate.evaluate_candidate

    def fail_on_second(spec, config):
        if config == configs[1]:
            raise RuntimeError("interrupted")
        return real(spec, config)

    monkeypatch.setattr(nas_evaluate, "evaluate_candidate", fail_on_second)
    with pytest.raises(PointError):
        nas.evaluate_candidates(configs, SPEC, path, progress=False)
    assert len(nas.candidate_store(SPEC, path)) == 1  # the finished one is kept
    monkeypatch.setattr(nas_evaluate, "evaluate_candidate", real)
    first = nas.evaluate_candidates(configs, SPEC, path, progress=False)
    assert len(first) == 2
    # the mean of 2 programmings on 100 test images: a multiple of 1 / 200
    counts = first["acc_86400"].to_numpy() * SPEC.n_test * SPEC.n_reps
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)

    def never(spec, config):
        raise AssertionError("a stored candidate was evaluated again")

    monkeypatch.setattr(nas_evaluate, "evaluate_candidate", never)
    again = nas.evaluate_candidates(configs, SPEC, path, progress=False)
    pd.testing.assert_frame_equal(first, again)
    # a fresh evaluation of the same candidate gives the same numbers
    monkeypatch.setattr(nas_evaluate, "evaluate_candidate", real)
    fresh = real(SPEC, configs[0])
    stored = first.iloc[0]
    assert {k: fresh[k] for k in ("fp_accuracy", "acc_1", "acc_86400")} == {
        k: stored[k] for k in ("fp_accuracy", "acc_1", "acc_86400")
    }


def test_candidate_spec_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="dataset"):
        nas.CandidateSpec(dataset="mnist")
    with pytest.raises(ValueError, match="t_inferences"):
        nas.CandidateSpec(t_inferences=(86400.0, 1.0))


# ---- the study's search comparison ------------------------------------------------------------
def _synthetic_bench() -> pd.DataFrame:
    """Every NB201 cell with a known optimum (TARGET), digital accuracy tied to it loosely."""
    cells = [tuple(int(v) for v in np.unravel_index(i, (5,) * 6)) for i in range(5**6)]
    score = _oracle(cells)
    noise = np.random.default_rng(12).normal(0, 1, len(cells))
    return pd.DataFrame(
        {
            "cell": cells,
            "hwa_86400": 80 + 2 * score + noise,
            "avm_hwa": 6 - score / 2 + noise,
            "hwa_86400_std": 1 + np.abs(noise),
            "baseline": 85 + score + 2 * noise,
        }
    )


def test_search_comparison_is_resumable_and_spends_equal_budgets(tmp_path, monkeypatch) -> None:
    from analoglib.studies import analognas as study

    bench = _synthetic_bench()
    spec = study.SearchStudySpec(budgets=(20,), n_seeds=2, ea_population=10, ea_iterations=3)
    path = tmp_path / "searches.jsonl"
    first = study.search_comparison(bench, spec, path, progress=False)
    assert len(first) == len(study.METHOD_LABELS) * 2
    assert (first["true_evaluations"] == 20).all()

    def no_work(func, points, *args, **kwargs):
        assert not list(points), "stored search points were computed again"
        return 0

    monkeypatch.setattr(study, "run_points", no_work)
    again = study.search_comparison(bench, spec, path, progress=False)
    pd.testing.assert_frame_equal(first, again)
    summary = study.search_summary(first)
    assert set(summary["method"]) == set(study.METHOD_LABELS)
    assert summary.loc[summary["method"] == "surrogate", "surrogate_wins"].isna().all()
