"""Device noise models: the PCM model and the weight-noise modifier of HWA training."""

from analoglib.noise.modifier import modify_weights, weight_noise
from analoglib.noise.pcm import PCMNoiseModel

__all__ = ["PCMNoiseModel", "modify_weights", "weight_noise"]
