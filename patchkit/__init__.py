"""patchkit: patch windows for Ansible fleets, driven by a written patch policy."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
