"""Plotting helpers (figure files, time axis), the digits data and the training loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

import analoglib as al
from analoglib import plotting
from analoglib.utils import _Paths


@pytest.fixture
def tmp_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Paths:
    """Route figure files into a temporary project root."""
    fake = _Paths(tmp_path)
    monkeypatch.setattr(plotting, "paths", fake)
    return fake


def _figure() -> plt.Figure:
    with al.plotting.use_paper_style():
        fig, ax = al.plotting.subplots()
        ax.plot([1, 3600, 31536000], [0.9, 0.8, 0.7], marker="o", label="curve")
        al.plotting.format_time_axis(ax)
        ax.set_ylabel("Accuracy (%)")
        ax.legend()
    return fig


def _table() -> pd.DataFrame:
    rows = [
        {
            "rep": rep,
            "seed": rep,
            "t_inference_s": t,
            "drift_compensation": gdc,
            "metric": 0.9 - 0.01 * rep - (0.0 if gdc else 0.05 * i),
        }
        for gdc in (True, False)
        for rep in range(3)
        for i, t in enumerate([1.0, 3600.0, 31536000.0])
    ]
    return pd.DataFrame(rows)


def test_savefig_writes_pdf_and_png_with_deterministic_bytes(tmp_paths: _Paths) -> None:
    fig = _figure()
    name = "00_quickstart__accuracy_vs_time"
    first = al.plotting.savefig(fig, name, profile="smoke")
    first_bytes = [p.read_bytes() for p in first]
    second = al.plotting.savefig(fig, name, profile="smoke")
    plt.close(fig)

    folder = tmp_paths.figures_dir("smoke")
    assert first == second == [folder / f"{name}.pdf", folder / f"{name}.png"]
    assert first_bytes[0].startswith(b"%PDF")
    assert first_bytes[1].startswith(b"\x89PNG")
    assert [p.read_bytes() for p in second] == first_bytes
    assert b"Software" not in first_bytes[1]
    assert b"CreationDate" not in first_bytes[0] and b"Producer" not in first_bytes[0]


def test_savefig_default_profile_goes_to_figures(tmp_paths: _Paths) -> None:
    fig = _figure()
    pdf, png = al.plotting.savefig(fig, "00_quickstart__panel", profile="default")
    plt.close(fig)
    assert pdf.parent == png.parent == tmp_paths.FIGURES
    assert pdf.is_file() and png.is_file()


@pytest.mark.parametrize("name", ["quickstart", "00_quickstart", "00_Quick__a", "00_a__b.png"])
def test_savefig_rejects_bad_names(tmp_paths: _Paths, name: str) -> None:
    fig = _figure()
    with pytest.raises(ValueError, match="NN_<slug>__<panel>"):
        al.plotting.savefig(fig, name)
    plt.close(fig)


def test_savefig_accepts_a_run_name(tmp_paths: _Paths) -> None:
    """A notebook run once per workload names its figures NN_slug__run__panel."""
    fig = _figure()
    pdf, _ = al.plotting.savefig(fig, "02_hwa_retraining__cnn__metric_vs_time", profile="smoke")
    plt.close(fig)
    assert pdf.name == "02_hwa_retraining__cnn__metric_vs_time.pdf"
    with pytest.raises(ValueError, match="NN_<slug>__<panel>"):
        al.plotting.savefig(_figure(), "02_a__b__c__d")


def test_plot_variants_vs_time_has_a_panel_per_gdc_setting() -> None:
    table = pd.concat(
        [_table().assign(variant="direct"), _table().assign(variant="HWA")], ignore_index=True
    )
    with al.plotting.use_paper_style():
        fig = al.plotting.plot_variants_vs_time(
            table, "metric", reference=0.95, scale=100, title="cnn", published={3600.0: 0.9}
        )
    left, right = fig.axes
    assert (left.get_title(), right.get_title()) == ("with GDC", "without GDC")
    assert fig.get_suptitle() == "cnn"
    n = table.groupby(["variant", "drift_compensation", "t_inference_s"]).size().max()
    band = f"band: ±1 std over {n} programmings"
    assert [t.get_text() for t in left.get_legend().get_texts()] == [
        "direct",
        "HWA",
        "FP",
        band,
        "published HWA",
    ]
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["direct", "HWA", "FP", band]
    # a band per variant and the legend's band entry
    assert len(left.collections) == len(right.collections) == 3
    assert not left.get_shared_y_axes().joined(left, right)  # each panel its own range
    plt.close(fig)
    with pytest.raises(ValueError, match="variant"):
        al.plotting.plot_variants_vs_time(_table(), "metric")


def test_use_paper_style_restores_rcparams_on_exit() -> None:
    before = matplotlib.rcParams["font.size"]
    with al.plotting.use_paper_style():
        assert matplotlib.rcParams["font.size"] == 8
        assert matplotlib.rcParams["figure.constrained_layout.use"]
    assert matplotlib.rcParams["font.size"] == before


def test_plot_metric_vs_time_returns_log_axes_with_bands_and_reference() -> None:
    with al.plotting.use_paper_style():
        ax = al.plotting.plot_metric_vs_time(
            _table(), "metric", hue="drift_compensation", reference=0.95, scale=100
        )
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["with GDC", "without GDC", "FP"]
    assert labels[3].startswith("band: ±1 std over")
    mean_line = ax.get_lines()[0]
    assert list(mean_line.get_xdata()) == [1.0, 3600.0, 31536000.0]
    assert mean_line.get_ydata()[0] == pytest.approx(89.0)  # mean of 90, 89, 88 %
    assert len(ax.collections) == 3  # one std band per group and the legend's band entry
    ticks = dict(zip(ax.get_xticks(), [t.get_text() for t in ax.get_xticklabels()]))
    assert ticks[3600.0] == "1 h" and ticks[31536000.0] == "1 y"
    plt.close(ax.figure)


def test_plot_metric_vs_time_names_missing_columns() -> None:
    with pytest.raises(ValueError, match="accuracy"):
        al.plotting.plot_metric_vs_time(_table(), "accuracy")


def test_load_digits_split_sizes_and_ranges() -> None:
    split = al.data.load_digits(seed=0)
    assert len(split.x_train) + len(split.x_test) == 1797
    assert (len(split.x_train), len(split.x_test)) == (1347, 450)
    assert split.x_train.shape[1:] == (1, 8, 8) and split.x_train.dtype == torch.float32
    assert split.y_train.dtype == torch.long
    assert 0.0 <= float(split.x_train.min()) and float(split.x_train.max()) <= 1.0
    again = al.data.load_digits(seed=0)
    assert torch.equal(split.x_test, again.x_test)
    other = al.data.load_digits(seed=1)
    assert not torch.equal(split.y_test, other.y_test)


def test_make_loader_shuffles_with_its_own_generator() -> None:
    x = torch.arange(20.0).unsqueeze(1)
    y = torch.arange(20)

    def order() -> list[int]:
        loader = al.data.make_loader(x, y, batch_size=5, shuffle=True, seed=3)
        return torch.cat([b for _, b in loader]).tolist()

    torch.manual_seed(0)
    first = order()
    torch.manual_seed(1)
    assert order() == first  # independent of the global RNG
    assert sorted(first) == list(range(20)) and first != list(range(20))


def test_fit_on_digits_beats_chance() -> None:
    split = al.data.load_digits(seed=0)
    train = al.data.make_loader(split.x_train, split.y_train, 64, shuffle=True, seed=0)
    test = al.data.make_loader(split.x_test, split.y_test, 256)
    torch.manual_seed(0)
    model = al.models.DigitsCNN()
    losses = al.training.fit(model, train, epochs=2, lr=1e-3, seed=0, progress=False)
    assert len(losses) == 2 and losses[1] < losses[0]
    assert model.training
    assert al.training.accuracy(model, test) > 0.3
    assert not model.training
    eval_fn = al.training.classification_eval_fn(test)
    assert eval_fn(model) == al.training.accuracy(model, test)


def test_fit_rejects_unknown_optimizer() -> None:
    model = al.models.DigitsCNN()
    loader = al.data.make_loader(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="optimizer"):
        al.training.fit(model, loader, epochs=1, lr=1e-3, seed=0, optimizer="lamb")


@pytest.mark.parametrize(
    ("draw", "message"),
    [
        (lambda ax: ax.set_title("t"), "no x or y label"),
        (lambda ax: (ax.set_xlabel("x"), ax.set_title("t")), "no y label"),
        (lambda ax: (ax.set_xlabel("x"), ax.set_ylabel("y")), "no title and no legend"),
    ],
)
def test_check_figure_refuses_unlabelled_figures(draw: Any, message: str) -> None:
    fig, ax = plt.subplots()
    draw(ax)
    with pytest.raises(ValueError, match=message):
        al.plotting.check_figure(fig, "f")
    plt.close(fig)


def test_check_figure_accepts_shared_labels_legends_and_labelled_colour_bars() -> None:
    fig, axes = plt.subplots(1, 2, sharey=True)
    for ax in axes:
        ax.plot([0, 1], label="a")
        ax.set_xlabel("x")
    axes[0].set_ylabel("y")  # the right panel shares it
    axes[0].legend()
    image = axes[1].imshow([[0, 1]])
    colorbar = fig.colorbar(image, ax=axes[1])
    with pytest.raises(ValueError, match="colour bar without a label"):
        al.plotting.check_figure(fig)
    colorbar.set_label("value")
    al.plotting.check_figure(fig)
    plt.close(fig)
