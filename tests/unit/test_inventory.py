"""Unit: patchkit.inventory gives what ``ansible-inventory --list`` gives, for every kind of source.

Each case runs the real ``ansible-inventory`` of the venv (in an empty directory, so no
playbook-adjacent group_vars/ sneak in) and compares hosts, groups and variables.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from patchkit import inventory
from patchkit.errors import ExitCode, InventoryError
from patchkit.model import Host

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventories" / "example"
ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")

# A value encrypted with ansible-vault (password "secret"); neither side decrypts it.
VAULTED = """\
!vault |
            $ANSIBLE_VAULT;1.1;AES256
            39653233343233666332346334363130646261613131333632663461376330363137653637643131
            3631613134633734636266643666613434363335653861620a346139636630376464666535643663
            66663364396134636535626531396631336333396462613633333464396261636534346632393334
            3064343563653666300a333731303764343263326533643931303163613330373635393461313864
            3932"""

YAML_INVENTORY = f"""\
all:
  vars:
    os_family: Debian
    tier: 3
  children:
    prod:
      vars: {{env: prod, tier: 1, owners: [ops, dba], limits: {{cpu: 4}}}}
      children:
        db:
          hosts:
            db[1:3].example.net:
              cluster: orders-db
          vars: {{backup: true, window: 2026-11-28, started: 2026-11-28 22:00:00}}
        web:
          hosts:
            web1.example.net: {{ansible_port: 2222}}
    staging:
      vars: {{env: staging, tier: 2}}
      hosts:
        web-staging1.example.net:
          secret: {VAULTED}
    pinned:
      hosts:
        db1.example.net:
      vars: {{ansible_group_priority: 5, tier: 0}}
  hosts:
    loose.example.net:
"""


def ansible_inventory(sources: Sequence[Path | str], cwd: Path) -> dict[str, Any]:
    args = [str(ANSIBLE_INVENTORY)]
    for source in sources:
        args += ["-i", str(source)]
    # the same environment (so the same Ansible config) as patchkit's load in this process
    done = subprocess.run([*args, "--list"], cwd=cwd, capture_output=True, text=True, check=True)
    listing: dict[str, Any] = json.loads(done.stdout)
    return listing


def expected_hosts(listing: Mapping[str, Any]) -> dict[str, tuple[tuple[str, ...], Any]]:
    """name -> (groups, vars) from an ``ansible-inventory --list`` document."""
    groups = {name: body for name, body in listing.items() if name != "_meta"}

    def members(name: str) -> set[str]:
        body = groups.get(name, {})
        found = set(body.get("hosts", ()))
        for child in body.get("children", ()):
            found |= members(child)
        return found

    everyone = members("all")
    membership: dict[str, set[str]] = {h: set() for h in everyone}
    for name in groups:
        if name not in ("all", "ungrouped"):
            for host in members(name):
                membership[host].add(name)
    hostvars = listing["_meta"]["hostvars"]
    return {h: (tuple(sorted(membership[h])), trusting(hostvars.get(h, {}))) for h in everyone}


def trusting(value: Any) -> Any:
    """Drop the JSON wrapper ansible-inventory puts on strings that must not be templated.

    Values a plugin computed (constructed's ``compose``) print as ``{"__ansible_unsafe": "x"}``;
    the value is "x", which is what Host.vars holds (patchkit never templates them).
    """
    if isinstance(value, dict):
        if value.keys() == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: trusting(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trusting(v) for v in value]
    return value


def thaw(value: Any) -> Any:
    """Host.vars as JSON would have them (freeze turned lists into tuples)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def as_loaded(hosts: Sequence[Host]) -> dict[str, tuple[tuple[str, ...], Any]]:
    return {h.name: (h.groups, thaw(h.vars)) for h in hosts}


def assert_agrees(sources: Sequence[Path | str], cwd: Path) -> tuple[Host, ...]:
    hosts = inventory.load(sources if len(sources) > 1 else sources[0])
    assert [h.name for h in hosts] == sorted(h.name for h in hosts)
    loaded = as_loaded(hosts)
    expected = expected_hosts(ansible_inventory(sources, cwd))
    assert loaded.keys() == expected.keys()
    for name, want in expected.items():
        assert loaded[name] == want, name
    return hosts


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="module")
def example(empty_dir: Path) -> tuple[Host, ...]:
    return assert_agrees([EXAMPLE / "hosts.yml"], empty_dir)


