"""Debian version rules, by python-debian (apt_pkg's comparison when it is installed).

patchkit never compares versions itself: epochs (``1:1.0`` > ``2.0``), tildes (``1.0~rc1`` <
``1.0``) and backport suffixes (``3.0.11-1~deb12u2`` < ``3.0.11-1`` < ``3.0.11-1+deb12u1``)
are the library's.
"""

from __future__ import annotations

from functools import lru_cache

from debian.debian_support import Version

NOT_AFFECTED = "0"  # the tracker's fixed version for a release that never had the flaw
UNFIXED = "unfixed"  # the tracker's text form of "no fixed version yet"


def parse_version(text: str) -> Version:
    """``text`` as a Debian version; ValueError if it is not one."""
    if not text or text != text.strip():
        raise ValueError(f"not a Debian version: {text!r}")
    try:
        return Version(text)
    except ValueError:
        raise ValueError(f"not a Debian version: {text!r}") from None


@lru_cache(maxsize=1 << 16)  # a feed names the same versions again and again: a CVE per package
def is_version(text: str) -> bool:
    """Whether ``text`` reads as a Debian version."""
    try:
        parse_version(text)
    except ValueError:
        return False
    return True


def is_fixed(installed_source_version: str, fixed_version: str | None) -> bool:
    """Whether a source package at ``installed_source_version`` has the fix of ``fixed_version``.

    ``None`` or ``"unfixed"``: no fix exists, so no installed version has it. ``"0"``: the
    release was never affected, so every version is fine. Otherwise the installed version must
    be at least the fixed one, by Debian's ordering. ValueError for a string that is not a
    Debian version.
    """
    installed = parse_version(installed_source_version)
    if fixed_version is None or fixed_version == UNFIXED:
        return False
    if fixed_version == NOT_AFFECTED:
        return True
    return bool(installed >= parse_version(fixed_version))
