"""Reads a Sluis dataset with pyarrow's Flight client, as a data consumer would.

Prints one JSON object: the columns, row count and distinct regions received, or the
error the server answered with.
"""
import argparse
import json
import sys

import pyarrow.flight as flight


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True, help="grpc+tls://host:port")
    p.add_argument("--ca", required=True, help="data-space CA certificate (PEM)")
    p.add_argument("--token", default="", help="Biscuit token; empty for none")
    p.add_argument("--sql", required=True)
    p.add_argument("--cert", default="", help="client certificate (PEM): the token's holder")
    p.add_argument("--key", default="", help="private key of --cert (PEM)")
    a = p.parse_args()
    with open(a.ca, "rb") as f:
        ca = f.read()
    # tokens are bound to their holder: present its client certificate (mutual TLS)
    identity = {}
    if a.cert:
        with open(a.cert, "rb") as f, open(a.key, "rb") as k:
            identity = {"cert_chain": f.read(), "private_key": k.read()}
    client = flight.FlightClient(
        a.endpoint, tls_root_certs=ca, override_hostname="localhost", **identity
    )
    headers = [(b"authorization", b"Bearer " + a.token.encode())] if a.token else []
    options = flight.FlightCallOptions(headers=headers, timeout=60)
    try:
        table = client.do_get(flight.Ticket(a.sql.encode()), options).read_all()
    except flight.FlightError as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
        return 0
    regions = sorted(set(table.column("region").to_pylist())) if "region" in table.column_names else []
    print(json.dumps({"columns": table.column_names, "rows": table.num_rows, "regions": regions}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
