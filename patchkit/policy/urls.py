"""URL rules for the policy's webhooks: what counts as loopback, what makes a URL unsafe to
send a token to, and how a URL is shown without its password."""

from __future__ import annotations

import ipaddress
import urllib.parse


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a URL's host name, without brackets) names this machine's loopback."""
    name = host.lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        # Other spellings (127.1, 2130706433, names in /etc/hosts) are not trusted: whether
        # they are loopback depends on the resolver, not on the policy text.
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def webhook_problems(url: str, token_env: str | None) -> list[str]:
    """What makes a webhook at ``url`` unsafe or unusable, one line each; empty when it may be
    used. Pure (no network, no environment): the policy model refuses such a webhook, and the
    Notifier refuses one built in code at send time, before any connection is made.
    """
    parts = urllib.parse.urlsplit(url)
    problems = []
    if parts.username is not None or parts.password is not None:
        problems.append(
            f"{without_password(url)}: a webhook URL must not carry a user name or password; "
            "put a bearer token in the environment variable named by token_env"
        )
    try:
        _ = parts.port  # parsing the port is the check: urlsplit raises only when asked for it
    except ValueError:
        problems.append(f"{without_password(url)}: the port is not a number from 0 to 65535")
    host = parts.hostname
    if not host:
        problems.append(f"{without_password(url)}: the URL names no host")
    elif token_env and parts.scheme.lower() == "http" and not is_loopback(host):
        problems.append(
            f"{without_password(url)}: token_env {token_env} would send a bearer token in clear "
            "text; use https://, or http:// only to this machine (127.0.0.0/8, ::1, localhost)"
        )
    return problems


def without_password(url: str) -> str:
    """The URL without any password in it, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))
