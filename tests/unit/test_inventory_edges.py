"""Unit: inventory.load on sources that hang or are hostile. Every case ends, within its timeout,
in an InventoryError naming the source, and leaves no process behind.

The scripts are real executables; the hanging ones write their pid (and their child's) to a file
so the test can check that the kill reached them.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from patchkit import inventory
from patchkit.errors import ExitCode, InventoryError

LISTING = '{"web": {"hosts": ["w1"]}, "_meta": {"hostvars": {}}}'


def script(path: Path, body: str) -> Path:
    """An executable Python inventory script at ``path`` running ``body``."""
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\n{body}")
    path.chmod(0o755)
    return path


def gone(pid: int, within: float = 5.0) -> bool:
    """Whether process ``pid`` has ended (a zombie waiting for init to reap it has)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def pids(path: Path, count: int) -> list[int]:
    """The pids a script wrote to ``path``, once it has written ``count`` of them."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = path.read_text().split() if path.exists() else []
        if len(found) >= count:
            return [int(p) for p in found]
        time.sleep(0.05)
    raise AssertionError(f"{path} holds {path.read_text() if path.exists() else ''!r}")


# Long enough for a script to start and write its pid on a loaded machine (it runs after the
# child has set up Ansible's plugins): the tests that look for its processes use it.
STARTED = 4.0


def timed_out(source: Path | str, timeout: float = 1.0) -> InventoryError:
    started = time.monotonic()
    with pytest.raises(InventoryError) as caught:
        inventory.load(source, timeout=timeout)
    assert time.monotonic() - started < timeout + 10
    assert caught.value.exit_code is ExitCode.BAD_INPUT
    assert f"took longer than {timeout:g} s" in caught.value.message
    assert "--inventory-timeout" in (caught.value.hint or "")
    return caught.value


# ------------------------------------------------------------ timeouts


def test_a_script_that_never_exits_is_stopped(tmp_path: Path) -> None:
    written = tmp_path / "pids"
    hangs = script(
        tmp_path / "fleet.py",
        f"open({str(written)!r}, 'w').write(str(os.getpid()))\ntime.sleep(3600)\n",
    )
    error = timed_out(hangs, STARTED)
    assert f"inventory {hangs} took longer" in error.message
    (pid,) = pids(written, 1)
    assert gone(pid)


@pytest.mark.parametrize("then", ["exits", "sleeps"])
def test_a_script_that_forks_is_stopped_with_its_child(tmp_path: Path, then: str) -> None:
    # The child keeps the script's stdout open: ansible-core waits for it to close, even when
    # the script itself printed its listing and exited.
    written = tmp_path / "pids"
    rest = "sys.exit(0)" if then == "exits" else "time.sleep(3600)"
    forks = script(
        tmp_path / "fleet.py",
        f"print({LISTING!r}, flush=True)\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    time.sleep(3600)\n"
        "    os._exit(0)\n"
        f"open({str(written)!r}, 'w').write(f'{{os.getpid()}} {{child}}')\n"
        f"{rest}\n",
    )
    assert str(forks) in timed_out(forks, STARTED).message
    for pid in pids(written, 2):
        assert gone(pid), pid


def test_a_plugin_that_works_forever_is_stopped(tmp_path: Path) -> None:
    # in-process work (100 million generated hosts): a thread could not be stopped
    config = tmp_path / "fleet.generator.yml"
    layer = "[" + ", ".join(str(n) for n in range(40)) + "]"
    config.write_text(
        "plugin: ansible.builtin.generator\n"
        'hosts: {name: "h-{{ a }}-{{ b }}-{{ c }}-{{ d }}-{{ e }}"}\n'
        f"layers: {{a: {layer}, b: {layer}, c: {layer}, d: {layer}, e: {layer}}}\n"
    )
    assert str(config) in timed_out(config).message


def test_the_file_that_hangs_in_a_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "a_hosts.yml").write_text("all:\n  hosts:\n    w1:\n")
    hangs = script(tmp_path / "b_cloud.py", "time.sleep(3600)\n")
    assert f"inventory {hangs} took longer" in timed_out(tmp_path).message


def test_a_quick_script_is_read_within_a_short_timeout(tmp_path: Path) -> None:
    quick = script(tmp_path / "fleet.py", f"print({LISTING!r})\n")
    hosts = inventory.load(quick, timeout=30)
    assert [(h.name, h.groups) for h in hosts] == [("w1", ("web",))]
    assert inventory.load(quick, timeout=math.inf) == hosts


@pytest.mark.parametrize("timeout", [0, -1, math.nan])
def test_a_timeout_must_be_positive(tmp_path: Path, timeout: float) -> None:
    with pytest.raises(InventoryError, match="more than 0 seconds"):
        inventory.load(tmp_path, timeout=timeout)


def test_the_default_timeout_is_the_module_constant() -> None:
    assert inventory.load.__kwdefaults__ == {"timeout": inventory.TIMEOUT, "cache": None}


# ------------------------------------------------------------ hostile sources


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "hosts"
    os.mkfifo(fifo)
    with pytest.raises(InventoryError, match="neither a file nor a directory") as caught:
        inventory.load(fifo, timeout=10)
    assert str(fifo) in caught.value.message


def test_a_fifo_in_an_inventory_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    w1:\n")
    fifo = tmp_path / "zz_pipe"
    os.mkfifo(fifo)
    with pytest.raises(InventoryError, match="neither a file nor a directory") as caught:
        inventory.load(tmp_path, timeout=10)
    assert f"inventory {fifo} is" in caught.value.message


def test_a_device_is_refused() -> None:
    with pytest.raises(InventoryError, match="/dev/zero is neither a file nor a directory"):
        inventory.load(Path("/dev/zero"), timeout=10)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(InventoryError, match=f"inventory {missing} does not exist"):
        inventory.load(missing)


@pytest.mark.parametrize("alias", ["a: &x [1, *x]", "a: &x {k: *x}"], ids=["list", "mapping"])
def test_a_recursive_alias_in_group_vars_names_the_inventory(tmp_path: Path, alias: str) -> None:
    hosts = tmp_path / "hosts.yml"
    hosts.write_text("web:\n  hosts:\n    w1:\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text(alias + "\n")
    with pytest.raises(InventoryError, match="refers to itself") as caught:
        inventory.load(hosts, timeout=30)
    assert str(hosts) in caught.value.message


def test_a_recursive_alias_in_the_inventory_names_it(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.yml"
    hosts.write_text("all:\n  hosts:\n    w1:\n      a: &x [1, *x]\n")
    with pytest.raises(InventoryError, match="recursion") as caught:
        inventory.load(hosts, timeout=30)
    assert f"cannot parse inventory {hosts}" in caught.value.message


def test_aliases_of_aliases_stop_at_the_value_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the real budget (a million values) takes seconds to reach; the child reads the constant
    monkeypatch.setattr(inventory, "MAX_VALUES", 5_000)
    lines = ["all:", "  vars:", "    l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"    l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 4)]
    hosts = tmp_path / "hosts.yml"
    hosts.write_text("\n".join([*lines, "  hosts:", "    w1:", ""]))
    with pytest.raises(InventoryError, match="host w1 hold more than 5,000 values") as caught:
        inventory.load(hosts, timeout=30)
    assert str(hosts) in caught.value.message


def test_a_script_that_dies_is_an_inventory_error(tmp_path: Path) -> None:
    dies = script(tmp_path / "fleet.py", "os.kill(os.getpid(), 9)\n")
    with pytest.raises(InventoryError) as caught:
        inventory.load(dies, timeout=30)
    assert str(dies) in caught.value.message


@pytest.mark.parametrize("how", ["option", "environment"])
def test_the_command_line_sets_the_timeout(tmp_path: Path, how: str) -> None:
    hangs = script(tmp_path / "hangs.py", "time.sleep(300)")
    policy = Path(__file__).resolve().parents[2] / "policies" / "lab.yml"
    option = ["--inventory-timeout", "1"] if how == "option" else []
    env = os.environ | ({"PATCHKIT_INVENTORY_TIMEOUT": "1"} if how == "environment" else {})
    done = subprocess.run(
        [sys.executable, "-m", "patchkit", *option, "scope", "-p", str(policy), "-i", str(hangs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,  # far above the 1 s asked for: only reached if the option did not act
        check=False,
    )
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr
    said = " ".join(done.stderr.split())
    assert f"reading inventory {hangs} took longer than 1 s" in said


@pytest.mark.parametrize("source", ["x" * 2000, "x" * 2000 + ","])
def test_a_name_too_long_for_the_file_system_is_an_inventory_error(source: str) -> None:
    with pytest.raises(InventoryError, match="File name too long"):
        inventory.load(source)


def test_what_ansible_said_and_the_childs_traceback_stay_apart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a script whose output no plugin reads as an inventory: ansible says why, the child fails
    broken = script(tmp_path / "fleet.py", "print('{not json')\n")
    with caplog.at_level("DEBUG", logger="patchkit.inventory"), pytest.raises(InventoryError):
        inventory.load(broken, timeout=60)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ansible: ")]
    assert said, "what Ansible said about the script is logged"
    assert all(len(line) > len("ansible: ") + 1 for line in said), said  # never char by char