def test_example_fleet_agrees_with_ansible_inventory(example: tuple[Host, ...]) -> None:
    by_name = {h.name: h for h in example}
    assert 200 <= len(example) <= 300
    # group_vars/prod/ (a directory), host_vars/web-prod-01/ (a directory) and a host_vars file
    web = by_name["web-prod-01"]
    assert (web.var("env"), web.var("tier"), web.var("os_family")) == ("prod", 1, "Debian")
    assert web.var("tls_cert_expires") == "2027-02-01"
    assert by_name["app-prod-legacy-01"].var("os_family") == "RedHat"
    # a deeper group's group_vars file wins over its parent's: prod_internal under prod
    assert by_name["batch-prod-01"].var("tier") == 2
    assert by_name["lt-0002"].var("tier") == 4
    assert by_name["db-prod-03"].var("cluster") == "orders-db-prod"
    assert by_name["db-prod-03"].groups == ("db", "orders_db_prod", "prod", "servers")


def test_priority_decides_between_groups_of_the_same_depth(example: tuple[Host, ...]) -> None:
    canary = [h for h in example if "canary" in h.groups]
    assert canary
    assert all(h.var("patch_wave") == 0 for h in canary)
    others = [h for h in example if "staging" in h.groups and "canary" not in h.groups]
    assert all(h.var("patch_wave") == 1 for h in others)


def test_every_host_has_the_variables_the_policy_uses(example: tuple[Host, ...]) -> None:
    for host in example:
        assert host.var("env") in {"prod", "staging", "dev", "corp"}, host.name
        assert host.var("tier") in {1, 2, 3, 4}, host.name
        assert host.var("os_family") in {"Debian", "RedHat"}, host.name
        if "servers" in host.groups and not host.name.startswith(("ci-", "batch-", "app-prod-leg")):
            assert host.var("cluster"), host.name
    clusters = {h.var("cluster") for h in example if h.var("cluster")}
    sizes = [sum(h.var("cluster") == c for h in example) for c in clusters]
    assert {2, 3} <= set(sizes)


def test_a_directory_inventory_agrees(tmp_path: Path, empty_dir: Path) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    for part in ("hosts.yml", "group_vars", "host_vars"):
        source = EXAMPLE / part
        if source.is_dir():
            shutil.copytree(source, fleet / part)
        else:
            shutil.copy(source, fleet / part)
    (fleet / "extra.ini").write_text("[extra]\nextra1.example.net tier=3\n")
    hosts = assert_agrees([fleet], empty_dir)
    assert "extra1.example.net" in {h.name for h in hosts}


def test_the_ini_variant_agrees(empty_dir: Path) -> None:
    hosts = assert_agrees([ROOT / "inventories" / "example-ini" / "hosts.ini"], empty_dir)
    by_name = {h.name: h for h in hosts}
    assert {"web01.example.net", "web04.example.net", "db-b.example.net"} <= by_name.keys()
    assert "batch02.example.net" not in by_name  # batch[01:05:2] steps by two
    assert by_name["bastion.example.net"].groups == ()
    assert by_name["web01.example.net"].groups == ("canary", "prod", "servers", "web", "webservers")
    assert by_name["web01.example.net"].var("patch_wave") == 0
    assert by_name["bastion.example.net"].var("ansible_port") == 2222


