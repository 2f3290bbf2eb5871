"""The one adapter around OpenSSH signatures (``ssh-keygen -Y sign`` and ``-Y verify``).

Approvals are signed with the approver's SSH key in the namespace ``patchkit-approval``, so a
signature made for git commits or files never passes for an approval, and checked against an
allowed_signers file (ssh-keygen(1), ALLOWED SIGNERS) whose content the plan carries.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from patchkit.errors import ExitCode, PatchkitError

NAMESPACE = "patchkit-approval"

# Signing may wait for a person typing the key's passphrase; verifying waits for nobody.
SIGN_TIMEOUT = 300.0
VERIFY_TIMEOUT = 30.0


class SigningError(PatchkitError, OSError):
    """ssh-keygen is missing, or cannot sign with the key it was given."""

    exit_code = ExitCode.BAD_INPUT


def sign(statement: bytes, key: Path) -> str:
    """The armored signature of ``statement`` by ``key`` (a private key file).

    A key with a passphrase works through ssh-agent (when it holds the key) or asks for the
    passphrase on the terminal: ssh-keygen keeps the caller's terminal, which is why the
    statement goes to it as a file, not on standard input.
    """
    if not key.is_file():
        raise SigningError(
            f"cannot sign with {key}: no such key file",
            hint="give the private key file of the key listed for you in allowed_signers, "
            "e.g. --sign ~/.ssh/id_ed25519",
        )
    with tempfile.TemporaryDirectory(prefix="patchkit-sign-") as private:
        message = Path(private) / "approval"
        message.write_bytes(statement)
        done = _ssh_keygen(
            ["-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(message)],
            timeout=SIGN_TIMEOUT,
            doing=f"signing with {key}",
        )
        if done.returncode != 0:
            raise SigningError(
                f"ssh-keygen cannot sign with {key}: {_last_line(done.stderr)}",
                hint="check the key file and its passphrase (ssh-add loads it into ssh-agent); "
                "a private key file must be readable by you only",
            )
        return (Path(private) / "approval.sig").read_text(encoding="ascii")


def verify(statement: bytes, signature: str, principal: str, allowed_signers: str) -> bool:
    """Whether ``signature`` is ``principal``'s signature of ``statement``.

    ``allowed_signers`` is the file's content: the key must be listed there for ``principal``
    (and allowed the namespace). False for any signature that does not verify; SigningError
    only when ssh-keygen cannot be run at all.
    """
    if not allowed_signers.strip() or not signature.strip():
        return False  # nobody listed, nothing signed: ssh-keygen would only say the same
    with tempfile.TemporaryDirectory(prefix="patchkit-verify-") as private:
        signers = Path(private) / "allowed_signers"
        signers.write_text(allowed_signers, encoding="utf-8")
        armored = Path(private) / "approval.sig"
        armored.write_text(signature, encoding="utf-8")
        done = _ssh_keygen(
            [
                "-Y",
                "verify",
                "-f",
                str(signers),
                "-I",
                principal,
                "-n",
                NAMESPACE,
                "-s",
                str(armored),
            ],
            timeout=VERIFY_TIMEOUT,
            doing=f"verifying the signature of {principal}",
            stdin=statement,
        )
    return done.returncode == 0


def _ssh_keygen(
    args: list[str], *, timeout: float, doing: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ssh-keygen; SigningError when it is missing, cannot start or takes too long.

    Without ``stdin`` it keeps the caller's standard input, where a passphrase prompt may read.
    """
    try:
        return subprocess.run(
            ["ssh-keygen", *args],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise SigningError(
            f"{doing}: ssh-keygen is not installed",
            hint="install OpenSSH's client tools (Debian: apt install openssh-client)",
        ) from None
    except subprocess.TimeoutExpired:
        raise SigningError(
            f"{doing}: ssh-keygen did not finish within {timeout:.0f} s",
            hint="was it waiting for a passphrase? load the key with ssh-add first",
        ) from None
    except OSError as exc:
        raise SigningError(f"{doing}: cannot run ssh-keygen: {exc.strerror or exc}") from None


def _last_line(text: bytes) -> str:
    lines = [line for line in text.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "it failed without saying why"
