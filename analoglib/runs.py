"""A notebook run: its parameters checked before any work, and where its outputs go.

Every numbered notebook starts with ``run = al.runs.start_run("<stem>", globals())`` right after
its ``parameters`` cell. :func:`start_run` compares the values in the notebook's namespace with
the parameters cell of ``notebooks/<stem>.ipynb`` and stops the run at once, naming the
parameter, for

* a name papermill injected that the notebook does not declare (papermill itself only warns),
* a value whose type differs from the declared annotation (``int``, ``float``, ``str``,
  ``bool``, ``list``, ``dict``; an ``int`` passes as ``float``; ``None`` only where it is the
  default),
* an unknown ``profile`` or an empty ``output_dir``.

Outputs: a notebook's ``output_dir`` parameter defaults to :data:`~analoglib.utils.SCRATCH_OUTPUTS`
(``build/scratch``), so an exploratory run writes ``build/scratch/<profile>/figures/`` and
``build/scratch/<profile>/results/``. Only ``output_dir = "committed"``, which ``make notebooks``,
``make figures``, ``make smoke`` and ``make paper`` pass, writes the committed ``figures/`` and
``build/results/<profile>/``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from analoglib import plotting, utils
from analoglib.utils import COMMITTED_OUTPUTS, PROFILES, write_results

__all__ = [
    "DeclaredParameter",
    "NotebookRun",
    "ParameterError",
    "declared_parameters",
    "start_run",
]

# Annotations a parameters cell may use, and the Python types each accepts.
_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}
# Header of the cell papermill injects after the parameters cell.
_INJECTED_HEADER = "# Parameters"


class ParameterError(ValueError):
    """A notebook parameter that is unknown, of the wrong type or not an allowed value."""


@dataclass(frozen=True)
class DeclaredParameter:
    """One line of a notebook's parameters cell: ``name: annotation = default``."""

    name: str
    annotation: str
    default: Any


@dataclass(frozen=True)
class NotebookRun:
    """A checked notebook run: its parameters, profile and output folders.

    Attributes:
        stem: Notebook file stem, e.g. ``"00_quickstart"``.
        parameters: Every declared parameter with the value this run uses (recorded in the
            results JSON).
    """

    stem: str
    parameters: dict[str, Any] = field(repr=False)

    @property
    def profile(self) -> str:
        """The run's profile (``smoke``, ``default`` or ``paper``)."""
        return str(self.parameters["profile"])

    @property
    def output_dir(self) -> str:
        """``"committed"`` or the folder of this run's outputs, relative to the project root."""
        return str(self.parameters["output_dir"])

    @property
    def figures_dir(self) -> Path:
        """Folder of this run's figures."""
        return utils.paths.figures_dir(self.profile, self.output_dir)

    def savefig(self, fig: Figure, name: str) -> list[Path]:
        """Write ``fig`` as ``<name>.pdf`` and ``<name>.png`` (:func:`analoglib.plotting.savefig`).

        Raises:
            ValueError: If ``name`` does not start with this notebook's stem.
        """
        if not name.startswith(f"{self.stem}__"):
            raise ValueError(
                f"name = {name!r} is not allowed: a figure of {self.stem} is named "
                f"'{self.stem}__<panel>'."
            )
        return plotting.savefig(fig, name, self.profile, self.output_dir)

    def write_results(
        self,
        metrics: dict[str, Any],
        *,
        data_source: str = "offline",
        device: str | torch.device = "cpu",
        name: str | None = None,
    ) -> Path:
        """Write the results JSON (:func:`analoglib.utils.write_results`) with the parameters.

        Args:
            metrics: Headline metrics.
            data_source: ``"offline"`` or ``"hub"``.
            device: Device the run used.
            name: File stem for one of several runs of a notebook (default: the notebook stem).
        """
        stem = self.stem if name is None else name
        return write_results(
            stem,
            self.profile,
            parameters=self.parameters,
            metrics=metrics,
            data_source=data_source,
            device=device,
            output_dir=self.output_dir,
        )

    def __repr__(self) -> str:
        where = "committed folders" if self.output_dir == COMMITTED_OUTPUTS else self.output_dir
        return f"NotebookRun({self.stem!r}, profile={self.profile!r}, outputs -> {where})"


