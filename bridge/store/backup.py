"""``python -m bridge backup | restore``: a consistent copy of everything the bridge keeps, and putting it back.

What a bridge is made of, besides its code (docs/deployment.md, "Backups and restore"):

    role          where (config key)               copied how
    store         store.path                       SQLite's online backup API (a snapshot, while the bridge writes)
    crypto        store.crypto_dir/*.db            the same, one per device (the puppets' and the bot's, nio's SQLite)
    signing_key   records.signing_key_path         bytes (written once, never changed)
    registration  registration.yaml beside it      bytes
    config        the config file                  bytes (holds crypto.pickle_key, which the crypto stores need)

``cp`` of a live SQLite file can copy a page half-written, or the database without the part of its
write-ahead log not yet checkpointed; the backup API copies one committed state (one read transaction
over the whole file: WAL readers never stop the bridge's writer). The copy is checked
(``PRAGMA integrity_check``) and turned into a single self-contained file (journal mode DELETE).

A backup folder is written under a temporary name beside the destination and renamed into place once
complete, with ``manifest.json`` last inside it: a folder with a manifest is a whole backup. The manifest
lists every file with its size and SHA-256, the store's schema version, the Precinct version, the time,
and a SHA-256 of the pickle key (not the key), so that a restore can refuse a config whose key could not
open the crypto stores.

Restore is a command and not a copy procedure because an operator restoring under pressure should not have
to know which file goes where, and because three things must be checked before anything is written: every
hash, the schema version (a backup written by a newer Precinct would be refused at start anyway), and that
nothing is overwritten (a non-empty data folder is refused, not merged). It then retires the puppets that
were waiting in the warm pool at backup time: any of them may have been given to a chat after the backup,
a chat the restored store no longer knows, and handing it out again would put a new citizen in that
chat's room, in front of its officer. The bridge makes new ones.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from .. import config as cfg
from ..private_files import FILE_MODE, private_dir
from .db import MIGRATIONS

FORMAT = "precinct-backup/1"
MANIFEST = "manifest.json"
RETIRED = "retired-by-restore"          # chat_id given to pool puppets a restore takes out of the pool
CHUNK = 1 << 20


class Refused(Exception):
    """A backup or restore that must not go ahead; the message names what is wrong and what to do."""


@dataclass(frozen=True)
class Part:
    role: str          # store | crypto | signing_key | registration | config
    name: str          # its path inside the backup folder
    source: Path       # where it lives on this machine
    sqlite: bool       # copied with the online backup API

    def entry(self, folder: Path) -> dict[str, Any]:
        path = folder / self.name
        return {"path": self.name, "role": self.role, "bytes": path.stat().st_size, "sha256": sha256(path)}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def pickle_key_check(key: str) -> str:
    """What the manifest keeps of the pickle key: enough to tell a different key, nothing to recover it."""
    return hashlib.sha256(b"precinct pickle key check\0" + key.encode()).hexdigest()


def registration_path(config_path: Path, given: Path | None) -> Path | None:
    """The registration: as given, else beside the config, else in the working folder (as ``run`` looks)."""
    if given is not None:
        return given
    for candidate in (config_path.resolve().parent / "registration.yaml", Path("registration.yaml").resolve()):
        if candidate.is_file():
            return candidate
    return None


def parts(config_path: Path, config: cfg.Config, registration: Path | None) -> list[Part]:
    """Everything a backup copies, each named by where it goes in the backup folder."""
    store = config.path("store.path")
    if not store.is_file():
        raise Refused(f"the store {store} (store.path) does not exist: is {config_path} this bridge's config?")
    signing_key = config.path("records.signing_key_path")
    if not signing_key.is_file():
        raise Refused(f"the records signing key {signing_key} (records.signing_key_path) does not exist; "
                      "the bridge creates it at its first start")
    if registration is None or not registration.is_file():
        raise Refused(f"no registration.yaml beside {config_path} or in the working folder"
                      + (f" ({registration} does not exist)" if registration else "")
                      + "; give its path with --registration")
    found = [Part("config", "config.yaml", config_path, False),
             Part("registration", "registration.yaml", registration, False),
             Part("signing_key", "records-signing.key", signing_key, False),
             Part("store", "store/" + store.name, store, True)]
    crypto = config.path("store.crypto_dir")
    if crypto.is_dir():
        for path in sorted(crypto.iterdir()):
            if path.is_file() and not path.name.endswith(("-journal", "-wal", "-shm")):
                found.append(Part("crypto", "crypto/" + path.name, path, path.suffix == ".db"))
    return found


def copy_sqlite(source: Path, target: Path) -> None:
    """One committed state of ``source`` (which may be in use) as a self-contained file at ``target``."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)                           # pages=-1: the whole file in one step, one snapshot
            dst.execute("PRAGMA journal_mode=DELETE")   # no -wal beside the copy: one file holds it all
            problems = [r[0] for r in dst.execute("PRAGMA integrity_check").fetchall()]
            if problems != ["ok"]:
                raise Refused(f"the copy of {source} fails SQLite's integrity check: {'; '.join(problems[:3])}")
        finally:
            dst.close()
    finally:
        src.close()
    os.chmod(target, FILE_MODE)


