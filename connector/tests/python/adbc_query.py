"""Queries a Sluis data plane with the ADBC Flight SQL driver, as a data consumer's notebook would.

Connects with the transfer's token (and optionally a declared purpose), lists the tables the
driver sees, runs the SQL twice -- as a prepared statement through DB-API (what
`cursor.execute` does) and as a plain statement (CommandStatementQuery) -- and builds a pandas
frame. Prints one JSON object with what arrived, or the error the server answered with.
"""
import argparse
import json
import sys

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow


def connect(a):
    with open(a.ca, encoding="ascii") as f:
        ca = f.read()
    opts = adbc_driver_flightsql.DatabaseOptions
    kwargs = {
        opts.TLS_ROOT_CERTS.value: ca,
        opts.TLS_OVERRIDE_HOSTNAME.value: "localhost",
    }
    # tokens are bound to their holder: present its client certificate (mutual TLS)
    if a.cert:
        with open(a.cert, encoding="ascii") as f, open(a.key, encoding="ascii") as k:
            kwargs[opts.MTLS_CERT_CHAIN.value] = f.read()
            kwargs[opts.MTLS_PRIVATE_KEY.value] = k.read()
    if a.token:
        kwargs[opts.AUTHORIZATION_HEADER.value] = "Bearer " + a.token
    if a.purpose:
        kwargs[opts.RPC_CALL_HEADER_PREFIX.value + "sluis-purpose"] = a.purpose
    return flightsql.connect(a.endpoint, db_kwargs=kwargs)


def tables(conn):
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    names = []
    for catalog in objects:
        for schema in catalog["catalog_db_schemas"] or []:
            for table in schema["db_schema_tables"] or []:
                names.append(f'{catalog["catalog_name"]}.{schema["db_schema_name"]}.{table["table_name"]}')
    return names


def plain_statement(cursor, sql):
    stmt = cursor.adbc_statement
    stmt.set_sql_query(sql)
    handle, _ = stmt.execute_query()
    return pyarrow.RecordBatchReader._import_from_c(handle.address).read_all()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True, help="grpc+tls://host:port")
    p.add_argument("--ca", required=True, help="data-space CA certificate (PEM)")
    p.add_argument("--token", default="", help="Biscuit token; empty for none")
    p.add_argument("--purpose", default="", help="declared purpose; empty for none")
    p.add_argument("--sql", required=True)
    p.add_argument("--cert", default="", help="client certificate (PEM): the token's holder")
    p.add_argument("--key", default="", help="private key of --cert (PEM)")
    a = p.parse_args()
    try:
        with connect(a) as conn:
            seen = tables(conn)
            with conn.cursor() as cur:
                cur.execute(a.sql)
                frame = cur.fetch_df()
            with conn.cursor() as cur:
                plain = plain_statement(cur, a.sql)
    except adbc_driver_manager.Error as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
        return 0
    regions = sorted(frame["region"].unique().tolist()) if "region" in frame.columns else []
    print(json.dumps({
        "tables": seen,
        "frame": type(frame).__module__.split(".")[0],
        "columns": list(frame.columns),
        "rows": len(frame),
        "regions": regions,
        "statement_rows": plain.num_rows,
        "statement_columns": plain.column_names,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
