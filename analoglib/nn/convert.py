"""Conversion between digital PyTorch models and analog ones.

References:
    ``docs/aihwkit.md#conversion-api`` (aihwkit's ``convert_to_analog`` / ``convert_to_digital``).
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from torch import nn

from analoglib.config import PCMConfig
from analoglib.nn.attention import AnalogMultiheadAttention
from analoglib.nn.base import AnalogLayerBase
from analoglib.nn.conv import AnalogConv1d, AnalogConv2d
from analoglib.nn.linear import AnalogHFConv1D, AnalogLinear, hf_conv1d_type
from analoglib.nn.rnn import AnalogGRU, AnalogLSTM, _AnalogRNNBase
from analoglib.nn.trainable import AnalogTrainConv2d, AnalogTrainLayer, AnalogTrainLinear
from analoglib.tiles.training import TrainingConfig
from analoglib.utils import derive_seed

__all__ = [
    "CONVERSION_MAP",
    "ON_UNSUPPORTED",
    "DigitalModule",
    "DigitalModulesWarning",
    "UnsupportedModuleError",
    "analog_layers",
    "convert_to_analog",
    "convert_to_digital",
    "named_analog_layers",
    "named_digital_modules",
    "replace_config",
    "require_analog_layers",
    "weight_matrix_elements",
]

#: Digital module type -> analog type. Subclasses of these types are converted as well.
#: transformers' ``Conv1D`` (GPT-2 family) is converted to
#: :class:`~analoglib.nn.linear.AnalogHFConv1D` too; it is looked up when a model is converted,
#: so that importing analoglib does not import transformers.
CONVERSION_MAP: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: AnalogLinear,
    nn.Conv1d: AnalogConv1d,
    nn.Conv2d: AnalogConv2d,
    nn.LSTM: AnalogLSTM,
    nn.GRU: AnalogGRU,
    nn.MultiheadAttention: AnalogMultiheadAttention,
}
# Weight-bearing layers without an analog counterpart; they stay digital as a whole.
_UNSUPPORTED = (
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.RNN,
)
_ANALOG_TYPES = (AnalogLayerBase, _AnalogRNNBase, AnalogMultiheadAttention, AnalogTrainLayer)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
_NORMS = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
)

# Categories of digital modules in the order and words of the conversion warning.
_CATEGORY_HEADERS = {
    "unsupported": "no analog counterpart",
    "excluded": "excluded",
    "embedding": "embeddings, digital by design",
    "normalisation": "normalisation, digital by design",
}

#: Allowed values of ``convert_to_analog(on_unsupported=...)``.
ON_UNSUPPORTED = ("warn", "error", "ignore")


class DigitalModulesWarning(UserWarning):
    """Modules with their own weights stay digital after :func:`convert_to_analog`."""


class UnsupportedModuleError(ValueError):
    """A module with its own weights has no analog counterpart (``on_unsupported="error"``)."""


class DigitalModule(NamedTuple):
    """A module of a (converted) model that holds weights of its own and computes digitally.

    Attributes:
        name: Qualified module name (``"<root>"`` for the model itself).
        module: The module.
        category: ``"embedding"``, ``"normalisation"`` (both digital by design),
            ``"excluded"`` (kept digital on request, or a convertible type left digital) or
            ``"unsupported"`` (no analog counterpart).
        reason: The reason in words.
    """

    name: str
    module: nn.Module
    category: str
    reason: str


def weight_matrix_elements(module: nn.Module) -> int:
    """Weight-matrix elements held by ``module`` itself (its children not counted).

    Weight-matrix elements are the elements of the parameters whose name contains ``weight``
    and that have at least two dimensions: the weights of linear, convolution, embedding and
    recurrent layers (``weight_ih_l0``), attention projections (``in_proj_weight``), and
    transformers' ``Conv1D``. Biases, normalisation scales (one dimension), and bare
    parameters such as ``bias_k`` or class tokens are not weight matrices. For an analog layer
    it is the number of crossbar-mapped weights.

    Args:
        module: Any module.

    Returns:
        The element count.
    """
    if isinstance(module, AnalogLayerBase):
        return module.analog_weight_count
    return sum(
        p.numel()
        for name, p in module.named_parameters(recurse=False)
        if "weight" in name and p.dim() >= 2
    )


def _classify(module: nn.Module) -> tuple[str, str]:
    """``(category, reason)`` of a digital module with its own parameters, by its type."""
    kind = type(module).__name__
    if isinstance(module, _EMBEDDINGS):
        return "embedding", "embedding: a lookup table, digital by design"
    if isinstance(module, _NORMS) or "norm" in kind.lower():
        return "normalisation", "normalisation: digital by design"
    if _convertible(module) is not None:
        return "excluded", f"{kind} can be converted but was left digital (excluded)"
    if isinstance(module, _UNSUPPORTED):
        return "unsupported", f"no analog counterpart for {kind}"
    names = ", ".join(name for name, _ in module.named_parameters(recurse=False))
    return "unsupported", f"{kind} holds its own parameters ({names}) and has no analog counterpart"


def _digital_modules(
    model: nn.Module, overrides: dict[str, tuple[str, str]] | None = None
) -> list[DigitalModule]:
    found: list[DigitalModule] = []
    analog_prefixes: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in analog_prefixes):
            continue  # inside an analog layer (its biases are digital by design)
        if isinstance(module, _ANALOG_TYPES):
            analog_prefixes.append(f"{name}." if name else "")
            continue
        if next(module.parameters(recurse=False), None) is None:
            continue
        label = name or "<root>"
        category, reason = (overrides or {}).get(label) or _classify(module)
        found.append(DigitalModule(label, module, category, reason))
    return found


def named_digital_modules(model: nn.Module) -> list[DigitalModule]:
    """Every module of ``model`` that holds parameters of its own and is not analog.

    Analog layers (and everything inside them, such as their digital biases) are left out;
    so are modules without parameters of their own (containers, activations). The category
    is found from the type: after conversion, a convertible type that is still digital was
    excluded (:func:`convert_to_analog` names the exclusion pattern in its warning).

    Args:
        model: A model, converted or not.

    Returns:
        One :class:`DigitalModule` per module, in module order.
    """
    return _digital_modules(model)


def named_analog_layers(model: nn.Module) -> Iterator[tuple[str, AnalogLayerBase]]:
    """Every analog layer (the crossbar-mapped matrices) with its qualified name."""
    for name, module in model.named_modules():
        if isinstance(module, AnalogLayerBase):
            yield name, module


def require_analog_layers(model: nn.Module) -> list[tuple[str, AnalogLayerBase]]:
    """The named analog layers of ``model``.

    Raises:
        ValueError: If ``model`` has none (it was not converted).
    """
    layers = list(named_analog_layers(model))
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no analog layers: convert it with "
            "analoglib.convert_to_analog(model, config) first."
        )
    return layers


def analog_layers(model: nn.Module) -> list[AnalogLayerBase]:
    """Every analog layer of ``model`` in module order."""
    return [layer for _, layer in named_analog_layers(model)]


def replace_config(model: nn.Module, config: PCMConfig) -> nn.Module:
    """Give every analog layer of ``model`` a copy of ``config``, in place.

    Only run-time groups may differ from the layers' configs (forward, noise_model,
    drift_compensation, modifier, clip, remap); tiles, digital scales, input ranges and
    learned parameters stay as they are. Every programming realisation is dropped: program
    again before evaluating. Used to evaluate one converted (and calibrated) model under many
    nonideality settings.

    Args:
        model: A converted model.
        config: The new config.

    Returns:
        ``model``.

    Raises:
        ValueError: If ``model`` has no analog layers, or ``config`` differs from a layer's
            config in ``mapping`` or ``pre_post`` (see
            :meth:`~analoglib.nn.base.AnalogLayerBase.replace_config`).
    """
    for name, layer in require_analog_layers(model):
        try:
            layer.replace_config(config)
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err}") from err
    return model


def _trainable(module: nn.Module) -> type[AnalogTrainLayer] | None:
    """The in-memory training layer of ``module`` (Linear, Conv2d with groups 1), if any."""
    if isinstance(module, nn.Linear):
        return AnalogTrainLinear
    if (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    ):
        return AnalogTrainConv2d
    return None


def _convertible(module: nn.Module) -> type[nn.Module] | None:
    for digital, analog in CONVERSION_MAP.items():
        if type(module) is digital or (
            isinstance(module, digital) and not isinstance(module, _ANALOG_TYPES)
        ):
            return analog
    conv1d = hf_conv1d_type()
    if conv1d is not None and isinstance(module, conv1d):
        return AnalogHFConv1D
    return None


def _exclusion(name: str, module: nn.Module, names: list[str], types: list[type]) -> str | None:
    """Why ``module`` is excluded from conversion (``None`` if it is not)."""
    for kind in types:
        if isinstance(module, kind):
            return f"excluded by type {kind.__name__}"
    for pattern in names:
        if fnmatch.fnmatchcase(name, pattern):
            return f"excluded by name pattern {pattern!r}"
    return None


def _has_analog(module: nn.Module) -> bool:
    return any(isinstance(m, _ANALOG_TYPES) for m in module.modules())


# torch's fused inference paths read the weights of their children instead of calling them:
# nn.TransformerEncoderLayer's (torch._transformer_encoder_layer_fwd, taken in eval mode when
# activation_relu_or_gelu is nonzero and other conditions hold) and nn.TransformerEncoder's
# nested-tensor path (use_nested_tensor). Both are switched off while a layer holds analog
# children (the original values are kept for convert_to_digital).
_FUSED_PATH_SWITCHES: tuple[tuple[type[nn.Module], str, object], ...] = (
    (nn.TransformerEncoderLayer, "activation_relu_or_gelu", 0),
    (nn.TransformerEncoder, "use_nested_tensor", False),
)
_SAVED_PREFIX = "_analoglib_saved_"


def _switch_fused_paths(model: nn.Module, analog: bool) -> None:
    """Switch torch's fused paths off in modules with analog children, back on without."""
    for module in model.modules():
        for kind, attribute, off in _FUSED_PATH_SWITCHES:
            if not isinstance(module, kind) or not hasattr(module, attribute):
                continue
            saved = _SAVED_PREFIX + attribute
            if analog and _has_analog(module):
                if saved not in module.__dict__:
                    setattr(module, saved, getattr(module, attribute))
                setattr(module, attribute, off)
            elif not analog and saved in module.__dict__ and not _has_analog(module):
                setattr(module, attribute, module.__dict__.pop(saved))


