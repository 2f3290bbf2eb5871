"""The patch policy: typed model (``model``) and the YAML loader that validates it (``loader``)."""

from patchkit.policy.loader import Located, load, load_located, loads, loads_located
from patchkit.policy.model import Policy

__all__ = ["Located", "Policy", "load", "load_located", "loads", "loads_located"]