def copy_file(source: Path, target: Path) -> None:
    with open(source, "rb") as fh, open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb") as out:
        shutil.copyfileobj(fh, out, CHUNK)


def schema_version(store_copy: Path) -> int:
    conn = sqlite3.connect(f"file:{store_copy}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def _flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def empty_or_absent(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def backup(config_path: Path, to: Path, registration: Path | None = None,
           now: datetime.datetime | None = None) -> dict[str, Any]:
    """Copy everything the bridge keeps into ``to`` (absent or empty); the manifest written."""
    config = cfg.load_file(config_path)
    if not empty_or_absent(to):
        raise Refused(f"{to} exists and is not empty: a backup goes into a new or empty folder, never over "
                      "another one")
    found = parts(config_path, config, registration_path(config_path, registration))
    data = {p.source.resolve() for p in found if p.role in ("store", "crypto")}
    if to.resolve() in data or any(to.resolve().is_relative_to(d) for d in data if d.is_dir()):
        raise Refused(f"{to} is inside the data it backs up")
    parent = to.resolve().parent
    if not parent.exists():
        private_dir(parent)
    work = Path(tempfile.mkdtemp(prefix=f".{to.name}.partial-", dir=parent))
    try:
        for part in found:
            target = work / part.name
            private_dir(target.parent)
            (copy_sqlite if part.sqlite else copy_file)(part.source, target)
        store = next(p for p in found if p.role == "store")
        manifest = {
            "format": FORMAT,
            "precinct_version": __version__,
            "created": (now or datetime.datetime.now(datetime.timezone.utc)).isoformat(timespec="seconds"),
            "schema_version": schema_version(work / store.name),
            "pickle_key_check": pickle_key_check(config.get("crypto.pickle_key")),
            "sources": {p.name: str(p.source) for p in found},
            "files": [p.entry(work) for p in found],
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.chmod(work / MANIFEST, FILE_MODE)
        for path in [*work.rglob("*")]:
            if path.is_file():
                _flush(path)
        if to.exists():
            to.rmdir()                           # empty (checked above)
        os.rename(work, to)
        _flush(parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The backup's manifest, after every file it names was checked against its size and SHA-256."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise Refused(f"{folder} is not a folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Refused(f"{folder} has no {MANIFEST}: not a complete backup (a backup writes it last)")
    except (OSError, ValueError) as e:
        raise Refused(f"{path} cannot be read: {e}")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Refused(f"{path} is not a Precinct backup manifest ({FORMAT})")
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise Refused(f"{path} lists no files")
    roles = [f.get("role") for f in files if isinstance(f, dict)]
    for role in ("store", "config", "registration", "signing_key"):
        if roles.count(role) != 1:
            raise Refused(f"{path} must list exactly one {role} file, it lists {roles.count(role)}")
    for entry in files:
        name = entry.get("path", "")
        if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise Refused(f"{path} names a file outside the backup: {name!r}")
        file = folder / name
        if not file.is_file():
            raise Refused(f"{file} is listed in the manifest but missing")
        if file.stat().st_size != entry.get("bytes"):
            raise Refused(f"{file} has {file.stat().st_size} bytes, the manifest says {entry.get('bytes')}")
        if sha256(file) != entry.get("sha256"):
            raise Refused(f"{file} does not match its SHA-256 in the manifest: the backup was changed or damaged")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > len(MIGRATIONS):
        raise Refused(f"the backup's store is at schema version {version}, and this Precinct "
                      f"({__version__}) knows versions up to {len(MIGRATIONS)}: restore it with the Precinct "
                      f"that wrote it ({manifest.get('precinct_version')}) or a newer one")
    return manifest


def restore(source: Path, config_path: Path, registration: Path | None = None) -> list[Path]:
    """Put a checked backup in place for ``config_path``; the paths written. Nothing is overwritten.

    The config at ``config_path`` is the one the restored bridge will run with: written from the backup when
    it does not exist, else used as it is (its data paths may differ on a new machine) provided its pickle
    key is the backup's."""
    manifest = read_manifest(source)
    entries = {f["role"]: f for f in manifest["files"] if f["role"] != "crypto"}
    crypto = [f for f in manifest["files"] if f["role"] == "crypto"]
    backed_config = source / entries["config"]["path"]
    if config_path.exists():
        config = cfg.load_file(config_path)
    else:       # the backup's config, its relative paths taken from where it will be
        try:
            config = cfg.load(yaml.safe_load(backed_config.read_text(encoding="utf-8")) or {},
                              config_path.resolve().parent)
        except yaml.YAMLError as e:
            raise Refused(f"{backed_config} is not valid YAML: {e}")
    if pickle_key_check(config.get("crypto.pickle_key")) != manifest.get("pickle_key_check"):
        raise Refused(f"{config_path}'s crypto.pickle_key is not the one the backup's crypto stores were written "
                      f"with: use the backup's config ({backed_config}) or its pickle key")
    registration = registration or config_path.resolve().parent / "registration.yaml"
    store = config.path("store.path")
    crypto_dir = config.path("store.crypto_dir")
    signing_key = config.path("records.signing_key_path")
    in_the_way = [str(p) for p in (store, Path(f"{store}-wal"), Path(f"{store}-shm"), signing_key) if p.exists()]
    if not empty_or_absent(crypto_dir):
        in_the_way.append(f"{crypto_dir}/ (not empty)")
    if registration.exists() and registration.read_bytes() != (source / entries["registration"]["path"]).read_bytes():
        in_the_way.append(f"{registration} (another registration)")
    if in_the_way:
        raise Refused("restore never overwrites: these exist already: " + ", ".join(in_the_way)
                      + ". Move them away (or restore into a fresh data folder) and run it again.")
    plan: list[tuple[Path, Path]] = [(source / entries["store"]["path"], store),
                                     (source / entries["signing_key"]["path"], signing_key)]
    plan += [(source / f["path"], crypto_dir / Path(f["path"]).name) for f in crypto]
    if not config_path.exists():
        plan.append((backed_config, config_path))
    if not registration.exists():
        plan.append((source / entries["registration"]["path"], registration))
    written: list[Path] = []
    try:
        for src, dst in plan:
            if not dst.parent.exists():
                private_dir(dst.parent)
            tmp = dst.with_name(f".{dst.name}.restoring")
            tmp.unlink(missing_ok=True)
            copy_file(src, tmp)
            _flush(tmp)
            os.rename(tmp, dst)
            written.append(dst)
        private_dir(crypto_dir)
        retire_pool(store)
    except BaseException:
        for path in written:                     # all or nothing: no half-restored data folder is left
            path.unlink(missing_ok=True)
        raise
    for folder in {dst.parent for _, dst in plan}:
        _flush(folder)
    return written


def retire_pool(store: Path) -> int:
    """Take the warm pool's puppets out of the pool (see the module docstring); how many."""
    conn = sqlite3.connect(store)
    try:
        with conn:
            return conn.execute("UPDATE puppets SET chat_id = ? WHERE chat_id IS NULL", [RETIRED]).rowcount
    finally:
        conn.close()


# ---- command line ---------------------------------------------------------------------------------------

def cmd_backup(args: argparse.Namespace) -> int:
    try:
        manifest = backup(args.config, args.to, args.registration)
    except Refused as e:
        print(f"Backup refused: {e}", file=sys.stderr)
        return 2
    total = sum(f["bytes"] for f in manifest["files"])
    crypto = sum(1 for f in manifest["files"] if f["role"] == "crypto")
    print(f"Backed up to {args.to}: {len(manifest['files'])} files ({total} bytes), the store at schema version "
          f"{manifest['schema_version']} and {crypto} crypto store(s); {MANIFEST} lists their SHA-256. "
          "It holds the bridge's secrets: keep it as you keep them.")
    raw = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
    config = cfg.load_file(args.config)
    in_file = cfg.secrets_in_file(raw)
    from_env = [k.path for k in cfg.SCHEMA if k.secret and config.get(k.path) and k.path not in in_file]
    if from_env:
        print("Not in the config file, so not in this backup (they come from the environment): "
              + ", ".join(from_env) + ". Keep them with it.", file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    try:
        written = restore(args.source, args.config, args.registration)
    except Refused as e:
        print(f"Restore refused: {e}", file=sys.stderr)
        return 2
    print(f"Restored {len(written)} files from {args.source} (every SHA-256 checked). Start the bridge with "
          f"`python -m bridge run -c {args.config}`; what was written after the backup is not in it "
          "(docs/deployment.md).")
    return 0


def add_parsers(sub: Any) -> None:
    b = sub.add_parser("backup", help="copy the store, crypto stores, signing key, registration and config "
                                      "consistently (safe while the bridge runs)")
    b.add_argument("-c", "--config", type=Path, default=Path("config.yaml"))
    b.add_argument("--to", type=Path, required=True, help="a new or empty folder")
    b.add_argument("--registration", type=Path, help="default: registration.yaml beside the config")
    b.set_defaults(func=cmd_backup)
    r = sub.add_parser("restore", help="check a backup's SHA-256s and put it in place (never overwrites)")
    r.add_argument("--from", dest="source", type=Path, required=True, help="the backup folder")
    r.add_argument("-c", "--config", type=Path, default=Path("config.yaml"),
                   help="the config to restore for (written from the backup if it does not exist)")
    r.add_argument("--registration", type=Path, help="default: registration.yaml beside the config")
    r.set_defaults(func=cmd_restore)