def declared_parameters(source: str) -> dict[str, DeclaredParameter]:
    """The ``name: annotation = literal`` lines of a parameters cell's source.

    Raises:
        ParameterError: For a line that is not an annotated literal assignment.
    """
    declared: dict[str, DeclaredParameter] = {}
    for node in ast.parse(source).body:
        if not (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(node.annotation, ast.Name)
            and node.value is not None
        ):
            raise ParameterError(
                f"parameters cell line {node.lineno}: expected `name: type = literal`."
            )
        name = node.target.id
        declared[name] = DeclaredParameter(name, node.annotation.id, ast.literal_eval(node.value))
    return declared


def _notebook_parameters_source(stem: str) -> str:
    path = utils.paths.ROOT / "notebooks" / f"{stem}.ipynb"
    if not path.is_file():
        raise ValueError(f"stem = {stem!r} is not allowed: {path} does not exist.")
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell["source"]
            return "".join(source) if isinstance(source, list) else source
    raise ValueError(f"{path} has no cell tagged 'parameters'.")


def _injected_names(namespace: Mapping[str, Any]) -> list[str]:
    """Names assigned by the last papermill-injected cell in IPython's input history."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return []  # not run by a kernel: nothing was injected
    for source in reversed(history):
        if isinstance(source, str) and source.startswith(_INJECTED_HEADER):
            tree = ast.parse(source)
            return [
                target.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            ]
    return []


def _check_value(parameter: DeclaredParameter, value: Any) -> None:
    allowed = _TYPES.get(parameter.annotation)
    if allowed is None:
        raise ParameterError(
            f"parameter {parameter.name!r} is annotated {parameter.annotation!r}: expected one "
            f"of {', '.join(_TYPES)}."
        )
    if value is None and parameter.default is None:
        return
    bad_bool = isinstance(value, bool) and parameter.annotation != "bool"
    if bad_bool or not isinstance(value, allowed):
        raise ParameterError(
            f"{parameter.name} = {value!r} is not allowed: expected a {parameter.annotation}"
            + (" or None" if parameter.default is None else "")
            + f" (the default is {parameter.default!r})."
        )


def start_run(stem: str, namespace: Mapping[str, Any]) -> NotebookRun:
    """Check a notebook's parameters before any work and return the run.

    Args:
        stem: The notebook's file stem; its parameters cell is read from
            ``notebooks/<stem>.ipynb``.
        namespace: The notebook's ``globals()`` (the parameters cell and papermill's injected
            cell have run).

    Returns:
        The run, with every declared parameter's value in ``parameters``.

    Raises:
        ParameterError: For an injected name the notebook does not declare, a value of the
            wrong type, an unknown ``profile`` or an empty ``output_dir``.
    """
    declared = declared_parameters(_notebook_parameters_source(stem))
    unknown = [name for name in _injected_names(namespace) if name not in declared]
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for notebooks/{stem}.ipynb: "
            f"expected names among {', '.join(declared)}."
        )
    missing = [name for name in declared if name not in namespace]
    if missing:
        raise ParameterError(f"parameter(s) {', '.join(missing)} not set: run the parameters cell.")
    for parameter in declared.values():
        _check_value(parameter, namespace[parameter.name])
    for required in ("profile", "output_dir"):
        if required not in declared:
            raise ParameterError(f"notebooks/{stem}.ipynb must declare a {required!r} parameter.")
    if namespace["profile"] not in PROFILES:
        raise ParameterError(
            f"profile = {namespace['profile']!r} is not allowed: expected one of "
            f"{', '.join(PROFILES)}."
        )
    try:
        utils.paths.output_root(namespace["output_dir"])
    except ValueError as error:
        raise ParameterError(str(error)) from None
    return NotebookRun(stem, {name: namespace[name] for name in declared})
