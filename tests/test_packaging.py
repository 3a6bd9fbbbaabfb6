"""Set-up contract: pinned dependencies mirrored in environment.yml, the README's two commands, CI."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pyproject_pins() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = data["project"]["dependencies"] + [r for extra in data["project"]["optional-dependencies"].values()
                                              for r in extra]
    pins = {}
    for req in reqs:
        name, _, version = req.partition("==")
        assert version, f"{req} is not pinned with =="
        pins[name.lower()] = version
    return pins


def environment_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.fullmatch(r"\s+- ([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_environment_yml_mirrors_pyproject():
    assert environment_pins() == pyproject_pins()


def test_constraints_pin_every_direct_dependency_at_the_same_version():
    locked = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        locked[name.lower().replace("_", "-")] = version
    for name, version in pyproject_pins().items():
        assert locked.get(name.replace("_", "-")) == version, name


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- commands -->\s*```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README needs its commands block after <!-- commands -->"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def test_readme_has_exactly_two_commands():
    assert readme_commands() == ["./workbench start", "./workbench test"]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()
    assert (ROOT / "workbench").stat().st_mode & 0o111 and (ROOT / ".ci" / "run").stat().st_mode & 0o111
