"""Our SQL functions: one hand-edited source each, frozen snapshots installed by migrations.

``sql/functions/NAME.sql`` is the one source of function NAME (all its overloads). It names
the constants of :mod:`lateinteract_pg.limits` as ``{MAX_K}``-style placeholders. A revision
that changes functions carries a snapshot of each, ``migrations/functions/NNNN/NAME.sql``:
the source with those constants filled in, ``{schema}`` and ``{search_path}`` left for
install time. Its upgrade calls :func:`apply_functions`, which installs its snapshots; its
downgrade calls :func:`restore_functions`, which puts back, for each of them, the newest
snapshot of an earlier revision, or drops the function when no earlier revision had it.
Either way the overloads of a name that its snapshot does not define are dropped, so that a
changed signature leaves no stale overload behind.

Maintainers snapshot the sources into the newest revision after editing them::

    python -m lateinteract_pg.sql_functions snapshot 0007
    python -m lateinteract_pg.sql_functions check      # which sources differ from it

``migrations/SHA256SUMS`` records every snapshot and step file; those of earlier revisions
are frozen (a test compares them).

>>> render_source("k > {MAX_K} AND x = '{{}}' AND s = {schema}")
"k > 100000 AND x = '{{}}' AND s = {schema}"
>>> signatures("CREATE OR REPLACE FUNCTION {schema}.f(a integer, b text DEFAULT 'x', OUT c int)")
[('f', ('integer', 'text'))]
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .limits import SQL_CONSTANTS
from .migrate import HEAD, MIGRATIONS_DIR, SQL_DIR, STEPS_DIR, install_parts, render_sql

__all__ = [
    "DROPPED",
    "SNAPSHOTS_DIR",
    "SOURCES_DIR",
    "apply_functions",
    "install_function",
    "main",
    "render_source",
    "restore_functions",
    "signatures",
    "snapshot_at",
    "stale",
    "write_snapshots",
]

SOURCES_DIR = SQL_DIR / "functions"
SNAPSHOTS_DIR = MIGRATIONS_DIR / "functions"
SUMS_FILE = MIGRATIONS_DIR / "SHA256SUMS"
SNAPSHOT_COMMAND = "python -m lateinteract_pg.sql_functions snapshot {revision}"
# the snapshot of a function whose source is gone: the revision drops it
DROPPED = "-- This revision drops the function: its source is gone.\n"
# placeholders filled in at install time (lateinteract_pg.migrate.install_parts)
INSTALL_TIME = frozenset({"schema", "schema_literal", "search_path"})

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(\w+)\}")
_CREATE = re.compile(
    r"^CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+\{schema\}\.(\w+)\s*\(", re.IGNORECASE | re.MULTILINE
)
_MODE = re.compile(r"^(IN|OUT|INOUT|VARIADIC)\s+", re.IGNORECASE)
_DEFAULT = re.compile(r"\s+DEFAULT\s.*$|\s*=.*$", re.IGNORECASE | re.DOTALL)


def render_source(text: str) -> str:
    """A source with the constants of :data:`limits.SQL_CONSTANTS` filled in; install-time
    placeholders and ``{{``/``}}`` are left as they are. An unknown placeholder raises."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None or name in INSTALL_TIME:
            return match.group(0)
        if name not in SQL_CONSTANTS:
            raise ValueError(f"unknown placeholder {{{name}}}: not in limits.SQL_CONSTANTS")
        return str(SQL_CONSTANTS[name])

    return _PLACEHOLDER.sub(fill, text)


