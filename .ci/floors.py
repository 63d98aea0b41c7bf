"""Print pip constraints that pin every dependency in setup.cfg (install_requires and the test
extra) to its floor, the version after `>=`. A requirement without a floor is an error: CI
installs exactly these versions once, so each floor stays a version Helix really works with."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

from packaging.requirements import Requirement


def floors(setup_cfg: Path) -> list[str]:
    config = configparser.ConfigParser()
    config.read(setup_cfg)
    lines = config["options"]["install_requires"].splitlines()
    lines += config["options.extras_require"]["test"].splitlines()
    pins = []
    for line in filter(None, (raw.strip() for raw in lines)):
        requirement = Requirement(line)
        lowest = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lowest) != 1:
            raise SystemExit(f"{setup_cfg}: {line!r} needs exactly one '>=' floor")
        pins.append(f"{requirement.name}=={lowest[0]}")
    return pins


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    sys.stdout.write("".join(f"{pin}\n" for pin in floors(root / "setup.cfg")))