def convert_to_analog(
    model: nn.Module,
    config: PCMConfig | TrainingConfig,
    exclude: Iterable[str | type[nn.Module]] = (),
    seed: int = 0,
    on_unsupported: str = "warn",
) -> nn.Module:
    """Copy of ``model`` with its supported layers on simulated PCM crossbars.

    ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``, ``nn.LSTM``, ``nn.GRU``,
    ``nn.MultiheadAttention`` (its projections; the attention arithmetic stays digital) and
    transformers' ``Conv1D`` (GPT-2 family), and their subclasses, become analog. Transformer
    layers (``nn.TransformerEncoderLayer`` and friends, Hugging Face encoders and decoders) are
    converted through their children; torch's fused inference paths, which would read the
    children's weights directly, are switched off in layers with analog children.

    Modules with weights of their own that stay digital are never silent: embeddings
    (digital by design), modules kept digital by ``exclude``, and modules without an analog
    counterpart (``nn.Conv3d``, transposed convolutions, ``nn.RNN``, any other module with
    its own parameters) are listed in one :class:`DigitalModulesWarning`, with their reasons
    and the analog fraction of the weight-matrix elements (see
    :func:`weight_matrix_elements`); normalisation layers (digital by design, per-channel
    scales only) are counted in that warning but do not raise one on their own, so a CNN
    with batch norm converts silently. :func:`analoglib.summary.digital_modules` lists every
    digital module with its reason. The original model is not modified.

    Args:
        model: A PyTorch model.
        config: Crossbar configuration, copied into every analog layer: a
            :class:`~analoglib.config.PCMConfig` for inference and hardware-aware training, or a
            :class:`~analoglib.tiles.training.TrainingConfig` for in-memory training, which
            turns ``nn.Linear`` and ``nn.Conv2d`` (groups 1) into
            :class:`~analoglib.nn.trainable.AnalogTrainLinear` /
            :class:`~analoglib.nn.trainable.AnalogTrainConv2d` (their tiles are seeded from
            ``(seed, k)``; other layers stay digital and are listed in the warning).
        exclude: Qualified module names or glob patterns (``"classifier"``, ``"*.pooler.*"``)
            and module types to keep digital; an excluded module keeps all its children
            digital too.
        seed: Seed of the forward-noise streams (layer k gets a stream derived from
            ``(seed, k)``).
        on_unsupported: ``"warn"`` lists every module that stays digital in one warning;
            ``"error"`` also raises :class:`UnsupportedModuleError` if a module with its own
            weights has no analog counterpart (embeddings, normalisation and excluded modules
            are only listed); ``"ignore"`` is silent.

    Returns:
        The converted copy (an analog layer if ``model`` itself is a supported layer).

    Raises:
        ValueError: If ``config`` is not a :class:`~analoglib.config.PCMConfig`,
            ``on_unsupported`` is not one of :data:`ON_UNSUPPORTED`, or an ``exclude`` entry
            matches no module or is neither a string nor a module type.
        UnsupportedModuleError: With ``on_unsupported="error"``, if a module with its own
            weights has no analog counterpart.

    References:
        ``docs/aihwkit.md#conversion-api``.
    """
    if not isinstance(config, (PCMConfig, TrainingConfig)):
        raise ValueError(
            f"config = {config!r} is not allowed: expected a PCMConfig or a TrainingConfig."
        )
    if on_unsupported not in ON_UNSUPPORTED:
        raise ValueError(
            f"on_unsupported = {on_unsupported!r} is not allowed: expected one of "
            f"{', '.join(repr(v) for v in ON_UNSUPPORTED)}."
        )
    names: list[str] = []
    types: list[type] = []
    for entry in exclude:
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, type) and issubclass(entry, nn.Module):
            types.append(entry)
        else:
            raise ValueError(
                f"exclude entry {entry!r} is not allowed: expected a module name, a glob "
                "pattern or an nn.Module subclass."
            )
    all_names = [name for name, _ in model.named_modules() if name]
    for pattern in names:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in all_names):
            raise ValueError(
                f"exclude pattern {pattern!r} matches no module of {type(model).__name__}."
            )

    model = copy.deepcopy(model)
    excluded: dict[str, tuple[str, str]] = {}
    trained: list[str] = []

    def convert(module: nn.Module, prefix: str) -> nn.Module:
        why = _exclusion(prefix, module, names, types)
        if why is not None:  # the module and everything inside it stays digital
            for name, _ in module.named_modules(prefix=prefix):
                inside = "" if name == prefix else f" (inside {prefix or '<root>'})"
                excluded[name or "<root>"] = ("excluded", why + inside)
            return module
        if isinstance(config, TrainingConfig):
            trainable = _trainable(module)
            if trainable is not None:
                index = len(trained)
                trained.append(prefix)
                return trainable.from_digital(  # type: ignore[attr-defined,no-any-return]
                    module, config, seed=derive_seed(seed, "tile", index)
                )
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                return module
        analog = _convertible(module) if isinstance(config, PCMConfig) else None
        if analog is not None:
            return analog.from_digital(module, config)  # type: ignore[attr-defined,no-any-return]
        if isinstance(module, _UNSUPPORTED):
            return module
        for child_name, child in list(module.named_children()):
            qualified = f"{prefix}.{child_name}" if prefix else child_name
            setattr(module, child_name, convert(child, qualified))
        return module

    converted = convert(model, "")
    _switch_fused_paths(converted, analog=True)
    for index, layer in enumerate(analog_layers(converted)):
        layer.set_forward_seed(derive_seed(seed, "forward", index))
    if on_unsupported != "ignore":
        _report_digital(converted, _digital_modules(converted, excluded), on_unsupported)
    return converted


