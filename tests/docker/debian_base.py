"""A Debian base image made here, for machines that reach Debian's packages but no image registry.

`debootstrap` installs the host's Debian suite from the mirror this machine's apt already uses
(read from its sources at run time, so no mirror is named in the repository), with what the
Dockerfile asks of its BASE_IMAGE: `python3` (3.11 in bookworm) and its venv module. The root file
system goes into a tarball in the cache folder, keyed by everything it is made from, and is
imported with `docker import`; a later run reuses the tarball (a minute of debootstrap saved).

The base trusts what this machine trusts: certificate authorities added to the host
(/usr/local/share/ca-certificates, e.g. those of a TLS-inspecting proxy) are added to the image's
store, where Debian's pip and npm find them, as they are by the host's own pip (/etc/pip.conf:
`cert` = the system store). Nothing else of the host's pip settings goes in: /etc/xdg/pip holds
constraints for files on this host only, and the build must not depend on them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.docker.daemon import Docker

PACKAGES = ("python3", "python3-venv", "ca-certificates")
VARIANT = "minbase"
RECIPE = 1  # bump when the way the root file system is made changes: old tarballs are then unused
MAX_AGE_S = 30 * 24 * 3600  # rebuilt monthly, so point releases and security fixes get in
EXTRA_CERTIFICATES = Path("/usr/local/share/ca-certificates")
IMAGE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "mnist-lab" / "docker"


# --- where Debian comes from: this machine's apt sources ----------------------------------------
@dataclass(frozen=True)
class AptSource:
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_deb822(text: str) -> list[AptSource]:
    """The stanzas of a `.sources` file (deb822: `Field: value`, continuation lines indented,
    stanzas separated by blank lines); `Enabled: no` stanzas are left out."""
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        name = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and name is not None:
                fields[name] += " " + line.strip()
                continue
            name, _, value = line.partition(":")
            name = name.strip().lower()
            fields[name] = value.strip()
        if not fields or fields.get("enabled", "yes").lower() == "no":
            continue
        sources.append(AptSource(*(tuple(fields.get(key, "").split())
                                   for key in ("types", "uris", "suites", "components"))))
    return sources


def parse_one_line(text: str) -> list[AptSource]:
    """The lines of a `sources.list`: `deb [options] uri suite component...`."""
    sources = []
    for line in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3:
            kind, uri, suite, *components = line
            sources.append(AptSource((kind,), (uri,), (suite,), tuple(components)))
    return sources


def read_apt_sources(apt: Path = Path("/etc/apt")) -> list[AptSource]:
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]
    sources = []
    for path in files:
        if not path.is_file() or path.suffix not in (".list", ".sources"):
            continue
        text = path.read_text(errors="replace")
        sources += parse_deb822(text) if path.suffix == ".sources" else parse_one_line(text)
    return sources


def debian_mirror(sources: list[AptSource], suite: str) -> str:
    """The first http(s) mirror that serves `suite` with its `main` component."""
    for source in sources:
        if "deb" in source.types and suite in source.suites and "main" in source.components:
            for uri in source.uris:
                if uri.startswith(("http://", "https://")):
                    return uri.rstrip("/")
    raise LookupError(f"no apt source of this machine serves the suite {suite!r} with `main` "
                      "over http(s) (looked in /etc/apt/sources.list and "
                      "/etc/apt/sources.list.d/*.list, *.sources)")


def host_suite(os_release: Path = Path("/etc/os-release")) -> str:
    for line in os_release.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value.strip('"'):
            return value.strip('"')
    raise LookupError(f"{os_release} names no VERSION_CODENAME (not a Debian-like system?)")


# --- the root file system, as a cached tarball ----------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    suite: str
    mirror: str
    certificates: tuple[tuple[str, str], ...]  # (name, SHA-256) of each extra CA certificate

    @classmethod
    def for_this_machine(cls) -> Recipe:
        suite = host_suite()
        certificates = tuple(
            (str(path.relative_to(EXTRA_CERTIFICATES)), hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(EXTRA_CERTIFICATES.rglob("*.crt")) if path.is_file())
        return cls(suite, debian_mirror(read_apt_sources(), suite), certificates)

    @property
    def key(self) -> str:
        made_of = {"suite": self.suite, "mirror": self.mirror, "certificates": self.certificates,
                   "packages": PACKAGES, "variant": VARIANT, "recipe": RECIPE}
        return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def tarball_name(self) -> str:
        return f"debian-{self.suite}-{self.key}.tar"


@dataclass(frozen=True)
class BaseTarball:
    path: Path
    recipe: Recipe
    built: bool  # False: taken from the cache
    seconds: float


def base_tarball(recipe: Recipe, folder: Path, log_path: Path) -> BaseTarball:
    """The cached tarball for `recipe` in `folder`, made first if missing or too old."""
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / recipe.tarball_name
    with _locked(folder / ".lock"):  # two test runs at once build it once
        fresh = path.is_file() and time.time() - path.stat().st_mtime < MAX_AGE_S
        if not fresh:
            _build(recipe, path, log_path)
            for old in folder.glob("debian-*.tar"):
                if old != path:
                    old.unlink()
    return BaseTarball(path, recipe, not fresh, time.monotonic() - started)


def import_image(docker: Docker, tarball: Path, tag: str, labels: dict[str, str]) -> None:
    changes = [argument for env in IMAGE_ENV for argument in ("--change", f"ENV {env}")]
    changes += [argument for key, value in labels.items()
                for argument in ("--change", f"LABEL {key}={value}")]
    docker.run("import", *changes, "--change", 'CMD ["bash"]', str(tarball), tag, timeout=600)


def _build(recipe: Recipe, destination: Path, log_path: Path) -> None:
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".rootfs-") as work:
        root = Path(work).resolve() / "root"  # resolved: as /proc/self/mounts names it
        try:
            _run(["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}",
                  recipe.suite, str(root), recipe.mirror], log_path, timeout=1800)
            if recipe.certificates:
                target = root / EXTRA_CERTIFICATES.relative_to("/")
                for name, _ in recipe.certificates:
                    (target / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(EXTRA_CERTIFICATES / name, target / name)
                _run(["chroot", str(root), "update-ca-certificates"], log_path, timeout=300)
            _run(["chroot", str(root), "apt-get", "clean"], log_path, timeout=300)
            shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
            (root / "var/lib/apt/lists/partial").mkdir(parents=True)
            (root / "etc/resolv.conf").write_text("")  # Docker provides its own
            partial = Path(work) / "root.tar"
            _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], log_path,
                 timeout=600)
            os.replace(partial, destination)
        finally:
            _unmount_below(root)  # a debootstrap that failed half-way may leave /proc mounted


def _run(command: list[str], log_path: Path, timeout: float) -> None:
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"`{' '.join(command)}` exited with {done.returncode}:\n{tail}")


def _unmount_below(root: Path) -> None:
    prefix = f"{root}/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
