"""constraints.txt from the active environment: every package ``aihf[tests]`` pulls in, pinned.

    python scripts/constraints.py            # rewrite constraints.txt from this venv
    python scripts/constraints.py --check    # exit 1 when constraints.txt names other packages

The README's install commands and ``.ci/run`` install with ``pip install -c constraints.txt``,
so a fresh install gets the versions of the development venv, where the tests pass and the
results are made (issue 13: the quick start's numbers moved with unpinned packages). The pins are the
installed versions of the dependency closure of ``aihf[tests]`` (the control, imdb and minilm
extras included; every requirement whose marker holds here, followed through its extras),
as ``pip freeze`` would print them. aihf itself is left out, and so is torch: the CPU
command pins it (``torch==2.13.0``) and a GPU user keeps their own build.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = "aihf"
EXTRAS = ("tests",)
LEFT_OUT = {"aihf", "torch"}
PATH = Path(__file__).resolve().parents[1] / "constraints.txt"
HEADER = """\
# The package versions of aihf's development venv (Python {python}, CPU), for installs that
# match it. Made by scripts/constraints.py: the installed dependency closure of aihf[tests],
# less aihf and torch (pinned on the command line: torch==2.13.0). Used as
#   pip install -c constraints.txt torch==2.13.0 -e ".[imdb]"    (README, .ci/run)
"""


def closure(root: str = ROOT, extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """``{canonical name: installed version}`` of ``root[extras]`` and everything it requires
    here (requirements whose environment marker holds, with the extras they ask for)."""
    found: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    todo = [(root, set(extras))]
    while todo:
        name, wanted = todo.pop()
        key = canonicalize_name(name)
        if key in found and wanted <= found[key]:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # a requirement not installed here (another platform's, an unused extra's)
        found.setdefault(key, set()).update(wanted)
        versions[key] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            markers = [{"extra": extra} for extra in found[key] or {""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in markers):
                todo.append((req.name, set(req.extras)))
    return versions


def render() -> str:
    """The text of constraints.txt: the header and one ``name==version`` line per package."""
    found = closure()
    if ROOT not in found:
        raise SystemExit(f"{ROOT} is not installed in {sys.executable}: run this from the development venv")
    pins = {name: version for name, version in found.items() if name not in LEFT_OUT}
    python = ".".join(map(str, sys.version_info[:2]))
    return HEADER.format(python=python) + "".join(f"{name}=={pins[name]}\n" for name in sorted(pins))


def pinned(text: str) -> dict[str, str]:
    """``{name: version}`` of a constraints file's ``name==version`` lines."""
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return dict(line.split("==", 1) for line in lines if line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare the package names, write nothing")
    args = parser.parse_args()
    if not args.check:
        PATH.write_text(render(), encoding="utf-8")
        return 0
    want, have = set(pinned(render())), set(pinned(PATH.read_text(encoding="utf-8")))
    for name in sorted(want - have):
        print(f"constraints.txt lacks {name}", file=sys.stderr)
    for name in sorted(have - want):
        print(f"constraints.txt pins {name}, which aihf[tests] does not need", file=sys.stderr)
    return int(want != have)


if __name__ == "__main__":
    sys.exit(main())
