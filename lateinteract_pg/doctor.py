"""Health report of a deployment: server, pgvector, schema version, indexes and settings."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from . import migrate

__all__ = ["SETTINGS", "diagnose"]

# server settings that matter for HNSW builds and searches
SETTINGS = (
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "max_connections",
    "statement_timeout",
    "hnsw.ef_search",
    "hnsw.iterative_scan",
)

_COLLECTIONS = """
SELECT c.id, c.name, c.dim, c.n_documents, c.n_tokens, c.hnsw_m, c.hnsw_ef_construction,
       c.candidate_index, c.pool_factor, c.rescore_storage, c.text_search_config::text,
       c.index_pool_factor,
       (SELECT count(*) FROM {documents} AS d WHERE d.collection_id = c.id) AS documents_counted,
       to_regclass(format('%%I.%%I', %(schema)s::text, 'tokens_' || c.id)) AS token_table,
       to_regclass(format('%%I.%%I', %(schema)s::text, 'tokens_' || c.id || '_hnsw')) AS index,
       to_regclass(format('%%I.%%I', %(schema)s::text, 'documents_' || c.id || '_dense_hnsw'))
           AS dense_index,
       to_regclass(format('%%I.%%I', %(schema)s::text, 'documents_' || c.id || '_tsv'))
           AS full_text_index,
       (SELECT s.last_analyze IS NOT NULL OR s.last_autoanalyze IS NOT NULL
        FROM pg_stat_all_tables AS s
        WHERE s.schemaname = %(schema)s AND s.relname = 'tokens_' || c.id) AS analyzed
