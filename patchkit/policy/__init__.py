"""The patch policy: typed model (``model``) and the YAML loader that validates it (``loader``)."""

from patchkit.policy.loader import load, loads
from patchkit.policy.model import Policy

__all__ = ["Policy", "load", "loads"]
