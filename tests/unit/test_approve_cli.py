"""Unit: ``patchkit approve`` on plans in a ledger in tmp_path (who may approve, signed or not)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from patchkit import findings as findings_file
from patchkit import signing
from patchkit.cli import consoles, main
from patchkit.errors import ExitCode, RefusedError
from patchkit.execution.admission import approval_statement
from patchkit.ledger import Ledger
from patchkit.model import Approval, Finding, PendingUpdate

needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    @property
    def message(self) -> str:
        return " ".join(self.err.split())  # one line, however the terminal is wide


Run = Callable[..., Done]  # patchkit --ledger TMP ARGV in this process


@dataclass(frozen=True)
class Setup:
    """A policy (approvers alice and bob, emergency approver erin, bob plans) and a plan of it."""

    folder: Path
    ledger: str
    plan_id: str
    alice_key: Path

    def approvals(self) -> list[Approval]:
        ledger = Ledger(self.ledger)
        try:
            return ledger.approvals(self.plan_id)
        finally:
            ledger.close()

    @property
    def signers(self) -> str:
        return (self.folder / "allowed_signers").read_text()


def make_key(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
        check=True,
        capture_output=True,
    )
    return key


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    for console in (consoles.console, consoles.err_console):
        monkeypatch.setattr(console, "width", 300)

    def run(ledger: str, *argv: str) -> Done:
        monkeypatch.setattr(sys, "argv", ["patchkit", "--ledger", ledger, *argv])
        with pytest.raises(SystemExit) as stopped:
            main()
        out, err = capsys.readouterr()
        return Done(int(stopped.value.code or 0), out, err)

    return run


def setup(
    run_cli: Run, folder: Path, *, signatures_required: bool, at: datetime | None = None
) -> Setup:
    """Write the policy, inventory, findings and allowed_signers; bob makes the plan."""
    alice_key = make_key(folder, "alice")
    keytype, blob = alice_key.with_suffix(".pub").read_text().split()[:2]
    (folder / "allowed_signers").write_text(f"alice {keytype} {blob}\n")
    policy = {
        "name": "approvals",
        "roles": {
            "owner": "ops",
            "approvers": ["alice", "bob"],
            "separation_of_duties": True,
            "emergency_approvers": ["erin"],
            "signatures": {"allowed_signers": "allowed_signers", "required": signatures_required},
        },
        "classification": {"updates": "all"},
        "windows": [
            {
                "name": "all-day",
                "rrule": "FREQ=DAILY;BYHOUR=0;BYMINUTE=0;BYSECOND=0",
                "timezone": "UTC",
                "duration": "24h",
                "cutoff": "5m",
            }
        ],
        "rollout": {"batch_size": 2, "concurrency": 2},
        "downtime": {"reboot_packages": ["linux-image-*"], "reboot_approval": ["db"]},
    }
    inventory: dict[str, Any] = {
        "all": {"children": {"db": {"hosts": {"db1": {}}}, "web": {"hosts": {"web1": {}}}}}
    }
    # Planned now: the next occurrence of the window is tomorrow, so approvals given in the
    # test have not lapsed yet.
    now = at or datetime.now(UTC)
    kernel = (PendingUpdate("linux-image-amd64", "6.1.1", "6.1.2", "stable"),)
    found = [Finding(h, now - timedelta(hours=1), True, kernel) for h in ("db1", "web1")]
    (folder / "policy.yml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    (folder / "hosts.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    (folder / "findings.json").write_text(findings_file.dumps(found), encoding="utf-8")
    ledger = f"sqlite:///{folder / 'ledger.sqlite'}"
    files = ["-p", str(folder / "policy.yml"), "-i", str(folder / "hosts.yml")]
    files += ["--findings", str(folder / "findings.json")]
    done = run_cli(
        ledger, "plan", *files, "--format", "json", "--by", "bob", "--at", now.isoformat()
    )
    assert done.code == 0, done.err
    return Setup(folder, ledger, json.loads(done.out)["id"], alice_key)


@pytest.fixture
def plain(run_cli: Run, tmp_path: Path) -> Setup:
    return setup(run_cli, tmp_path, signatures_required=False)


@pytest.fixture
def signed(run_cli: Run, tmp_path: Path) -> Setup:
    return setup(run_cli, tmp_path, signatures_required=True)


pytestmark = needs_ssh_keygen  # the fixtures make real keys


def test_an_approver_approves_and_is_told_until_when(run_cli: Run, plain: Setup) -> None:
    done = run_cli(plain.ledger, "approve", plain.plan_id, "--by", "alice", "--comment", "CHG-7")
    assert done.code == 0, done.err
    assert f"plan {plain.plan_id} approved by alice (hash" in done.message
    assert "valid until" in done.message
    assert "the reboots of db1 need approval too" in done.message
    (stored,) = plain.approvals()
    assert (stored.by, stored.comment, stored.reboots, stored.emergency) == (
        "alice",
        "CHG-7",
        False,
        False,
    )
    assert stored.expires is not None and stored.expires > stored.at
    assert stored.signature is None and stored.consumed_by is None


def test_reboots_name_the_hosts_and_json_prints_the_record(run_cli: Run, plain: Setup) -> None:
    done = run_cli(plain.ledger, "approve", plain.plan_id, "--by", "alice", "--reboots", "--json")
    assert done.code == 0, done.err
    assert "with the reboots of db1" in done.message
    record = json.loads(done.out)
    assert record["plan_id"] == plain.plan_id and record["reboots"] is True
    assert record["by"] == "alice" and record["emergency"] is False
    assert datetime.fromisoformat(record["expires"]) > datetime.fromisoformat(record["at"])
    assert record["id"] == plain.approvals()[0].id


def test_a_stranger_is_refused(run_cli: Run, plain: Setup) -> None:
    done = run_cli(plain.ledger, "approve", plain.plan_id, "--by", "mallory")
    assert done.code == ExitCode.REFUSED, done.err
    assert "mallory may not approve plans of policy approvals" in done.message
    assert "approvers: alice, bob" in done.message
    assert plain.approvals() == []


def test_separation_of_duties_refuses_the_plans_maker(run_cli: Run, plain: Setup) -> None:
    done = run_cli(plain.ledger, "approve", plain.plan_id, "--by", "bob")
    assert done.code == ExitCode.REFUSED, done.err
    assert f"bob made plan {plain.plan_id} and may not approve it" in done.message
    assert "ask another approver: alice" in done.message
    assert plain.approvals() == []


def test_an_emergency_approval_needs_an_emergency_approver(run_cli: Run, plain: Setup) -> None:
    refused = run_cli(plain.ledger, "approve", plain.plan_id, "--by", "alice", "--emergency")
    assert refused.code == ExitCode.REFUSED, refused.err
    assert "alice may not give emergency approvals for plans of policy approvals" in (
        refused.message
    )
    assert "emergency approvers: erin" in refused.message
    done = run_cli(plain.ledger, "approve", plain.plan_id, "--by", "erin", "--emergency")
    assert done.code == 0, done.err
    assert f"EMERGENCY: plan {plain.plan_id} may start now, outside its window" in done.message
    (stored,) = plain.approvals()
    assert stored.emergency and stored.expires is not None
    assert stored.expires - stored.at <= timedelta(hours=4)  # the bounded default


def test_a_signed_approval_is_stored_and_verifies(run_cli: Run, signed: Setup) -> None:
    done = run_cli(
        signed.ledger, "approve", signed.plan_id, "--by", "alice", "--sign", str(signed.alice_key)
    )
    assert done.code == 0, done.err
    assert f"signed with {signed.alice_key}: the signature verifies for alice" in done.message
    (stored,) = signed.approvals()
    assert stored.signature is not None
    statement = approval_statement(
        stored.plan_id,
        stored.plan_hash,
        stored.by,
        stored.reboots,
        stored.emergency,
        stored.expires,
    )
    assert signing.verify(statement, stored.signature, "alice", signed.signers)
    # the row edited to say more no longer matches its signature
    more = approval_statement(stored.plan_id, stored.plan_hash, "alice", True, True, stored.expires)
    assert not signing.verify(more, stored.signature, "alice", signed.signers)


def test_a_key_not_listed_for_the_approver_is_refused(run_cli: Run, signed: Setup) -> None:
    other = make_key(signed.folder, "not-listed")
    done = run_cli(signed.ledger, "approve", signed.plan_id, "--by", "alice", "--sign", str(other))
    assert done.code == ExitCode.REFUSED, done.err
    assert f"the key {other} is not listed for alice in the allowed_signers" in done.message
    assert "nothing was recorded" in done.message
    assert signed.approvals() == []


def test_required_signatures_refuse_an_approval_without_sign(run_cli: Run, signed: Setup) -> None:
    done = run_cli(signed.ledger, "approve", signed.plan_id, "--by", "alice")
    assert done.code == ExitCode.REFUSED, done.err
    assert f"plan {signed.plan_id} needs signed approvals" in done.message
    assert "--sign ~/.ssh/id_ed25519" in done.message
    assert signed.approvals() == []


def test_a_missing_key_file_is_bad_input(run_cli: Run, signed: Setup) -> None:
    missing = signed.folder / "id_gone"
    done = run_cli(
        signed.ledger, "approve", signed.plan_id, "--by", "alice", "--sign", str(missing)
    )
    assert done.code == ExitCode.BAD_INPUT, done.err
    assert f"cannot sign with {missing}: no such key file" in done.message


def test_an_edited_plan_body_is_refused(run_cli: Run, plain: Setup) -> None:
    database = sqlite3.connect(plain.folder / "ledger.sqlite")
    with database:
        (packed,) = database.execute(
            "SELECT body_z FROM plans WHERE id = ?", (plain.plan_id,)
        ).fetchone()
        text = zlib.decompress(packed).decode()
        assert "6.1.2" in text
        edited = zlib.compress(text.replace("6.1.2", "6.1.3").encode())
        changed = database.execute(
            "UPDATE plans SET body_z = ? WHERE id = ?", (edited, plain.plan_id)
        ).rowcount
    database.close()
    assert changed == 1
    done = run_cli(plain.ledger, "approve", plain.plan_id, "--by", "alice")
    assert done.code == ExitCode.REFUSED, done.err
    assert f"plan {plain.plan_id} in the ledger does not match its hash" in done.message
    assert plain.approvals() == []


def test_an_unknown_plan_is_named(run_cli: Run, plain: Setup) -> None:
    done = run_cli(plain.ledger, "approve", "plan-000000000000", "--by", "alice")
    assert done.code == ExitCode.BAD_INPUT, done.err
    assert "no plan plan-000000000000 in" in done.message


def test_an_approval_of_a_plan_whose_window_ended_is_kept_and_said_to_have_lapsed(
    run_cli: Run, tmp_path: Path
) -> None:
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    old = setup(run_cli, tmp_path, signatures_required=False, at=three_days_ago)
    done = run_cli(old.ledger, "approve", old.plan_id, "--by", "alice")
    assert done.code == 0, done.err
    assert "note: this approval lapsed at once" in done.message
    assert "run will not start on it" in done.message
    (stored,) = old.approvals()
    assert stored.expires is not None and stored.expires <= datetime.now(UTC)


# ---------------------------------------------------------------- the approvals store


def test_consuming_approvals_takes_each_once_and_rolls_back_a_second_run(plain: Setup) -> None:
    ledger = Ledger(plain.ledger)
    try:
        at = datetime.now(UTC)
        first = ledger.approve(plain.plan_id, "h", by="alice", at=at, emergency=True, expires=at)
        second = ledger.approve(plain.plan_id, "h", by="bob", at=at, signature="sig")
        assert ledger.approvals(plain.plan_id) == [first, second]
        assert first.emergency and first.expires == at.replace(tzinfo=UTC)
        with ledger._tx("cannot write to") as conn:
            ledger._consume(conn, [first.id], "run-1")
        with ledger._tx("cannot write to") as conn:  # the same run again: a resume
            ledger._consume(conn, [first.id], "run-1")
        with pytest.raises(RefusedError) as refused, ledger._tx("cannot write to") as conn:
            ledger._consume(conn, [second.id, first.id], "run-2")
        assert refused.value.message == (
            f"approval(s) {first.id} were used by run run-1 before run run-2 could start on them"
        )
        # the refusal rolled the second run's transaction back: bob's approval is unused
        used = {a.id: a.consumed_by for a in ledger.approvals(plain.plan_id)}
        assert used == {first.id: "run-1", second.id: None}
    finally:
        ledger.close()