def test_a_yaml_file_agrees(tmp_path: Path, empty_dir: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(YAML_INVENTORY)
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "db.yml").write_text("tier: 1\nbackup: false\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "db2.example.net.yml").write_text("cluster: orders-db-b\n")
    hosts = assert_agrees([path], empty_dir)
    by_name = {h.name: h for h in hosts}
    db1 = by_name["db1.example.net"]
    # the inventory's priority 5 puts 'pinned' after 'prod' (same depth), but group_vars/
    # files come after all inventory group vars, so db.yml's tier wins
    assert db1.var("tier") == 1
    assert db1.var("window") == "2026-11-28"
    assert db1.var("owners") == ("ops", "dba")
    assert "__ansible_vault" in by_name["web-staging1.example.net"].var("secret")


def test_an_inventory_script_agrees(tmp_path: Path, empty_dir: Path) -> None:
    script = tmp_path / "fleet.py"
    listing = {
        "web": {"hosts": ["w1", "w2"], "vars": {"tier": 1}},
        "prod": {"children": ["web", "db"], "vars": {"env": "prod", "tier": 2}},
        "db": {"hosts": ["d1"]},
        "_meta": {"hostvars": {"w1": {"cluster": "shop"}, "d1": {"tier": 0}}},
    }
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"LISTING = {listing!r}\n"
        "print(json.dumps(LISTING if '--list' in sys.argv else {}))\n"
    )
    script.chmod(0o755)
    hosts = assert_agrees([script], empty_dir)
    assert [(h.name, h.var("tier")) for h in hosts] == [("d1", 0), ("w1", 1), ("w2", 1)]


def test_an_inventory_plugin_agrees(tmp_path: Path, empty_dir: Path) -> None:
    config = tmp_path / "fleet.generator.yml"
    config.write_text(
        textwrap.dedent("""\
        plugin: ansible.builtin.generator
        hosts:
          name: "{{ application }}-{{ environment }}-{{ number }}"
          parents:
            - name: "{{ application }}_{{ environment }}"
              parents:
                - name: "{{ application }}"
                  vars: {role: "{{ application }}"}
                - name: "{{ environment }}"
                  vars: {env: "{{ environment }}"}
        layers:
          application: [web, db]
          environment: [prod, dev]
          number: ["01", "02"]
        """)
    )
    hosts = assert_agrees([config], empty_dir)
    assert len(hosts) == 8
    assert hosts[0].name == "db-dev-01"
    assert hosts[0].groups == ("db", "db_dev", "dev")


def test_several_sources_with_a_constructed_plugin_agree(tmp_path: Path, empty_dir: Path) -> None:
    constructed = tmp_path / "groups.constructed.yml"
    constructed.write_text(
        textwrap.dedent("""\
        plugin: ansible.builtin.constructed
        strict: true
        use_vars_plugins: true
        compose:
          patch_group: "'wave' ~ (tier | string)"
        keyed_groups:
          - key: env
            prefix: env
        groups:
          critical: tier == 1
        """)
    )
    sources = [EXAMPLE / "hosts.yml", constructed]
    hosts = assert_agrees(sources, empty_dir)
    web = next(h for h in hosts if h.name == "web-prod-01")
    assert {"critical", "env_prod"} <= set(web.groups)
    assert web.var("patch_group") == "wave1"


def test_keep_selects_variables(example: tuple[Host, ...]) -> None:
    kept = inventory.load(EXAMPLE / "hosts.yml", keep={"tier", "env", "no_such_var"})
    assert [h.name for h in kept] == [h.name for h in example]
    for full, small in zip(example, kept, strict=True):
        assert dict(small.vars) == {k: full.vars[k] for k in ("env", "tier")}
        assert small.groups == full.groups


def test_a_host_list_string_is_a_source() -> None:
    hosts = inventory.load("b.example.net,a.example.net,")
    assert [(h.name, h.groups) for h in hosts] == [("a.example.net", ()), ("b.example.net", ())]


