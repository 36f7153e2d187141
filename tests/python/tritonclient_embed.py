"""Embeds inputs through a CLIP ensemble with NVIDIA's official Python client
(tritonclient.grpc), as a user of the repository without clip-client would.

Prints one JSON array of embeddings, one row per input, in input order.
Model and tensor names come from the caller (the Rust test takes them from
clip-contract), so they are spelled in one place only.
"""

import argparse
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="host:port of Triton's gRPC endpoint")
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True, help="the BYTES input tensor")
    parser.add_argument("--output", required=True, help="the embedding output tensor")
    parser.add_argument("--files", action="store_true", help="items are files to send as bytes")
    parser.add_argument("items", nargs="+")
    args = parser.parse_args()

    if args.files:
        payloads = []
        for path in args.items:
            with open(path, "rb") as f:
                payloads.append(f.read())
    else:
        payloads = [item.encode("utf-8") for item in args.items]

    client = grpcclient.InferenceServerClient(url=args.url)
    batch = np.array(payloads, dtype=np.object_).reshape(len(payloads), 1)
    tensor = grpcclient.InferInput(args.input, list(batch.shape), "BYTES")
    tensor.set_data_from_numpy(batch)
    result = client.infer(
        args.model, [tensor], outputs=[grpcclient.InferRequestedOutput(args.output)]
    )
    embeddings = result.as_numpy(args.output)
    json.dump(embeddings.astype(float).tolist(), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
