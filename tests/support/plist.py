"""What the package installs, computed from setup.cfg and the source tree, and the
OpenBSD packing list that names it.

Strategy.  `installed()` lists the paths, relative to PREFIX, that building a wheel of
this tree and installing it with pypa/installer (what OpenBSD's MODPY_PYBUILD and
FreeBSD's USE_PYTHON=pep517 run) produce: the console script, every module (that git
tracks) of the packages setuptools finds (each with its two byte-compiled files, optimization levels
0 and 1, as installer writes them), the optional C extension of each .c file in them
(setup.py builds it; a ports build has a compiler), the dist-info files and setup.cfg's
data_files.
That list was checked once against a real `pip wheel` + `python -m installer` run of
this tree.  `openbsd_plist()` writes those paths in the ports tree's own variables
(${MODPY_VERSION}, ${MODPY_PYCACHE}, ...), the man pages where OpenBSD keeps them
(${PREFIX}/man), and the lines the port adds (user, group, rc script).

    python3 -m tests.support.plist > packaging/openbsd/pkg/PLIST

rewrites the packing list after a module is added or removed (OpenBSD's own
`make update-plist` gives the same on an OpenBSD box).
"""

from __future__ import annotations

import configparser
import fnmatch
import functools
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "3.11"  # the site-packages the paths name; the PLIST spells it ${MODPY_VERSION}
TAG = "cpython-311"
DIST_INFO = ("METADATA", "RECORD", "WHEEL", "entry_points.txt", "top_level.txt")
PLIST_HEAD = ("@newgroup _pflowbsd:{id}",
              "@newuser _pflowbsd:{id}:_pflowbsd:daemon:pflowbsd user:/var/empty:/sbin/nologin")
PLIST_TAIL = ("@rcscript ${RCDIR}/pflowbsd",)


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


@functools.cache
def source_files() -> list[Path]:
    """The tree's files: those git tracks in a checkout (what a clone, an sdist and so a
    package hold; a module still being written is not part of it yet), else all.  Tracked
    means in the index or in HEAD: a file committed through a private index (several
    people committing in one work tree) is the clone's as much as an added one."""
    try:
        listed = set()
        for cmd in (["ls-files", "-z"], ["ls-tree", "-r", "-z", "--name-only", "HEAD"]):
            listed |= set(subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True,
                                         check=True).stdout.decode().split("\0"))
    except (OSError, subprocess.CalledProcessError):
        return sorted(p for p in ROOT.rglob("*") if p.is_file())
    return sorted(ROOT / name for name in listed if name and (ROOT / name).is_file())


def find_packages(include: list[str]) -> list[str]:
    """setuptools.find_packages, for this tree (setuptools is not in every venv): the
    folders with an __init__.py whose parents are packages too, matching `include`."""
    files = set(source_files())
    found = []
    for init in sorted(f for f in files if f.name == "__init__.py"):
        parts = init.parent.relative_to(ROOT).parts
        if all(ROOT.joinpath(*parts[:n], "__init__.py") in files for n in range(1, len(parts))):
            name = ".".join(parts)
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in include):
                found.append(name)
    return found


def files_of(folder: str, suffix: str) -> list[Path]:
    """The files of one package folder (relative to ROOT) that end in suffix."""
    return [f for f in source_files() if f.parent == ROOT / folder and f.suffix == suffix]


def modules(folder: str) -> list[Path]:
    """The .py files of one package folder (relative to ROOT)."""
    return files_of(folder, ".py")


def version() -> str:
    text = (ROOT / "pflowbsd" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M)[1]


def installed() -> list[str]:
    """Every file and directory the wheel installs under PREFIX (directories end in /)."""
    cfg = setup_cfg()
    site = f"lib/python{PYTHON}/site-packages"
    paths = []
    for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines():
        paths.append("bin/" + line.split("=")[0].strip())
    include = cfg["options.packages.find"]["include"].split()
    for package in find_packages(include):
        folder = package.replace(".", "/")
        paths += [f"{site}/{folder}/", f"{site}/{folder}/__pycache__/"]
        for module in modules(folder):
            paths.append(f"{site}/{folder}/{module.name}")
            for suffix in ("pyc", "opt-1.pyc"):
                paths.append(f"{site}/{folder}/__pycache__/{module.stem}.{TAG}.{suffix}")
        for source in files_of(folder, ".c"):
            paths.append(f"{site}/{folder}/{source.stem}.{TAG}.so")
    dist = f"{site}/{cfg['metadata']['name']}-{version()}.dist-info"
    paths += [f"{dist}/"] + [f"{dist}/{name}" for name in DIST_INFO]
    for target, sources in cfg["options.data_files"].items():
        paths += [f"{target}/{Path(s.strip()).name}" for s in sources.split(",") if s.strip()]
    return sorted(paths)


def openbsd_name(path: str) -> str:
    """One installed path in the ports tree's spelling."""
    path = path.replace(f"lib/python{PYTHON}/", "lib/python${MODPY_VERSION}/")
    path = re.sub(r"/pflowbsd-[^/]+\.dist-info/", "/pflowbsd-${MODPY_DISTV}.dist-info/", path)
    path = re.sub(rf"__pycache__/(\w+)\.{TAG}\.opt-1\.pyc$",
                  r"${MODPY_PYCACHE}\1.${MODPY_PYC_MAGIC_TAG}${MODPY_PYOEXTENSION}", path)
    path = re.sub(rf"__pycache__/(\w+)\.{TAG}\.pyc$", r"${MODPY_PYCACHE}\1.${MODPY_PYC_MAGIC_TAG}pyc",
                  path)
    path = re.sub(rf"\.{TAG}\.so$", r".${MODPY_PYC_MAGIC_TAG}so", path)  # an extension module
    path = path.replace("/__pycache__/", "/${MODPY_PYCACHE}/")
    if path.startswith("share/man/"):  # the port's post-install moves them to ${PREFIX}/man
        return "@man " + path[len("share/"):]
    return path


def openbsd_plist(user_id: int) -> list[str]:
    files = sorted(openbsd_name(p) for p in installed())
    body = [f for f in files if not f.startswith("@")] + [f for f in files if f.startswith("@")]
    return [h.format(id=user_id) for h in PLIST_HEAD] + body + list(PLIST_TAIL)


def openbsd_user_id() -> int:
    """The id of the port's line for the ports tree's user.list (packaging/openbsd)."""
    line = (ROOT / "packaging" / "openbsd" / "user.list").read_text().strip().splitlines()[-1]
    return int(line.split()[0])


if __name__ == "__main__":
    sys.stdout.write("\n".join(openbsd_plist(openbsd_user_id())) + "\n")