@pytest.mark.parametrize("kind", [str, Path], ids=["str", "Path"])
@pytest.mark.parametrize(
    "text",
    [
        "b.example.net,a.example.net,",
        "web1,",
        "bastion.example.net:2222,",
        " a.example.net , b.example.net",
        "[2001:db8::5]:2200,10.0.0.5,",
    ],
)
def test_host_lists_agree(kind: type[str] | type[Path], text: str, empty_dir: Path) -> None:
    # a Path too: the CLI's --inventory hands '-i a,b,' over as a Path
    hosts = assert_agrees([kind(text)], empty_dir)
    assert all(h.groups == () for h in hosts)


def test_a_host_list_beside_a_file_agrees(empty_dir: Path) -> None:
    hosts = assert_agrees([EXAMPLE / "hosts.yml", "extra1.example.net:2200,"], empty_dir)
    extra = next(h for h in hosts if h.name == "extra1.example.net")
    assert extra.var("ansible_port") == 2200


def test_an_existing_file_with_a_comma_in_its_name_is_a_file(
    tmp_path: Path, empty_dir: Path
) -> None:
    path = tmp_path / "web,db.yml"
    path.write_text("all:\n  hosts:\n    web1:\n")
    hosts = assert_agrees([path], empty_dir)
    assert [h.name for h in hosts] == ["web1"]


def test_a_host_list_of_nothing_has_no_hosts() -> None:
    with pytest.raises(InventoryError, match="has no hosts"):
        inventory.load(Path(","))


def test_a_missing_path_is_an_inventory_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "hosts.yml"
    with pytest.raises(InventoryError) as caught:
        inventory.load(missing)
    assert str(missing) in caught.value.message
    assert caught.value.hint
    assert caught.value.exit_code is ExitCode.BAD_INPUT


def test_broken_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    web1: {tier: [1\n    web2:\n")
    with pytest.raises(InventoryError) as caught:
        inventory.load(path)
    assert str(path) in caught.value.message
    assert "yaml" in caught.value.message
    assert "ansible-inventory" in (caught.value.hint or "")


def test_a_broken_group_vars_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text("web:\n  hosts:\n    web1:\n")
    (tmp_path / "group_vars").mkdir()
    bad = tmp_path / "group_vars" / "web.yml"
    bad.write_text("tier: [1\n")
    with pytest.raises(InventoryError) as caught:
        inventory.load(tmp_path / "hosts.yml")
    assert str(bad) in caught.value.message


def test_a_stray_file_in_an_inventory_directory_is_refused(tmp_path: Path) -> None:
    # Ansible would only warn, and keep the hosts an INI parse of the script made up
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    web1:\n")
    stray = tmp_path / "notes.py"
    stray.write_text('"""notes"""\nimport os\n')
    with pytest.raises(InventoryError) as caught:
        inventory.load(tmp_path)
    assert str(stray) in caught.value.message


@pytest.mark.parametrize(
    ("name", "text"),
    [("hosts.ini", "[web]\n[db:children]\nweb\n"), ("hosts.yml", "all:\n  children:\n    web:\n")],
)
def test_an_inventory_without_hosts_is_an_error(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InventoryError, match="no hosts") as caught:
        inventory.load(path)
    assert str(path) in caught.value.message


def test_ansible_warnings_go_to_the_log_not_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    web1:\n  bogus: {}\n")
    with caplog.at_level(logging.WARNING, logger="patchkit.inventory"):
        hosts = inventory.load(path)
    assert [h.name for h in hosts] == ["web1"]
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert any("bogus" in r.getMessage() for r in caplog.records)


def test_an_inventory_scripts_stderr_goes_to_the_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Ansible prints a script's stderr as an [ERROR] and still uses its output
    script = tmp_path / "fleet.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "print('cache is stale', file=sys.stderr)\n"
        "print(json.dumps({'web': {'hosts': ['w1']}, '_meta': {'hostvars': {}}}))\n"
    )
    script.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="patchkit.inventory"):
        hosts = inventory.load(script)
    assert [(h.name, h.groups) for h in hosts] == [("w1", ("web",))]
    assert capfd.readouterr() == ("", "")
    assert any("cache is stale" in r.getMessage() for r in caplog.records)


