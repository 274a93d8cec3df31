"""pyarrow's own C++ Flight server on a Parquet file: the baseline of flight_bench.

Usage: python pyarrow_flight_server.py FILE.parquet
Prints the port it listens on (127.0.0.1, no TLS), then serves until killed. Any ticket
streams the whole file, read batch by batch from Parquet like the Sluis data plane does.
"""
import sys

import pyarrow.dataset as ds
import pyarrow.flight as flight


class ParquetServer(flight.FlightServerBase):
    def __init__(self, path: str):
        super().__init__("grpc://127.0.0.1:0")
        self.dataset = ds.dataset(path, format="parquet")

    def do_get(self, context, ticket):
        reader = self.dataset.scanner(batch_size=8192).to_reader()
        return flight.RecordBatchStream(reader)


def main() -> int:
    server = ParquetServer(sys.argv[1])
    print(server.port, flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
