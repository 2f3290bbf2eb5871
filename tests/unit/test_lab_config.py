"""Unit: the lab's addresses, names and argument checks (pure, no hosts)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from patchkit.errors import ExitCode, LabUsageError
from patchkit.lab.config import LabConfig, check_snapshot_name


def test_default_addresses() -> None:
    config = LabConfig.create()
    assert config.gateway == ipaddress.IPv4Address("10.77.0.1")
    assert config.address(1) == ipaddress.IPv4Address("10.77.0.11")
    assert config.address(8) == ipaddress.IPv4Address("10.77.0.18")
    assert config.repo_url == "http://10.77.0.1:8080"


def test_addresses_follow_the_subnet() -> None:
    config = LabConfig.create(name="other", subnet="10.77.5.0/24", repo_port=9090)
    assert config.address(3) == ipaddress.IPv4Address("10.77.5.13")
    assert config.repo_url == "http://10.77.5.1:9090"


def test_capacity_is_what_fits_after_the_offset() -> None:
    assert LabConfig.create().max_hosts == 240
    assert LabConfig.create(subnet="10.1.2.0/26").max_hosts == 64 - 12


def test_interface_names_fit_the_kernel_limit() -> None:
    config = LabConfig.create(name="abcdefgh")
    longest = config.max_hosts
    assert len(config.bridge) <= 15
    assert len(config.veth(longest)) <= 15


def test_paths_are_per_lab_and_cache_is_shared(tmp_path: Path) -> None:
    one = LabConfig.create(name="one", root=tmp_path)
    two = LabConfig.create(name="two", root=tmp_path, subnet="10.77.1.0/24")
    assert one.pool_dir != two.pool_dir
    assert one.image_stream == two.image_stream
    assert one.key_path == two.key_path
    assert one.host_dir(2) == tmp_path / "one" / "pool" / "host2"
    assert one.run_file(2, "noboot") == tmp_path / "one" / "run" / "host2.noboot"


@pytest.mark.parametrize("text, index", [("host1", 1), ("3", 3), (" host12 ", 12)])
def test_parse_host(text: str, index: int) -> None:
    assert LabConfig.create().parse_host(text) == index


@pytest.mark.parametrize("text", ["web1", "host", "host-1", "", "host0", "host241", "h1"])
def test_parse_host_rejects(text: str) -> None:
    with pytest.raises(LabUsageError) as err:
        LabConfig.create().parse_host(text)
    assert err.value.exit_code == ExitCode.BAD_INPUT


@pytest.mark.parametrize("count", [0, -1, 241])
def test_count_out_of_range(count: int) -> None:
    with pytest.raises(LabUsageError, match="out of range") as err:
        LabConfig.create().check_count(count)
    assert "holds 1 to 240" in (err.value.hint or "")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "Lab"},
        {"name": "toolongname"},
        {"name": "1lab"},
        {"subnet": "8.8.8.0/24"},  # not private: the lab never uses a public range
        {"subnet": "10.0.0.0/8"},
        {"subnet": "not-a-net"},
        {"repo_port": 80},
    ],
)
def test_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(LabUsageError):
        LabConfig.create(**kwargs)  # type: ignore[arg-type]


def test_snapshot_names() -> None:
    assert check_snapshot_name("pre-patch.1") == "pre-patch.1"
    for bad in ("", "../x", "a/b", "-x", "x" * 65):
        with pytest.raises(LabUsageError):
            check_snapshot_name(bad)
