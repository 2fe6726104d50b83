"""Plain-PyTorch models of the studies (converted to analog with ``convert_to_analog``).

Notebooks never define models themselves (``docs/development.md#layout``).
"""

from analoglib.models.analognas_resnet import AnalogNASResNet
from analoglib.models.digits import DigitsCNN
from analoglib.models.lstm_lm import LSTMLanguageModel
from analoglib.models.resnet import CifarResNet, resnet8, resnet20, resnet32
from analoglib.models.text_classifier import load_text_classifier, tiny_roberta

__all__ = [
    "AnalogNASResNet",
    "CifarResNet",
    "DigitsCNN",
    "LSTMLanguageModel",
    "load_text_classifier",
    "resnet8",
    "resnet20",
    "resnet32",
    "tiny_roberta",
]
