"""Metadata filters: a small JSON filter language compiled to SQL with bound parameters.

A filter is a dict. Each key is a field of the document's ``metadata`` (``"a.b"`` reaches
into nested objects) mapped to a value (equality) or to operators, or a logical operator:

- ``{"year": 2024}``: equal (JSON equality: ``2024`` does not equal ``"2024"``);
- ``{"year": {"$gte": 2020, "$lt": 2025}}``: ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``,
  ``$lte`` (ranges compare numbers with numbers and strings with strings; a value of another
  type never matches); ``$in`` / ``$nin`` with a list; ``$exists`` with a bool;
- ``{"$and": [...]}``, ``{"$or": [...]}``, ``{"$not": {...}}``; several keys in one dict
  must all hold.

``$ne`` and ``$nin`` also match documents without the field, as ``$not`` does.

A value dict either holds operators only or is a JSON object to compare with: one that mixes
operators and fields is refused (``{"$eq": {...}}`` compares with any object). Field names and
values must be text and JSON that PostgreSQL stores (no NUL, no lone surrogate, no NaN); a
filter binds at most 30000 values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from ..catalog import CollectionSpec
from ..errors import InvalidInput
from ..validation import check_tenant, check_text, json_text
from ..validation import short_repr as _short

__all__ = [
    "Condition",
    "compile_filter",
    "condition_errors",
    "count_matching",
    "document_condition",
]

# a SQL boolean expression over the documents table (aliased ``d``) and its parameters
Condition = tuple[sql.Composable, dict[str, Any]]

_COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_OPERATORS = {"$eq", "$ne", "$in", "$nin", "$exists", *_COMPARISONS}
_MAX_DEPTH = 32
# values one filter may bind: a statement takes at most 65535 parameters, and the search's
# own and a where fragment's need some
MAX_PARAMS = 30_000


class _Compiler:
    def __init__(self, column: sql.Composable) -> None:
        self.column = column
        self.params: dict[str, Any] = {}

    def bind(self, value: Any, cast: str) -> sql.Composed:
        if len(self.params) >= MAX_PARAMS:
            raise InvalidInput(f"filter too large: it binds more than {MAX_PARAMS} values")
        name = f"filter_{len(self.params)}"
        self.params[name] = value
        return sql.SQL("{}::" + cast).format(sql.Placeholder(name))

    def json(self, value: Any) -> sql.Composed:
        return self.bind(json_text(value, f"filter value {_short(value)}"), "jsonb")

    def field(self, name: str) -> sql.Composed:
        check_text(name, f"filter field {_short(name)}")
        parts = name.split(".")
        if not name or any(not p for p in parts):
            raise InvalidInput(f"filter field {_short(name)} is empty or has an empty part")
        return sql.SQL("({} #> {})").format(self.column, self.bind(parts, "text[]"))

    def node(self, spec: Any, depth: int = 0) -> sql.Composable:
        if depth > _MAX_DEPTH:
            raise InvalidInput(f"filter nested deeper than {_MAX_DEPTH} levels")
        if not isinstance(spec, dict) or not spec:
            raise InvalidInput(f"a filter is a non-empty dict, got {_short(spec)}")
        terms: list[sql.Composable] = []
        for key, value in spec.items():
            if not isinstance(key, str):
                raise InvalidInput(f"filter keys are str, got {key!r}")
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not value:
                    raise InvalidInput(f"{key} takes a non-empty list of filters")
                joined = sql.SQL(" AND " if key == "$and" else " OR ").join(
                    self.node(v, depth + 1) for v in value
                )
                terms.append(sql.SQL("({})").format(joined))
            elif key == "$not":
                terms.append(
                    sql.SQL("(NOT coalesce({}, false))").format(self.node(value, depth + 1))
                )
            elif key.startswith("$"):
                raise InvalidInput(f"unknown filter operator {key!r} (fields may not start with $)")
            else:
                terms.append(self.condition(key, value))
        return sql.SQL("({})").format(sql.SQL(" AND ").join(terms))

    def condition(self, name: str, spec: Any) -> sql.Composable:
        field = self.field(name)
        operators = [str(k).startswith("$") for k in spec] if isinstance(spec, dict) else []
        if any(operators) and not all(operators):
            raise InvalidInput(
                f"the filter of {_short(name)} mixes operators and fields: {_short(list(spec))}; "
                'compare with an object through {"$eq": {...}}'
            )
        if not any(operators):  # a value (an object included) to be equal to
            return sql.SQL("{} = {}").format(field, self.json(spec))
        terms: list[sql.Composable] = []
        for op, value in spec.items():
            if op not in _OPERATORS:
                raise InvalidInput(f"unknown operator {op!r} on field {_short(name)}")
            if op == "$eq":
                terms.append(sql.SQL("{} = {}").format(field, self.json(value)))
            elif op == "$ne":
                terms.append(sql.SQL("{} IS DISTINCT FROM {}").format(field, self.json(value)))
            elif op in ("$in", "$nin"):
                if not isinstance(value, list):
                    raise InvalidInput(f"{op} on {_short(name)} takes a list, got {_short(value)}")
                # one parameter for the whole list, however long
                values = self.bind(
                    [json_text(v, f"{op} value {_short(v)}") for v in value], "jsonb[]"
                )
                test = sql.SQL("coalesce({} = ANY({}), false)").format(field, values)
                terms.append(test if op == "$in" else sql.SQL("NOT {}").format(test))
            elif op == "$exists":
                if not isinstance(value, bool):
                    raise InvalidInput(
                        f"$exists on {_short(name)} takes true or false, got {_short(value)}"
                    )
                terms.append(
                    sql.SQL("{} IS {}NULL").format(field, sql.SQL("NOT " if value else ""))
                )
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                    raise InvalidInput(
                        f"{op} on {_short(name)} takes a number or a str, got {_short(value)}"
                    )
                bound = self.json(value)
                terms.append(
                    sql.SQL("(jsonb_typeof({f}) = jsonb_typeof({v}) AND {f} {op} {v})").format(
                        f=field, v=bound, op=sql.SQL(_COMPARISONS[op])
                    )
                )
        return sql.SQL("({})").format(sql.SQL(" AND ").join(terms))


def compile_filter(
    spec: dict[str, Any], column: sql.Composable
) -> tuple[sql.Composable, dict[str, Any]]:
    """(SQL boolean expression over the jsonb ``column``, its parameters by name).

    >>> from psycopg import sql
    >>> where, params = compile_filter({"year": {"$gte": 2020}}, sql.Identifier("metadata"))
    >>> sorted(params.values(), key=str)
    ['2020', ['year']]
    """
    compiler = _Compiler(column)
    return compiler.node(spec), compiler.params


def document_condition(
    filter: dict[str, Any] | None,
    where: str | None,
    where_params: dict[str, Any] | None,
    tenant: str | None = None,
) -> Condition | None:
    """The condition documents must meet: the ``filter`` on ``d.metadata``, the raw SQL
    ``where`` fragment (with its named ``%(name)s`` parameters) and the ``tenant``, all
    that are given.

    The fragment is SQL written by the programmer, never by an end user: only its
    parameters are bound.
    """
    terms: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if filter is not None:
        condition, params = compile_filter(filter, sql.SQL("d.metadata"))
        terms.append(condition)
    if where is not None:
        if not isinstance(where, str) or not where.strip() or "\x00" in where:
            raise InvalidInput(f"where must be a non-empty SQL condition, got {where!r}")
        extra = {} if where_params is None else where_params
        if not isinstance(extra, dict) or not all(isinstance(n, str) for n in extra):
            raise InvalidInput("where_params must be a dict of named parameters")
        taken = [n for n in extra if n.startswith("filter_") or n in _RESERVED]
        if taken:
            raise InvalidInput(f"where_params may not use the names {taken}: they are ours")
        for name, value in extra.items():
            if isinstance(value, str):
                check_text(value, f"where_params[{_short(name)}]")
        # never format()ted: braces stay. The bound guard makes every statement carrying the
        # fragment go out with parameters, which the server runs as one statement only: a
        # fragment that closes it and starts another ("true); COMMIT; ...") is refused
        terms.append(sql.SQL("(" + where + ") AND %(filter_one_statement)s"))
        params = {**params, **extra, "filter_one_statement": True}
    elif where_params is not None:
        raise InvalidInput("where_params without where")
    if tenant is not None:  # what a role granted that tenant sees: its and shared documents
        terms.append(
            sql.SQL("(d.tenant = {} OR d.tenant IS NULL)").format(sql.Placeholder("tenant"))
        )
        params = {**params, "tenant": check_tenant(tenant)}
    if not terms:
        return None
    return sql.SQL(" AND ").join(terms), params


# the parameter names of our own statements, which a where fragment's may not shadow
_RESERVED = frozenset(
    {
        "q", "k", "probes", "weights", "per_token", "depth", "ids", "tenant",
        "late_ids", "late_scores", "query_text", "fusion", "weight", "rrf_k",
    }
)  # fmt: skip


@contextmanager
def condition_errors(where: str | None) -> Iterator[None]:
    """Report a ``where`` fragment the server refuses (bad SQL, a missing parameter, a bad
    cast), and our SQL functions' refusals, as InvalidInput; privilege errors pass through,
    and nothing else is caught without a fragment (the filter language compiles to SQL that
    the server accepts)."""
    try:
        yield
    except (psycopg.ProgrammingError, psycopg.DataError) as exc:
        message = exc.diag.message_primary or str(exc)
        if message.startswith("lateinteract: "):  # our SQL functions' refusals
            raise InvalidInput(message.removeprefix("lateinteract: ")) from exc
        if where is None or isinstance(exc, psycopg.errors.InsufficientPrivilege):
            raise
        raise InvalidInput(f"the search's where condition failed: {message}") from exc


def count_matching(conn: Any, spec: CollectionSpec, condition: Condition) -> tuple[int, int]:
    """(documents, token rows) of the collection that pass ``condition``."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(d.n_tokens), 0) FROM {} AS d "
            "WHERE d.collection_id = {} AND {}"
        ).format(spec.documents, sql.Literal(spec.id), condition[0]),
        condition[1],
    ).fetchone()
    return int(row[0]), int(row[1])
