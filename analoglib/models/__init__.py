"""Plain-PyTorch models of the studies (converted to analog with ``convert_to_analog``).

Notebooks never define models themselves (conventions section 1).
"""

from analoglib.models.digits import DigitsCNN

__all__ = ["DigitsCNN"]
