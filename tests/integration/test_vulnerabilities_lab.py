"""Integration: the vulnerability path on real lab hosts, through the command line (issue 17).

assess (the hosts' real dpkg inventory) → import the lab's feeds (tracker JSON, OSV records,
KEV, EPSS in their real formats, patchkit/lab/feeds.py) → plan: the demo-lib update is
critical because it fixes a known-exploited CVE → audit: fix pending, no fix here, no fix
yet → run the window → audit again: not affected → a newly published update (demo-kernel
1.1) is announced by the next assessment's new-updates webhook, with the CVE it fixes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from patchkit.lab import lifecycle
from patchkit.lab.config import LabConfig
from patchkit.lab.feeds import APP_CVE, KERNEL_CVE, KEV_CVE, MILD_CVE, OPEN_CVE, write_feeds
from tests.receiver import receiver

from .conftest import approve, patchkit_cli, run, states, variant

HOSTS = ["host1", "host2"]  # dev (the canary) and staging: one batch each, no reboot


def _json(done: Any) -> Any:
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def test_assess_import_plan_audit_run_audit_and_alert(
    lab_config: LabConfig, lab: Path, env: dict[str, str], tmp_path: Path, pristine: None
) -> None:
    with receiver() as hook:
        policy = variant(
            tmp_path,
            ("roles:\n", "scope: {include: [host1, host2]}\n\nroles:\n"),
            ("  severity_rules:\n",
             "  deny: [demo-svc]\n  severity_rules:\n    - {severity: critical, kev: true}\n"),
            ("reporting:\n",
             f"notifications:\n  webhooks: [{{url: '{hook.url}', events: [new-updates]}}]\n\n"
             "reporting:\n"),
        )  # fmt: skip
        where = ("-p", policy, "-i", str(lab))
        # demo-kernel 1.1 is published later, to be announced as new
        lifecycle.set_updates(lab_config, "demo-kernel", publish=False)
        try:
            first = patchkit_cli("assess", *where, env=env)
            assert first.returncode == 0, first.stderr
            assert hook.events() == []  # a first assessment is the baseline

            feeds = [str(p) for p in write_feeds(tmp_path / "feeds")]
            done = patchkit_cli("advisories", "import", *feeds, env=env)
            assert done.returncode == 0, done.stderr
            status = _json(patchkit_cli("advisories", "status", "--json", env=env))
            assert status  # the three feeds are listed

            plan = _json(patchkit_cli("plan", *where, "--format", "json", env=env))
            updates = {
                (h["host"], u["package"]): u
                for b in plan["batches"] for h in b["hosts"] for u in h["updates"]
            }  # fmt: skip
            assert sorted(updates) == [(h, p) for h in HOSTS for p in ("demo-app", "demo-lib")]
            lib = updates[("host1", "demo-lib")]
            assert (lib["severity"], lib["rated_by"]) == (
                "critical",
                f"rule 1 (kev: true) for {KEV_CVE}",
            )
            assert [(c["cve"], c["kev"], c["cvss"]) for c in lib["cves"]] == [
                (KEV_CVE, True, 9.8),  # CVSS from the OSV records
                (MILD_CVE, False, 4.3),
            ]
            assert updates[("host1", "demo-app")]["cves"] == []  # 1.1 does not fix APP_CVE

            audit = ("audit", *where, "--format", "json")
            before = patchkit_cli(*audit, KEV_CVE, OPEN_CVE, APP_CVE, env=env)
            assert before.returncode == 1, before.stderr
            found = {c["cve"]: {h["host"]: h for h in c["hosts"]} for c in _json(before)["cves"]}
            assert {h: x["state"] for h, x in found[KEV_CVE].items()} == dict.fromkeys(
                HOSTS, "affected: fix pending"
            )
            assert found[KEV_CVE]["host1"]["updates"] == ["demo-lib"]
            assert found[KEV_CVE]["host1"]["window"] == "all-day"
            assert {x["state"] for x in found[OPEN_CVE].values()} == {"affected: no fix yet"}
            assert {x["state"] for x in found[APP_CVE].values()} == {"affected: no fix here"}

            approve(plan["id"], env)
            assert run(lab, env, plan["id"], policy) == 0
            patched = states(lab, "host1,host2")
            assert {h: s.packages["demo-lib"] for h, s in patched.items()} == dict.fromkeys(
                HOSTS, "1.1"
            )

            again = patchkit_cli("assess", *where, env=env)
            assert again.returncode == 0, again.stderr
            assert hook.events() == []  # nothing new appeared
            after = patchkit_cli(*audit, KEV_CVE, env=env)
            assert after.returncode == 0, after.stdout
            assert {h["state"] for h in _json(after)["cves"][0]["hosts"]} == {"not affected"}
            kev = patchkit_cli("audit", *where, "--kev", env=env)
            assert kev.returncode == 0 and "no KEV entry" in kev.stderr

            lifecycle.set_updates(lab_config, "demo-kernel", publish=True)
            news = patchkit_cli("assess", *where, env=env)
            assert news.returncode == 0, news.stderr
        finally:
            lifecycle.set_updates(lab_config, "demo-kernel", publish=True)
        assert hook.events() == ["new-updates"]
        (event,) = hook.got
        (kernel,) = event["updates"]
        assert (kernel["package"], kernel["candidate"], sorted(kernel["hosts"])) == (
            "demo-kernel",
            "1.1",
            HOSTS,
        )
        assert [c["cve"] for c in kernel["cves"]] == [KERNEL_CVE]
