#!/usr/bin/env python3
"""Checks the rows `clip-client encode` wrote, for scripts/faults.sh.

  rows.py jsonl OUT INPUTS REFERENCE   JSON lines: one row per input, in order
  rows.py npy OUT.npy INPUTS REFERENCE .npy: one row per input, NaN where none

INPUTS has one input per line; REFERENCE is the JSON lines of a whole run
of the same inputs against a healthy server. Every row must be its input's
embedding (within 1e-4 of the reference: dynamic batching may group rows
differently) or, from some row on, the job-stopped error; nothing else.
Prints `rows=N embedded=K stopped=S` and exits 1 with the first violation.
"""

import json
import math
import struct
import sys

TOLERANCE = 1e-4
STOPPED = "not encoded: the job stopped"


def fail(message):
    print(f"rows.py: {message}")
    sys.exit(1)


def reference_rows(path):
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "embedding" not in row:
                fail(f"reference row {row['index']} has no embedding: {row}")
            rows[row["index"]] = row["embedding"]
    return rows


def close(got, want):
    return len(got) == len(want) and all(abs(g - w) <= TOLERANCE for g, w in zip(got, want))


def check_jsonl(out, inputs, reference):
    with open(out, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    if len(rows) != len(inputs):
        fail(f"{len(rows)} rows for {len(inputs)} inputs")
    embedded = stopped = 0
    for i, row in enumerate(rows):
        if row.get("index") != i or row.get("input") != inputs[i]:
            fail(f"row {i} is {row.get('index')} {row.get('input')!r}, not input {i} {inputs[i]!r}")
        if "embedding" in row:
            if stopped:
                fail(f"row {i} has an embedding after a job-stopped row")
            if not close(row["embedding"], reference[i]):
                fail(f"row {i}: embedding differs from the reference")
            embedded += 1
        elif str(row.get("error", "")).startswith(STOPPED):
            stopped += 1
        else:
            fail(f"row {i} has neither an embedding nor the job-stopped error: {row}")
    print(f"rows={len(rows)} embedded={embedded} stopped={stopped}")


def check_npy(out, inputs, reference):
    with open(out, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        fail("not a .npy file")
    header_len = struct.unpack("<H", data[8:10])[0]
    header = data[10 : 10 + header_len].decode("latin1")
    shape = header.split("'shape': (")[1].split(")")[0]
    rows_n, cols = (int(x) for x in shape.split(",")[:2])
    body = data[10 + header_len :]
    if rows_n != len(inputs):
        fail(f"shape ({rows_n}, {cols}) for {len(inputs)} inputs")
    if len(body) != rows_n * cols * 4:
        fail(f"{len(body)} data bytes for shape ({rows_n}, {cols})")
    values = struct.unpack(f"<{rows_n * cols}f", body)
    embedded = stopped = 0
    for i in range(rows_n):
        row = values[i * cols : (i + 1) * cols]
        if all(math.isnan(v) for v in row):
            stopped += 1
        elif stopped:
            fail(f"row {i} has an embedding after a row of NaN")
        elif not close(row, reference[i]):
            fail(f"row {i}: embedding differs from the reference")
        else:
            embedded += 1
    print(f"rows={rows_n} embedded={embedded} stopped={stopped}")


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("jsonl", "npy"):
        fail(__doc__)
    kind, out, inputs_path, reference_path = sys.argv[1:]
    with open(inputs_path, encoding="utf-8") as f:
        inputs = [line.rstrip("\n") for line in f if line.strip()]
    reference = reference_rows(reference_path)
    missing = [i for i in range(len(inputs)) if i not in reference]
    if missing:
        fail(f"the reference lacks rows {missing[:5]}")
    (check_jsonl if kind == "jsonl" else check_npy)(out, inputs, reference)


if __name__ == "__main__":
    main()
