"""The comparison for clip-client's benchmark: NVIDIA's Python client
(tritonclient.grpc 2.51.0) sending the same requests clip-client sends:
inputs read from a list file, batches of --batch-size, --concurrency
requests in flight, image files read by the client.

Prints one JSON object: items, seconds, items_per_second.
Model and tensor names come from the caller (clip-contract spells them).
"""

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient


def batches(path, size):
    batch = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if line:
                batch.append(line)
                if len(batch) == size:
                    yield batch
                    batch = []
    if batch:
        yield batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="host:port of Triton's gRPC endpoint")
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--list", required=True, help="one sentence or image path per line")
    parser.add_argument("--files", action="store_true", help="lines are image files to send")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    client = grpcclient.InferenceServerClient(url=args.url)
    wanted = [grpcclient.InferRequestedOutput(args.output)]

    def send(batch):
        if args.files:
            payloads = []
            for path in batch:
                with open(path, "rb") as f:
                    payloads.append(f.read())
        else:
            payloads = [line.encode("utf-8") for line in batch]
        tensor = np.array(payloads, dtype=np.object_).reshape(len(payloads), 1)
        infer_input = grpcclient.InferInput(args.input, list(tensor.shape), "BYTES")
        infer_input.set_data_from_numpy(tensor)
        result = client.infer(args.model, [infer_input], outputs=wanted)
        return result.as_numpy(args.output).shape[0]

    start = time.perf_counter()
    items = 0
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        in_flight = []
        for batch in batches(args.list, args.batch_size):
            in_flight.append(pool.submit(send, batch))
            if len(in_flight) >= args.concurrency * 2:
                items += in_flight.pop(0).result()
        for future in in_flight:
            items += future.result()
    seconds = time.perf_counter() - start
    json.dump({"items": items, "seconds": seconds, "items_per_second": items / seconds}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