def signatures(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """(name, input argument types) of each ``CREATE FUNCTION {schema}.NAME(...)`` of a
    source or snapshot. It relies on our convention that every parameter is named."""
    found = []
    for match in _CREATE.finditer(text):
        types = []
        for parameter in _parameters(text, match.end()):
            mode = _MODE.match(parameter)
            if mode and mode.group(1).upper() == "OUT":
                continue
            declaration = _DEFAULT.sub("", parameter[mode.end() if mode else 0 :])
            _, _, argument_type = declaration.partition(" ")  # after the parameter's name
            types.append(" ".join(argument_type.split()))
        found.append((match.group(1), tuple(types)))
    return found


def _parameters(text: str, start: int) -> list[str]:
    """The items of the parameter list that opens before ``start``, without comments: up to
    the parenthesis that closes it, split at the commas outside parentheses and quotes."""
    items, current, depth, i = [], "", 0, start
    while True:
        if i < 0 or i >= len(text):
            raise ValueError(f"no closing parenthesis: {text[start : start + 80]!r}")
        char = text[i]
        if text.startswith("--", i):  # a comment, to the end of its line
            i = text.find("\n", i)
            continue
        if char in "'\"":  # a string or a quoted name, whole
            close = text.index(char, i + 1)
            current += text[i : close + 1]
            i = close + 1
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0 or (char == "," and depth == 0):
            items.append(current.strip())
            current = ""
            if depth < 0:
                return [item for item in items if item]
        else:
            current += char
        i += 1


def source_names() -> list[str]:
    """The functions that have a source, by name."""
    return sorted(path.stem for path in SOURCES_DIR.glob("*.sql"))


def revisions() -> list[str]:
    """Every revision that carries snapshots, oldest first."""
    return sorted(path.name for path in SNAPSHOTS_DIR.iterdir() if path.is_dir())


def snapshot_at(revision: str, name: str, before: bool = False) -> str:
    """The snapshot of function ``name`` installed at ``revision`` (with ``before``: at the
    revision below it); "" where no revision up to there had it."""
    for carrier in reversed(revisions()):
        path = SNAPSHOTS_DIR / carrier / f"{name}.sql"
        if (carrier < revision or (carrier == revision and not before)) and path.is_file():
            return path.read_text()
    return ""


def apply_functions(connection: Any, revision: str, schema: str) -> None:
    """Install ``revision``'s snapshots (its upgrade) on an alembic connection."""
    raw = connection.connection.driver_connection
    for path in sorted((SNAPSHOTS_DIR / revision).glob("*.sql")):
        install_function(raw, schema, path.stem, path.read_text())


def restore_functions(connection: Any, revision: str, schema: str) -> None:
    """Undo ``revision``'s snapshots (its downgrade): for each function it carries, the
    newest snapshot of an earlier revision, or none (the function is dropped)."""
    raw = connection.connection.driver_connection
    for path in sorted((SNAPSHOTS_DIR / revision).glob("*.sql")):
        install_function(raw, schema, path.stem, snapshot_at(revision, path.stem, before=True))


def install_function(raw: psycopg.Connection[Any], schema: str, name: str, text: str) -> None:
    """Make the overloads of function ``name`` in ``schema`` exactly those ``text`` creates
    (none for "" or :data:`DROPPED`)."""
    wanted = signatures(text)
    strangers = sorted({found for found, _ in wanted} - {name})
    if strangers:
        raise ValueError(f"the snapshot of {name}() creates {', '.join(strangers)}() too")
    parts = install_parts(raw, schema)
    previous = raw.execute(
        "SELECT current_setting('search_path'), current_setting('check_function_bodies')"
    ).fetchone()
    assert previous is not None
    # the argument types resolve as in our functions; bodies are checked when they run, so
    # that a function may name tables and functions installed after it (as pg_dump does)
    _set_local(raw, parts["search_path"].as_string(raw), "off")
    for overload in _overloads(raw, schema, name):
        # CREATE OR REPLACE keeps a comment that the snapshot may not set
        comment = sql.SQL("COMMENT ON FUNCTION {} IS NULL")
        raw.execute(comment.format(_signature(raw, schema, name, overload)))
    if wanted:
        statements = render_sql(text, **parts)
        try:
            with raw.transaction():  # a savepoint
                raw.execute(statements)
        except psycopg.errors.InvalidFunctionDefinition:
            # CREATE OR REPLACE may not change a result type, parameter names or defaults
            for overload in _existing(raw, schema, wanted):
                _drop(raw, schema, name, overload)
            raw.execute(statements)
    keep = _existing(raw, schema, wanted)
    for overload in _overloads(raw, schema, name):
        if overload not in keep:
            _drop(raw, schema, name, overload)
    _set_local(raw, *previous)


def _overloads(raw: psycopg.Connection[Any], schema: str, name: str) -> list[int]:
    rows = raw.execute(
        "SELECT p.oid FROM pg_catalog.pg_proc AS p "
        "WHERE p.pronamespace = %s::regnamespace AND p.proname = %s ORDER BY p.oid",
        (sql.Identifier(schema).as_string(raw), name),
    ).fetchall()
    return [int(oid) for (oid,) in rows]


def _signature(raw: psycopg.Connection[Any], schema: str, name: str, oid: int) -> sql.Composed:
    """``schema.name(arguments)`` of an overload, its arguments as the server prints them
    from its catalog."""
    row = raw.execute("SELECT pg_catalog.pg_get_function_identity_arguments(%s)", (oid,)).fetchone()
    assert row is not None
    return sql.SQL("{}({})").format(sql.Identifier(schema, name), sql.SQL(row[0]))


def _set_local(raw: psycopg.Connection[Any], search_path: str, check_bodies: str) -> None:
    raw.execute(
        "SELECT set_config('search_path', %s, true), set_config('check_function_bodies', %s, true)",
        (search_path, check_bodies),
    )


def _existing(
    raw: psycopg.Connection[Any], schema: str, wanted: list[tuple[str, tuple[str, ...]]]
) -> set[int]:
    """The oids of those overloads in ``wanted`` that exist."""
    oids = set()
    for name, types in wanted:
        arguments = sql.SQL(", ").join(sql.SQL(t) for t in types)  # type names of our files
        signature = sql.SQL("{}({})").format(sql.Identifier(schema, name), arguments)
        row = raw.execute("SELECT to_regprocedure(%s)::oid", (signature.as_string(raw),)).fetchone()
        if row is not None and row[0] is not None:
            oids.add(int(row[0]))
    return oids


def _drop(raw: psycopg.Connection[Any], schema: str, name: str, oid: int) -> None:
    raw.execute(sql.SQL("DROP FUNCTION {}").format(_signature(raw, schema, name, oid)))


# --- maintenance: snapshots of the head revision --------------------------------------------


def stale(revision: str = HEAD) -> list[str]:
    """The functions whose snapshot at ``revision`` differs from their rendered source (or
    that have a snapshot and no source)."""
    names = sorted(set(source_names()) | _snapshotted_names(revision))
    return [name for name in names if snapshot_at(revision, name) != _rendered(name)]


def write_snapshots(revision: str) -> list[Path]:
    """(Re)write the snapshots of ``revision``, the head revision: one for each function whose
    rendered source differs from its newest earlier snapshot (:data:`DROPPED` for a function
    whose source is gone), and their sha256 in SHA256SUMS. Returns the files written."""
    if revision != HEAD:
        raise ValueError(
            f"only the head revision ({HEAD}) takes new snapshots: those of {revision} are "
            "frozen (set lateinteract_pg.migrate.HEAD after adding a revision)"
        )
    folder = SNAPSHOTS_DIR / revision
    written = []
    for name in sorted(set(source_names()) | _snapshotted_names(revision)):
        path = folder / f"{name}.sql"
        text = _rendered(name)
        if text == snapshot_at(revision, name, before=True):
            path.unlink(missing_ok=True)  # unchanged since an earlier revision
            continue
        folder.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    _write_sums(revision)
    return written


def _rendered(name: str) -> str:
    path = SOURCES_DIR / f"{name}.sql"
    return render_source(path.read_text()) if path.is_file() else DROPPED


def _snapshotted_names(revision: str) -> set[str]:
    return {
        path.stem
        for carrier in revisions()
        if carrier <= revision
        for path in (SNAPSHOTS_DIR / carrier).glob("*.sql")
    }


def _revision_of(relative: str) -> str:
    """The revision a file of SHA256SUMS belongs to: its folder (functions/NNNN/NAME.sql) or
    its prefix (steps/NNNN_NAME.sql)."""
    folder, _, rest = relative.partition("/")
    return rest.split("/")[0] if folder == "functions" else rest[:4]


def frozen_files() -> dict[str, str]:
    """The revision of each snapshot and step file, by its path relative to migrations/."""
    paths = [*SNAPSHOTS_DIR.glob("*/*.sql"), *STEPS_DIR.glob("*.sql")]
    relative = sorted(path.relative_to(MIGRATIONS_DIR).as_posix() for path in paths)
    return {path: _revision_of(path) for path in relative}


def file_sha256(relative: str) -> str:
    return hashlib.sha256((MIGRATIONS_DIR / relative).read_bytes()).hexdigest()


def recorded_sums() -> dict[str, str]:
    """SHA256SUMS: the sha256 of each file, by its path relative to migrations/."""
    if not SUMS_FILE.is_file():
        return {}
    rows = (line.split(maxsplit=1) for line in SUMS_FILE.read_text().splitlines() if line)
    return {path.strip(): digest for digest, path in rows}


def _write_sums(revision: str) -> None:
    """Record the current sha256 of ``revision``'s files; those of earlier revisions keep
    theirs (even a file since deleted: the test then fails)."""
    files = frozen_files()
    sums = {
        path: digest
        for path, digest in recorded_sums().items()
        if files.get(path, _revision_of(path)) != revision
    }
    for path, carrier in files.items():
        if carrier == revision or path not in sums:
            sums[path] = file_sha256(path)
    SUMS_FILE.write_text("".join(f"{sums[path]}  {path}\n" for path in sorted(sums)))


def main(argv: list[str] | None = None) -> int:
    """``snapshot NNNN``: snapshot the sources into the head revision; ``check``: list the
    sources that differ from their head snapshots (exit status 1 when any does)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["snapshot"] and len(args) == 2:
        for path in write_snapshots(args[1]):
            print(f"wrote {path.relative_to(MIGRATIONS_DIR.parent)}")
        return 0
    if args == ["check"]:
        names = stale()
        for name in names:
            print(f"sql/functions/{name}.sql differs from its snapshot at revision {HEAD}")
        if names:
            print(f"run: {SNAPSHOT_COMMAND.format(revision=HEAD)}")
        return 1 if names else 0
    print(f"usage: python -m lateinteract_pg.sql_functions snapshot {HEAD} | check")
    return 2


if __name__ == "__main__":
    sys.exit(main())