def _report_digital(model: nn.Module, digital: list[DigitalModule], on_unsupported: str) -> None:
    """One warning listing ``digital`` by category; raise first on unsupported ones if asked."""
    # Normalisation layers hold per-channel scales, not weight matrices: alone they do not
    # make a warning (every CNN has them), but they are counted when one is given.
    if all(d.category == "normalisation" for d in digital):
        return
    analog_elements = sum(weight_matrix_elements(m) for m in analog_layers(model))
    digital_elements = sum(weight_matrix_elements(d.module) for d in digital)
    total = analog_elements + digital_elements
    fraction = f"{analog_elements / total:.1%}" if total else "n/a"
    groups = []
    for category, header in _CATEGORY_HEADERS.items():
        members = [d for d in digital if d.category == category]
        if not members:
            continue
        if category == "excluded":  # the pattern or type that excluded each
            listed = [f"{d.name} ({type(d.module).__name__}, {d.reason})" for d in members]
        elif category == "normalisation":  # counted by type: a transformer has dozens
            counts = Counter(type(d.module).__name__ for d in members)
            listed = [f"{count} {kind}" for kind, count in counts.items()]
        else:
            listed = [f"{d.name} ({type(d.module).__name__})" for d in members]
        groups.append(f"[{header}] {', '.join(listed)}")
    listing = "; ".join(groups)
    unsupported = [d for d in digital if d.category == "unsupported"]
    if on_unsupported == "error" and unsupported:
        raise UnsupportedModuleError(
            f"convert_to_analog: {len(unsupported)} module(s) with their own weights have no "
            "analog counterpart: "
            + ", ".join(f"{d.name} ({type(d.module).__name__})" for d in unsupported)
            + ". Keep them digital explicitly with exclude=[...], or pass "
            "on_unsupported='warn'."
        )
    warnings.warn(
        f"convert_to_analog: {len(digital)} module(s) with their own weights stay digital; "
        f"{fraction} of the {total} weight-matrix elements are analog. {listing}. "
        "(on_unsupported='ignore' silences this; analoglib.summary.digital_modules(model) "
        "lists them as a table.)",
        DigitalModulesWarning,
        stacklevel=3,
    )


def convert_to_digital(model: nn.Module) -> nn.Module:
    """Copy of an analog model with every analog layer replaced by its digital equivalent.

    The digital weights are the reference weights times the digital column and output scales;
    programming, drift and every other nonideality are dropped. Analog attention becomes an
    ``nn.MultiheadAttention``, an analog ``Conv1D`` a transformers ``Conv1D`` again, and torch's
    fused transformer paths switched off by :func:`convert_to_analog` are switched back on. The
    original is not modified.

    Args:
        model: A converted (or partly converted) model.

    Returns:
        The digital copy.
    """

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, _ANALOG_TYPES):
            return module.to_digital()  # type: ignore[operator,no-any-return]
        for child_name, child in list(module.named_children()):
            setattr(module, child_name, convert(child))
        return module

    digital = convert(copy.deepcopy(model))
    _switch_fused_paths(digital, analog=False)
    return digital
