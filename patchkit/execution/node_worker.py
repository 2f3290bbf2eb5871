"""patchkit-worker: ``ansible-runner worker`` on an execution node, on a lease from the controller.

This file runs on the node, not in the controller: ``patchkit node bootstrap`` copies it into the
node's virtualenv, and the controller starts it over SSH for each job. It needs only the standard
library and the ansible-runner installed beside it.

Why it exists: the worker's life is not tied to the controller's. When the SSH connection is cut
(the controller killed, Ctrl-C, a network black hole) sshd on the node notices nothing, and the
worker would go on patching and rebooting hosts with nobody recording what happened. So:

1. it starts ``python -m ansible_runner worker --private-data-dir DIR --delete`` and passes the
   transmit stream from its stdin to the worker, up to the stream's ``{"eof": true}`` line;
2. then its stdin carries the controller's heartbeat (a newline every few seconds);
3. on end of stdin, SIGHUP, SIGPIPE, or ``LEASE`` seconds without a heartbeat, it sends SIGTERM
   to the worker: ansible-runner's own cancel, which stops ansible-playbook, reports the job as
   canceled when anyone still listens, and deletes DIR (the SSH key and extra vars in it);
4. the worker's output (events, status, artifacts) goes straight to this process's stdout, which
   is the SSH channel back to ``ansible-runner process`` on the controller.

Usage: ``patchkit-worker LEASE_SECONDS --private-data-dir DIR``; the exit status is the worker's.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

STOP_GRACE = 60.0  # seconds between SIGTERM and SIGKILL: ansible-playbook ends its forks first


def _is_eof(line: bytes) -> bool:
    """Whether ``line`` ends the transmit stream. The base64 of the zip has no braces or quotes,
    and the encoder writes the eof line right after it, on the same line."""
    return line.rstrip(b"\r\n").endswith(b'{"eof": true}')


def _forward_stream(source: object, worker: subprocess.Popen[bytes]) -> bool:
    """Copy the transmit stream to the worker; False when it ended before its eof line."""
    if worker.stdin is None:  # pragma: no cover - it is a pipe
        return False
    read = source.readline  # type: ignore[attr-defined]
    while True:
        line = read()
        if not line:
            return False
        worker.stdin.write(line)
        if _is_eof(line):
            worker.stdin.flush()
            worker.stdin.close()
            return True


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        worker.kill()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "--private-data-dir":
        sys.stderr.write("usage: patchkit-worker LEASE_SECONDS --private-data-dir DIR\n")
        return 2
    lease = float(argv[0])
    directory = argv[2]
    worker = subprocess.Popen(
        [sys.executable, "-m", "ansible_runner", "worker", "--private-data-dir", directory,
         "--delete"],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    lost = False

    def cut(_signum: int, _frame: object) -> None:
        nonlocal lost
        lost = True

    signal.signal(signal.SIGHUP, cut)
    signal.signal(signal.SIGPIPE, cut)
    signal.signal(signal.SIGTERM, cut)
    fd = sys.stdin.fileno()
    if not _forward_stream(os.fdopen(os.dup(fd), "rb"), worker):
        _stop(worker)
        return _status(worker.wait())
    # the heartbeat, read from the descriptor itself (what the buffered reader took past the
    # eof line was heartbeat too, or the end: the end shows again on the descriptor)
    heard = time.monotonic()
    while worker.poll() is None:
        if lost or time.monotonic() - heard > lease:
            break
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                break  # the controller closed the stream: cancel, or it is gone
            heard = time.monotonic()
    # signal first, say why after: with the connection gone, writing to stderr can fail
    _stop(worker)
    return _status(worker.wait())


def _status(returncode: int) -> int:
    """The worker's exit status as a shell gives it: 128 + N for a worker ended by signal N."""
    return 128 - returncode if returncode < 0 else returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
