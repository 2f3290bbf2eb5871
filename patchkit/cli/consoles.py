"""The two terminals every command writes to: data on stdout, messages and progress on stderr."""

from __future__ import annotations

from rich.console import Console

console = Console(soft_wrap=True)  # plain lines unwrapped; tables still fit
# soft_wrap: an error stays one line however narrow the terminal, so scripts can grep it.
err_console = Console(stderr=True, soft_wrap=True)
