"""The HWA study runner of notebook 02: resumable, equal to evaluate_variants, and spreadable."""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from analoglib.studies import hwa_retraining as study
from analoglib.utils import _Paths
from analoglib.workloads import base as workload_base

SPEC = study.HWAStudySpec(
    "cnn", "smoke", eval_batches=1, calibration_batches=2, t_inferences=(1.0, 3600.0), n_reps=2
)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fake = _Paths(tmp_path)
    monkeypatch.setattr(workload_base, "paths", fake)
    monkeypatch.setattr(study, "paths", fake)
    return tmp_path


def test_spec_resolves_the_recipe_sizes_and_refuses_bad_values() -> None:
    spec = study.HWAStudySpec("rnn", "smoke")
    _, _, sizes = study.hwa_recipe("rnn", "smoke")
    assert spec.eval_batches == sizes["eval_batches"]
    assert spec.calibration_batches == sizes["calibration_batches"]
    assert len(spec.points()) == 2 * 2 * spec.n_reps
    with pytest.raises(ValueError, match="n_reps"):
        study.HWAStudySpec("rnn", "smoke", n_reps=0)
    with pytest.raises(ValueError, match="t_inferences"):
        study.HWAStudySpec("rnn", "smoke", t_inferences=())
    with pytest.raises(ValueError, match="workload"):
        study.HWAStudySpec("mlp", "smoke")


def test_run_variants_equals_evaluate_variants_and_resumes(root: Path) -> None:
    variants = study.prepare_variants(SPEC, progress=False)
    reference = study.evaluate_variants(
        variants.models,
        variants.workload.evaluate,
        SPEC.t_inferences,
        SPEC.n_reps,
        SPEC.seed,
        progress=False,
    )
    table = study.run_variants(SPEC, variants, progress=False)
    pd.testing.assert_frame_equal(table, reference)

    # Drop the last three points from the file: a rerun computes exactly those again.
    path = SPEC.default_path()
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]))
    again = study.run_variants(SPEC, variants, progress=False)
    pd.testing.assert_frame_equal(again, reference)
    assert len(path.read_text().splitlines()) == 1 + len(SPEC.points())


def test_run_variants_on_a_local_cluster_equals_the_in_process_run(root: Path) -> None:
    distributed = pytest.importorskip("distributed")
    in_process = study.run_variants(SPEC, progress=False, threads=1, path=root / "a.jsonl")
    env = {"ANALOGLIB_ROOT": str(root), "ANALOGLIB_PROGRESS": "0"}
    start = time.monotonic()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", env=env
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        spread = study.run_variants(
            SPEC, executor=client, threads=1, progress=False, path=root / "b.jsonl"
        )
    assert time.monotonic() - start < 300
    pd.testing.assert_frame_equal(spread, in_process)


def _conv_bn_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 5 * 5, 3),
    )


def test_batchnorm_recomputed_eval_measures_the_input_scale_and_re_estimates() -> None:
    model = _conv_bn_model()
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(64, 2, 5, 5, generator=generator), None) for _ in range(3)]
    bn = model[1]
    bn.momentum = None  # trained statistics = the cumulative statistics of the batches
    model.train()
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    model.eval()
    seen: dict[str, torch.Tensor] = {}

    def eval_fn(m: torch.nn.Module) -> dict[str, float]:
        seen["mean"] = m[1].running_mean.clone()
        return {"accuracy": 0.5, "error": 0.5}

    fn = study.batchnorm_recomputed_eval(eval_fn, batches)
    # Statistics as trained: the inputs of the first batch have about the trained std.
    assert fn(model)["bn_input_std_ratio"] == pytest.approx(1.0, abs=0.1)
    # Halve the convolution (as drift shrinks the weights): the ratio halves, and the
    # recomputed mean is the mean of the halved activations; the model itself is unchanged.
    before = bn.running_mean.clone()
    with torch.no_grad():
        model[0].weight.mul_(0.5)
        model[0].bias.mul_(0.5)
    result = fn(model)
    assert result["bn_input_std_ratio"] == pytest.approx(0.5, abs=0.05)
    assert torch.allclose(seen["mean"], 0.5 * before, atol=1e-5)
    assert torch.equal(bn.running_mean, before)
    with pytest.raises(ValueError, match="batches"):
        study.batchnorm_recomputed_eval(eval_fn, [])
    with pytest.raises(ValueError, match="BatchNorm"):
        fn(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(50, 3)))


def test_published_metric_inverts_a_star() -> None:
    error_fp, chance = 0.08, 0.9
    fp = {"accuracy": 1 - error_fp, "error": error_fp}
    values = study.published_metric("cnn", "accuracy", fp, chance)
    for t, key in ((3600.0, "a_star_1h"), (31536000.0, "a_star_1y")):
        a_star = 1 - ((1 - values[t]) - error_fp) / (chance - error_fp)
        assert 100 * a_star == pytest.approx(study.PUBLISHED_RASCH_2023["cnn"][key])
    fp = {"accuracy": 0.9, "error": 0.1}
    assert list(study.published_metric("transformer", "accuracy", fp, 0.5)) == [3600.0]
    # perplexity is not 1 - error: nothing to draw on its axis
    assert (
        study.published_metric("rnn", "perplexity", {"perplexity": 144.0, "error": 0.7}, 0.99) == {}
    )


def test_a_star_figure_draws_ours_and_the_published_values() -> None:
    index = pd.MultiIndex.from_product(
        [["direct mapping", "HWA"], [True, False], [3600.0, 31536000.0]],
        names=["variant", "drift_compensation", "t_inference_s"],
    )
    a_star = pd.DataFrame({"a_star_mean": 95.0, "a_star_std": 1.0}, index=index)
    fig = study.plot_a_star(a_star, "cnn", "ResNet-20 / Fashion-MNIST", n_reps=3)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith("direct mapping (ours, ±1 std over 3") for label in labels)
    assert any(label.startswith("HWA, published") for label in labels)
    assert ax.get_ylabel() and ax.get_title() == "ResNet-20 / Fashion-MNIST"
    plt.close(fig)


def test_stored_evaluations_are_keyed_by_the_models_they_evaluate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A changed HWA recipe (or workload profile) must not reuse the stored evaluations."""
    before = SPEC.key()
    changed = {
        k: {**v, "smoke": {**v["smoke"], "recipe": {**v["smoke"]["recipe"], "max_steps": 99}}}
        for k, v in study.HWA_PROFILES.items()
    }
    monkeypatch.setattr(study, "HWA_PROFILES", changed)
    assert SPEC.key() != before
    assert SPEC.parameters()["hwa_recipe"]["max_steps"] == 99
