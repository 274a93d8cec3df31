"""Pulls a Sluis dataset over HttpData-PULL with Python's own HTTPS client (urllib).

Prints one JSON object: the status, content type, and what the body held (columns, row count,
distinct regions), or the error body.
"""
import argparse
import csv
import io
import json
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

import pyarrow.ipc


def summarise(content_type: str, body: bytes) -> dict:
    if content_type.startswith("application/vnd.apache.arrow.stream"):
        table = pyarrow.ipc.open_stream(body).read_all()
        rows = table.to_pylist()
        columns = table.column_names
    elif content_type.startswith("text/csv"):
        reader = csv.DictReader(io.StringIO(body.decode()))
        rows = list(reader)
        columns = reader.fieldnames or []
    else:
        rows = json.loads(body)
        columns = sorted({k for r in rows for k in r})
    regions = sorted({r["region"] for r in rows if r.get("region") is not None})
    return {"columns": list(columns), "rows": len(rows), "regions": regions}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="the DataAddress endpoint")
    p.add_argument("--ca", required=True)
    p.add_argument("--token", default="")
    p.add_argument("--accept", default="")
    p.add_argument("--sql", default="")
    p.add_argument("--cert", default="", help="client certificate (PEM): the token's holder")
    p.add_argument("--key", default="", help="private key of --cert (PEM)")
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.ca)
    if a.cert:
        # tokens are bound to their holder: present its client certificate (mutual TLS)
        ctx.load_cert_chain(a.cert, a.key)
    ctx.check_hostname = False  # the test certificate names localhost, the URL 127.0.0.1
    url = a.url + ("?" + urllib.parse.urlencode({"sql": a.sql}) if a.sql else "")
    req = urllib.request.Request(url)
    if a.token:
        req.add_header("Authorization", "Bearer " + a.token)
    if a.accept:
        req.add_header("Accept", a.accept)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as resp:
            content_type = resp.headers.get("Content-Type", "")
            out = summarise(content_type, resp.read())
            out.update(status=resp.status, content_type=content_type)
    except urllib.error.HTTPError as e:
        out = {"status": e.code, "error": json.loads(e.read() or b"{}").get("error", "")}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
