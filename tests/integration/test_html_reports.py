"""Integration: the HTML reports open in a real browser (Debian's headless Chromium).

Each page is rendered twice: once to a screenshot (it must be a real image of the page), once to
its DOM after rendering (title, tables and charts present). Chromium logs every console message,
a Content-Security-Policy violation included, as a ``CONSOLE`` line: a page must log none. A
control page that breaks the rules shows that the check sees them.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from patchkit.reports import compliance, run_report
from tests.unit import test_compliance, test_run_report

from .debian import apt_install


@pytest.fixture(scope="module")
def chromium() -> str:
    if shutil.which("chromium") is None:
        apt_install("chromium", "the HTML reports are checked in headless Chromium")
    found = shutil.which("chromium")
    assert found is not None
    return found


def browse(chromium: str, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={page.parent / 'profile'}",
         *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def console_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def rendered(chromium: str, page: Path, title: str) -> str:
    """Screenshot and DOM of ``page``; both checked, the DOM returned."""
    shot = page.with_suffix(".png")
    done = browse(chromium, page, f"--screenshot={shot}", "--window-size=1280,2000")
    assert done.returncode == 0, done.stderr[-2000:]
    assert console_lines(done) == []
    assert png_size(shot) == (1280, 2000) and shot.stat().st_size > 20_000  # not a blank page
    dom = browse(chromium, page, "--dump-dom")
    assert dom.returncode == 0 and console_lines(dom) == []
    assert f"<title>{title}</title>" in dom.stdout
    return dom.stdout


def test_the_check_sees_console_errors(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' "
        "content=\"default-src 'none'\"><title>bad</title></head><body>"
        "<img src='https://example.invalid/x.png'><p>a page that breaks the rules</p>"
        "</body></html>"
    )  # the image is blocked by the policy, never fetched
    done = browse(chromium, page, "--dump-dom")
    assert any("Content Security Policy" in line for line in console_lines(done))


def test_the_run_report_renders_offline(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "run.html"
    page.write_text(run_report.to_html(test_run_report.made()))
    dom = rendered(chromium, page, "Patch run run-1: halted")
    assert dom.count("<table") == 4  # summary, batches, hosts, left for the next window
    assert dom.count("<svg") == 1 and dom.count("<rect") >= 4  # outcomes per batch
    assert "rolled back" in dom and "Left for the next window" in dom


def test_the_compliance_report_renders_offline(chromium: str, tmp_path: Path) -> None:
    report = test_compliance.made()
    page = tmp_path / "compliance.html"
    page.write_text(compliance.to_html(report))
    dom = rendered(chromium, page, "Patch compliance: policy prod")
    assert dom.count("<table") == 6  # summary, hosts, totals, exceptions, time to patch, windows
    assert dom.count("<svg") == 3  # by severity, latency over time, windows per month
    assert "<path d=" in dom and dom.count("<circle") >= 3
    assert "(expired)" in dom and "overdue" in dom
