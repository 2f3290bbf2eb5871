"""Unit: approvals signed and verified by the real ssh-keygen, with keys made in the test."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchkit import signing
from patchkit.errors import ExitCode
from patchkit.execution.admission import approval_statement

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

UNTIL = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
PHRASE = "correct horse"  # the test key's passphrase, typed by a stand-in askpass program
STATEMENT = approval_statement("plan-0123456789ab", "ab" * 32, "alice", False, False, UNTIL)


def make_key(folder: Path, name: str, passphrase: str = "") -> Path:
    """A new ed25519 key pair in ``folder``; the private key file's path."""
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(key)],
        check=True,
        capture_output=True,
    )
    return key


def signer_line(principal: str, key: Path) -> str:
    keytype, blob = key.with_suffix(".pub").read_text().split()[:2]
    return f"{principal} {keytype} {blob}\n"


@pytest.fixture
def alice(tmp_path: Path) -> Path:
    return make_key(tmp_path, "alice")


def test_a_signature_verifies_for_its_signer(alice: Path) -> None:
    signature = signing.sign(STATEMENT, alice)
    assert signature.startswith("-----BEGIN SSH SIGNATURE-----")
    assert signing.verify(STATEMENT, signature, "alice", signer_line("alice", alice))


def test_a_signature_does_not_verify_for_another_principal(tmp_path: Path, alice: Path) -> None:
    signers = signer_line("alice", alice) + signer_line("bob", make_key(tmp_path, "bob"))
    signature = signing.sign(STATEMENT, alice)
    assert not signing.verify(STATEMENT, signature, "bob", signers)  # alice's key, bob's name
    assert not signing.verify(STATEMENT, signature, "alice@example", signers)


def test_a_key_not_in_allowed_signers_does_not_verify(tmp_path: Path, alice: Path) -> None:
    mallory = make_key(tmp_path, "mallory")
    signature = signing.sign(STATEMENT, mallory)
    assert not signing.verify(STATEMENT, signature, "alice", signer_line("alice", alice))
    # listed under alice's name, mallory's key would pass: the list is what is trusted
    assert signing.verify(STATEMENT, signature, "alice", signer_line("alice", mallory))
    assert not signing.verify(STATEMENT, signature, "alice", "")


def test_a_statement_changed_by_one_byte_does_not_verify(alice: Path) -> None:
    signature = signing.sign(STATEMENT, alice)
    signers = signer_line("alice", alice)
    emergency = approval_statement("plan-0123456789ab", "ab" * 32, "alice", False, True, UNTIL)
    assert len(emergency) == len(STATEMENT) - 1  # "false" → "true": one flag, one byte less
    assert not signing.verify(emergency, signature, "alice", signers)
    flipped = bytearray(STATEMENT)
    flipped[-2] ^= 1
    assert not signing.verify(bytes(flipped), signature, "alice", signers)


def test_a_tampered_signature_does_not_verify(alice: Path) -> None:
    signature = signing.sign(STATEMENT, alice)
    lines = signature.splitlines()
    body = lines[3]
    lines[3] = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    signers = signer_line("alice", alice)
    assert not signing.verify(STATEMENT, "\n".join(lines) + "\n", "alice", signers)
    assert not signing.verify(STATEMENT, "not a signature", "alice", signers)


def test_a_signature_of_another_namespace_does_not_verify(tmp_path: Path, alice: Path) -> None:
    message = tmp_path / "message"
    message.write_bytes(STATEMENT)
    subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-f", str(alice), "-n", "git", str(message)],
        check=True,
        capture_output=True,
    )
    git_signature = (tmp_path / "message.sig").read_text()
    assert not signing.verify(STATEMENT, git_signature, "alice", signer_line("alice", alice))


def test_a_key_with_a_passphrase_signs_through_the_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The passphrase comes from ssh-keygen's own prompt (SSH_ASKPASS stands in for a person)."""
    key = make_key(tmp_path, "carol", passphrase=PHRASE)
    ask = tmp_path / "askpass"
    ask.write_text(f"#!/bin/sh\necho '{PHRASE}'\n")
    ask.chmod(0o700)
    monkeypatch.setenv("SSH_ASKPASS", str(ask))
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    signature = signing.sign(STATEMENT, key)
    assert signing.verify(STATEMENT, signature, "carol", signer_line("carol", key))
    ask.write_text("#!/bin/sh\necho wrong\n")
    with pytest.raises(signing.SigningError) as failed:
        signing.sign(STATEMENT, key)
    assert failed.value.message.startswith(f"ssh-keygen cannot sign with {key}: ")
    assert "passphrase" in failed.value.message


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(signing.SigningError) as failed:
        signing.sign(STATEMENT, tmp_path / "id_missing")
    assert failed.value.message == f"cannot sign with {tmp_path / 'id_missing'}: no such key file"
    assert failed.value.exit_code == ExitCode.BAD_INPUT


def test_a_missing_ssh_keygen_is_named(alice: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(alice.parent))  # a PATH without ssh-keygen on it
    with pytest.raises(signing.SigningError, match="ssh-keygen is not installed"):
        signing.verify(STATEMENT, "-----BEGIN SSH SIGNATURE-----", "alice", "alice x y\n")
    with pytest.raises(signing.SigningError, match=f"signing with {alice}: ssh-keygen is not"):
        signing.sign(STATEMENT, alice)