# YAML's scalars and structures that differ between loaders if any do: YAML 1.1 booleans and
# octals, dates and timestamps, floats, nulls, anchors, merge keys, block scalars, sets, omaps
SCALAR_ZOO = """\
all:
  vars:
    base: &base {ansible_user: ops, ports: [22, 2222]}
  children:
    zoo:
      hosts:
        z1.example.net:
          <<: *base
          yes_no: [yes, no, on, off, true, False, y, n]
          numbers: [0755, 0x1f, 1_000, -3, +4, 1e3, .5, .inf, -.inf, 0b101, 12:30:00]
          dates: [2026-11-28, 2026-11-28 22:00:00, 2026-11-28T22:00:00Z, 2026-11-28T22:00:00+01:00]
          nothing: [~, null, '']
          text: "caf\\u00e9 \\u2603"
          folded: >
            one
            two
          literal: |
            line 1
            line 2
          omap: !!omap [{one: 1}, {two: 2}]
          version: 1.10
          nested: {a: {b: {c: [1, {d: 2}]}}}
        z2.example.net: {ansible_host: 10.0.0.2, <<: *base, ansible_user: root}
"""


def test_a_plain_yaml_file_is_read_by_the_safe_c_loader_and_agrees_with_ansible(
    tmp_path: Path, empty_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(SCALAR_ZOO)
    assert isinstance(inventory._Loader()._plain_yaml(str(path)), dict)  # the fast path
    fast = assert_agrees([path], empty_dir)
    # and what ansible-core's own parse gives, value for value (sets as sorted lists)
    monkeypatch.setattr(inventory._Loader, "_plain_yaml", lambda self, path: None)
    assert inventory.load(path, cache=None) == fast
    # ansible-inventory --list cannot print bytes, and prints a set in no fixed order
    binary = tmp_path / "binary.yml"
    binary.write_text(
        SCALAR_ZOO.replace(
            "          version:",
            "          bin: !!binary aGk=\n          set: !!set {b, a}\n          version:",
        )
    )
    ansibles = inventory.load(binary, cache=None)
    monkeypatch.undo()
    assert inventory.load(binary, cache=None) == ansibles
    z1 = {h.name: h for h in fast}["z1.example.net"]
    assert z1.var("numbers")[0] == 493 and z1.var("yes_no")[:2] == (True, False)
    assert z1.var("ansible_user") == "ops"
    sets = {h.name: h for h in ansibles}["z1.example.net"]
    assert sets.var("set") == ("a", "b") and sets.var("bin") == "b'hi'"


@pytest.mark.parametrize(
    "text",
    [
        "all:\n  hosts:\n    web1: {secret: " + VAULTED.replace("\n", "\n  ") + "}\n",
        "all:\n  hosts:\n    web1: {command: !unsafe '{{ not a template }}'}\n",
        '{"all": {"hosts": {"web1": {"x": {"__ansible_unsafe": "{{ y }}"}}}}}\n',
        "all:\n  hosts:\n    web1: {tier: [1\n",
        "all:\n  hosts:\n    web1: {motd: 'patched on {{ ansible_date_time.date }}'}\n",
        'plugin: constructed\ncompose: {tier: "level | int"}\n',
        "- web1\n",
    ],
    ids=["vault", "unsafe", "json", "broken", "template", "plugin", "list"],
)
def test_what_the_safe_c_loader_cannot_take_goes_to_ansibles_parse(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    assert inventory._Loader()._plain_yaml(str(path)) is None


def test_duplicate_keys_made_an_error_by_ansible_config_go_to_ansibles_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    web1: {tier: 1, tier: 2}\n")
    assert inventory._Loader()._plain_yaml(str(path)) == {
        "all": {"hosts": {"web1": {"tier": 2}}}
    }  # warn (the default): the last one wins, as in ansible-core
    monkeypatch.setenv("ANSIBLE_DUPLICATE_YAML_DICT_KEY", "error")
    with pytest.raises(InventoryError, match="duplicate"):
        inventory.load(path, cache=None)
