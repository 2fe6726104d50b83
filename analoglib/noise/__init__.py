"""Device noise models."""

from analoglib.noise.pcm import PCMNoiseModel

__all__ = ["PCMNoiseModel"]
