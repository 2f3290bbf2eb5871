"""CVSS vectors scored by the ``cvss`` library (patchkit does not compute scores by hand)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cvss import CVSS2, CVSS3, CVSS4, CVSSError

from patchkit.advisories.types import Cvss

# OSV's severity[].type for each CVSS version, and the library class that scores it.
_CLASSES: dict[str, Any] = {"CVSS_V2": CVSS2, "CVSS_V3": CVSS3, "CVSS_V4": CVSS4}
KINDS = frozenset(_CLASSES)


@lru_cache(maxsize=1 << 14)  # a few thousand distinct vectors score every CVE of a feed
def score(kind: str, vector: str) -> Cvss:
    """The base score of ``vector``, a CVSS vector of OSV type ``kind`` (``CVSS_V3`` …).

    ValueError, with the library's reason, for a vector that is not valid for its version.
    """
    try:
        scorer = _CLASSES[kind]
    except KeyError:
        raise ValueError(f"not a CVSS type: {kind!r}") from None
    try:
        scored = scorer(vector)
    # The library raises CVSSError for what it recognises as wrong, and can stumble on the rest.
    except (CVSSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"bad {kind} vector {vector!r}: {exc}") from None
    # CVSS 2 vectors carry no version prefix; the others start "CVSS:3.1/".
    version = "2.0" if kind == "CVSS_V2" else vector.split("/", 1)[0].removeprefix("CVSS:")
    return Cvss(version=version, vector=vector, base_score=round(float(scored.base_score), 1))
