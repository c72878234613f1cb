"""Named egress presets: ``@name`` in ``allowed_domains``/``denied_domains`` (docs/design/0869).

A preset is a file ``<name>.txt`` holding one domain per line with the same syntax as
``allowed_domains`` (an optional leading ``*.``, never an IP literal) and ``#`` comments. Two
places hold them: the operator's directory (host config ``sandbox.egress_presets_dir``,
default /etc/symphony/egress/presets) and the presets the package ships (``egress/presets``
in the policy directory). An operator file must be owned by root and writable by nobody
else, because it widens what every agent may reach. An operator preset named like a shipped
one replaces it; the caller is told (``shadowed``) so the launcher can say so in the journal.

Presets do not nest: a line starting with ``@`` is refused, so a preset is exactly the names
its file lists.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from symphonyd.core.errors import ConfigError
from symphonyd.core.policy_paths import shipped_presets_dir

DEFAULT_OPERATOR_DIR = "/etc/symphony/egress/presets"
MAX_PRESET_BYTES = 64 << 10
PRESET_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62})")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}")
_ALL_DIGITS_AND_DOTS = re.compile(r"[0-9.]+")


class EgressPresetError(ConfigError):
    """An unknown preset, an unreadable or unsafe preset file, or a bad line in one."""

    code = "egress_preset_invalid"


def domain_or_none(item: str) -> str | None:
    """The canonical form of an ``allowed_domains`` entry, or None when it is not a name."""
    name = item.strip().lower().rstrip(".")
    if len(name) > 253 or not _DOMAIN.fullmatch(name) or _ALL_DIGITS_AND_DOTS.fullmatch(name):
        return None
    return name


def is_preset(entry: str) -> bool:
    return entry.startswith("@")


def preset_name_or_none(entry: str) -> str | None:
    """``@name`` -> ``name`` when the name is well formed, else None."""
    name = entry.strip()[1:].lower()
    return name if PRESET_NAME.fullmatch(name) else None


@dataclass(frozen=True, slots=True)
class PresetDirs:
    """Where presets come from: the operator's directory first, then the shipped one."""

    operator: Path = Path(DEFAULT_OPERATOR_DIR)
    shipped: Path | None = None
    # Owners an operator preset file may have; root only, except in tests run unprivileged.
    owners: frozenset[int] = field(default_factory=lambda: frozenset({0}))


def preset_dirs(operator_dir: str = DEFAULT_OPERATOR_DIR) -> PresetDirs:
    """The operator's directory (host config) and this installation's shipped presets."""
    return PresetDirs(operator=Path(operator_dir), shipped=shipped_presets_dir())


@dataclass(frozen=True, slots=True)
class Expanded:
    domains: tuple[str, ...]
    # Operator presets that replaced a shipped preset of the same name.
    shadowed: tuple[str, ...] = ()


def expand(entries: Iterable[str], dirs: PresetDirs, where: str) -> Expanded:
    """Replace each ``@name`` in ``entries`` by its preset's names, in order, without
    duplicates; any problem is an :class:`EgressPresetError` naming the preset (and line)."""
    out: dict[str, None] = {}
    shadowed: list[str] = []
    for entry in entries:
        if not is_preset(entry):
            out.setdefault(entry, None)
            continue
        name = preset_name_or_none(entry)
        if name is None:
            raise EgressPresetError(f"{where}: {entry!r} is not a preset name", field=where)
        names, shadows = _load(name, dirs, where)
        if shadows:
            shadowed.append(name)
        for domain in names:
            out.setdefault(domain, None)
    return Expanded(tuple(out), tuple(shadowed))


def check_operator_dir(dirs: PresetDirs) -> tuple[str, ...]:
    """Read every operator preset (a missing directory holds none); raises on the first bad
    one, so the launcher refuses to start on a preset it could not use. Returns the names."""
    try:
        files = sorted(p for p in dirs.operator.iterdir() if p.suffix == ".txt")
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise EgressPresetError(
            f"egress presets directory {dirs.operator}: {exc.strerror}"
        ) from None
    names = []
    for path in files:
        name = path.stem
        if PRESET_NAME.fullmatch(name) is None:
            raise EgressPresetError(f"egress preset file {path}: {name!r} is not a preset name")
        read_preset(path, f"@{name}", owners=dirs.owners)
        names.append(name)
    return tuple(names)


def _load(name: str, dirs: PresetDirs, where: str) -> tuple[tuple[str, ...], bool]:
    shipped = dirs.shipped / f"{name}.txt" if dirs.shipped is not None else None
    operator = dirs.operator / f"{name}.txt"
    if operator.exists() or operator.is_symlink():
        return read_preset(operator, f"@{name}", owners=dirs.owners), bool(
            shipped and shipped.is_file()
        )
    if shipped is not None and shipped.is_file():
        return read_preset(shipped, f"@{name}", owners=None), False
    raise EgressPresetError(
        f"{where}: unknown egress preset @{name} (no {operator}"
        + (f" and no shipped {shipped.name}" if shipped is not None else "")
        + ")",
        field=where,
    )


def read_preset(path: Path, label: str, *, owners: frozenset[int] | None) -> tuple[str, ...]:
    """The names in one preset file. ``owners`` None: a shipped file (the package's own,
    not checked); else the owners allowed, and no group or world write bit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise EgressPresetError(f"egress preset {label} ({path}): {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise EgressPresetError(f"egress preset {label} ({path}): not a regular file")
        if owners is not None and info.st_uid not in owners:
            raise EgressPresetError(
                f"egress preset {label} ({path}): must be owned by root, owner uid is "
                f"{info.st_uid}"
            )
        if owners is not None and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise EgressPresetError(
                f"egress preset {label} ({path}): must not be writable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):o})"
            )
        data = handle.read(MAX_PRESET_BYTES + 1)
    if len(data) > MAX_PRESET_BYTES:
        raise EgressPresetError(f"egress preset {label} ({path}): larger than 64 KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EgressPresetError(f"egress preset {label} ({path}): not UTF-8") from None
    names: dict[str, None] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name = domain_or_none(line)
        if name is None:
            raise EgressPresetError(
                f"egress preset {label} ({path}) line {number}: {line[:80]!r} is not a DNS "
                "name (one name per line, optional leading *., no IP addresses, no presets)"
            )
        names.setdefault(name, None)
    return tuple(names)