FROM {collections} AS c ORDER BY c.name
"""


def _index_health(conn: psycopg.Connection[Any], index: Any) -> dict[str, Any]:
    row = conn.execute(
        "SELECT i.indisvalid, i.indisready, pg_relation_size(i.indexrelid) "
        "FROM pg_index AS i WHERE i.indexrelid = %s::regclass",
        (str(index),),
    ).fetchone()
    assert row is not None
    return {"name": str(index), "valid": row[0] and row[1], "bytes": int(row[2])}


def diagnose(dsn: str, schema: str = migrate.DEFAULT_SCHEMA) -> dict[str, Any]:
    """Everything ``lateinteract-pg doctor`` prints, as a dict.

    ``problems`` lists what is broken (the command exits 1), ``warnings`` what is slow.
    """
    migrate.check_schema_name(schema)
    problems: list[str] = []
    warnings: list[str] = []
    with migrate.connect_raw(dsn, autocommit=True) as conn:
        # built-ins only on the path: a role that may create objects in a schema of the
        # caller's path (where pgvector lives, say) cannot shadow what the report calls, and
        # the doctor is often run by an administrator
        conn.execute("SET search_path = pg_catalog, pg_temp")
        server = {
            "version": conn.execute("SHOW server_version").fetchone()[0],  # type: ignore[index]
            "user": conn.info.user,
            "database": conn.info.dbname,
        }
        ext = conn.execute(
            "SELECT e.extversion, n.nspname FROM pg_extension AS e "
            "JOIN pg_namespace AS n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
        ).fetchone()
        server["pgvector"] = None if ext is None else ext[0]
        server["pgvector_schema"] = None if ext is None else ext[1]
        if ext is None:
            problems.append("pgvector is not enabled in this database: CREATE EXTENSION vector;")
        else:  # load the library, so that its settings (hnsw.*) can be read
            conn.execute(sql.SQL("SELECT NULL::{}").format(sql.Identifier(str(ext[1]), "halfvec")))
            public_create = conn.execute(
                "SELECT has_schema_privilege('public', %s, 'CREATE')", (ext[1],)
            ).fetchone()
            if public_create and public_create[0]:
                warnings.append(
                    f"every role may create objects in schema {ext[1]!r}, where pgvector "
                    f"lives: REVOKE CREATE ON SCHEMA {ext[1]} FROM PUBLIC (the default since "
                    "PostgreSQL 15), so that no one can shadow what our functions call"
                )
        revision = migrate.current_revision(conn, schema)
        if revision is None:
            problems.append(f"schema {schema!r} is not installed: run lateinteract-pg migrate")
        elif revision != migrate.HEAD:
            problems.append(
                f"schema {schema!r} is at revision {revision}, this package needs "
                f"{migrate.HEAD}: run lateinteract-pg migrate"
            )
        settings = {
            name: conn.execute("SELECT current_setting(%s, true)", (name,)).fetchone()[0]  # type: ignore[index]
            for name in SETTINGS
        }
        collections = [] if revision is None else _collections(conn, schema, problems, warnings)
        shared = conn.execute("SELECT pg_size_bytes(current_setting('shared_buffers'))").fetchone()[
            0
        ]  # type: ignore[index]
        maintenance = conn.execute(
            "SELECT pg_size_bytes(current_setting('maintenance_work_mem'))"
        ).fetchone()[0]  # type: ignore[index]
    index_bytes = [c["index"]["bytes"] for c in collections if c["index"]]
    if sum(index_bytes) > shared:
        warnings.append(
            f"the HNSW indexes ({sum(index_bytes) / 2**20:.0f} MB) exceed shared_buffers "
            f"({shared / 2**20:.0f} MB): probes will read pages from the OS cache or disk"
        )
    if index_bytes and max(index_bytes) > maintenance:
        warnings.append(
            f"maintenance_work_mem ({maintenance / 2**20:.0f} MB) is smaller than the largest "
            "HNSW index: rebuilds will be slow (Store(maintenance_work_mem=...) raises it "
            "for our builds)"
        )
    return {
        "server": server,
        "schema": {"name": schema, "revision": revision, "expected": migrate.HEAD},
        "settings": settings,
        "collections": collections,
        "problems": problems,
        "warnings": warnings,
    }


def _collections(
    conn: psycopg.Connection[Any], schema: str, problems: list[str], warnings: list[str]
) -> list[dict[str, Any]]:
    query = sql.SQL(_COLLECTIONS).format(
        documents=sql.Identifier(schema, "documents"),
        collections=sql.Identifier(schema, "collections"),
    )
    out = []
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, {"schema": schema}).fetchall()
    for row in rows:
        name = row["name"]
        index = None if row["index"] is None else _index_health(conn, row["index"])
        if row["token_table"] is None:
            problems.append(f"collection {name!r}: its token partition is missing")
        if index is None and row["n_tokens"] > 0:
            problems.append(f"collection {name!r}: no HNSW index (searches scan everything)")
        elif index is not None and not index["valid"]:
            problems.append(
                f"collection {name!r}: HNSW index {index['name']} is invalid "
                "(an interrupted CREATE INDEX CONCURRENTLY?): REINDEX it"
            )
        if row["dense_index"] is None:
            problems.append(
                f"collection {name!r}: no dense-tier index (documents_{row['id']}_dense_hnsw); "
                "tier='dense' searches scan every document"
            )
        if row["full_text_index"] is None:
            problems.append(
                f"collection {name!r}: no full-text index (documents_{row['id']}_tsv); "
                "hybrid searches scan every document's text"
            )
        if row["n_tokens"] > 0 and row["analyzed"] is False:
            warnings.append(
                f"collection {name!r}: its token partition was never analyzed, so the planner "
                "may sort instead of using HNSW: ANALYZE it (loads through the Python API do)"
            )
        if row["documents_counted"] != row["n_documents"]:
            problems.append(
                f"collection {name!r}: {row['documents_counted']} documents stored, "
                f"{row['n_documents']} recorded"
            )
        out.append(
            {
                "name": name,
                "dim": row["dim"],
                "documents": row["n_documents"],
                "tokens": row["n_tokens"],
                "hnsw": {"m": row["hnsw_m"], "ef_construction": row["hnsw_ef_construction"]},
                "candidate_index": row["candidate_index"],
                "pool_factor": row["pool_factor"],
                "rescore_storage": row["rescore_storage"],
                "index_pool_factor": row["index_pool_factor"],
                "index": index,
                "dense_index": row["dense_index"] is not None,
                "full_text_index": row["full_text_index"] is not None,
                "text_search_config": row["text_search_config"],
            }
        )
    invalid = conn.execute(
        "SELECT c.relname FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
        "WHERE c.relnamespace = %s::regnamespace AND NOT (i.indisvalid AND i.indisready) "
        "ORDER BY 1",
        (sql.Identifier(schema).as_string(conn),),
    ).fetchall()
    reported = {str(c["index"]["name"]).split(".")[-1] for c in out if c["index"]}
    for (index_name,) in invalid:
        if index_name in reported:  # already said, for its collection
            continue
        problems.append(
            f"index {index_name} is invalid (an interrupted CREATE INDEX or REINDEX "
            "CONCURRENTLY leaves one behind): DROP INDEX it, then lateinteract-pg compact"
        )
    return out
