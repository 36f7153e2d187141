"""One Python client of scripts/soak.sh: NVIDIA's tritonclient (grpc) sending
the soak's request mix until the deadline and checking every response.

The Rust driver (clip-soak, soak/) writes the manifest: every good element
with its expected embedding, every bad element with the refusal it must
get, the mix, the tolerance and the deadline. This script draws requests
from it the same way the Rust clients do and writes what it saw as JSON in
the driver's Tally shape.

  tritonclient_soak.py --manifest FILE --worker N --out FILE
"""

import argparse
import json
import random
import re
import sys
import time

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def fold(text):
    """Digit runs become '#', the bytes an unknown format's message quotes
    become '...'; at most 100 characters (as the driver does)."""
    text = re.sub(r"\(first bytes: [^)]*\)", "(first bytes: ...)", text, count=1)
    return re.sub(r"[0-9]+", "#", text)[:100]


def named(message, tensor):
    """The element index a message names, and what follows it."""
    marker = f"{tensor} element "
    at = message.rfind(marker)
    if at < 0:
        return None, fold(message)
    rest = message[at + len(marker):]
    digits = re.match(r"[0-9]*", rest).group(0)
    tail = rest[len(digits):].lstrip(":").lstrip()
    return (int(digits) if digits else None), fold(tail)


def deviation(actual, expected):
    norm = max(float(np.linalg.norm(expected)), 1e-12)
    if actual.shape != expected.shape:
        return float("inf")
    return float(np.max(np.abs(actual.astype(np.float64) - expected))) / norm


class Soak:
    def __init__(self, manifest, worker):
        self.m = manifest
        self.worker = worker
        self.rng = random.Random(manifest["seed"] * 7919 + 3000 + worker)
        self.goods = []
        for g in manifest["goods"]:
            with open(g["file"], "rb") as f:
                data = f.read()
            self.goods.append(dict(g, bytes=data, expected=np.array(g["expected"], dtype=np.float64)))
        self.bads = []
        for b in manifest["bads"]:
            with open(b["file"], "rb") as f:
                self.bads.append(dict(b, bytes=f.read()))
        self.tally = {
            "requests": 0, "elements": 0, "good_elements": 0, "bad_elements": 0,
            "succeeded": 0, "refused_as_expected": 0, "bad_sent": {}, "refused_naming": {},
            "wrong": 0, "wrong_groups": {}, "max_deviation": 0.0, "latencies": [],
        }

    def now(self):
        return time.time() - self.m["start_epoch"]

    def wrong(self, t, category, example):
        self.tally["wrong"] += 1
        group = self.tally["wrong_groups"].setdefault(
            category, {"count": 0, "first_t": t, "example": example})
        group["count"] += 1

    def random_good(self, modality, heavy_used):
        if modality == "text":
            return self.rng.choice(self.m["text_goods"]), heavy_used
        classes = self.m["image_classes"]
        roll = self.rng.random()
        chosen = classes[-1]
        for c in classes:
            if roll < c["weight"]:
                chosen = c
                break
            roll -= c["weight"]
        if chosen["heavy"]:
            if heavy_used:
                chosen = classes[0]
            heavy_used = True
        return self.rng.choice(chosen["goods"]), heavy_used

    def plan(self):
        mix = self.m["mix"]
        if self.rng.random() < mix["text_share"]:
            modality, sizes, bad = "text", mix["text_sizes"], mix["text_bad"]
        else:
            modality, sizes, bad = "image", mix["image_sizes"], mix["image_bad"]
        kinds = self.m["bad_kinds"][modality]
        elements, heavy_used = [], False
        for _ in range(self.rng.choice(sizes)):
            if kinds and self.rng.random() < bad:
                _, ids = self.rng.choice(kinds)
                elements.append(("bad", self.rng.choice(ids)))
            else:
                good, heavy_used = self.random_good(modality, heavy_used)
                elements.append(("good", good))
        return modality, elements

    def expected_refusal(self, elements):
        """The first element over a size limit, else the first bad one."""
        bads = [(i, self.bads[e]) for i, (what, e) in enumerate(elements) if what == "bad"]
        for i, bad in bads:
            if bad["size_check"]:
                return i, bad
        return bads[0] if bads else None

    def refusal_category(self, elements, tensor, message, expected):
        index, tail = named(message, tensor)
        if index is None or index >= len(elements):
            what = "a refusal naming no element of the request"
        elif elements[index][0] == "good":
            what = f"a good {self.goods[elements[index][1]]['class']} refused"
        elif expected is not None and index == expected[0]:
            what = f"{expected[1]} refused with another reason"
        elif expected is not None:
            what = f"the refusal named a {self.bads[elements[index][1]]['kind']} element, not the {expected[1]} one"
        else:
            what = "refused"
        return f"{what}: {tail}"

    def check_row(self, t, good, row):
        d = deviation(row, self.goods[good]["expected"])
        if d <= self.m["tolerance"]:
            self.tally["max_deviation"] = max(self.tally["max_deviation"], d)
            return True
        g = self.goods[good]
        closest = min(
            ((deviation(row, o["expected"]), o["label"]) for i, o in enumerate(self.goods)
             if i != good and o["modality"] == g["modality"]),
            default=(float("inf"), ""))
        if closest[0] <= self.m["tolerance"]:
            self.wrong(t, "swapped: a row holds another input's embedding",
                       f"{g['label']}: its row is the embedding of {closest[1]} (deviation {closest[0]:.2e}; from its own {d:.2e})")
        else:
            self.wrong(t, f"wrong embedding for a good {g['class']}",
                       f"{g['label']}: deviation {d:.2e}, over the tolerance {self.m['tolerance']:.0e}")
        return False

    def one(self, client, sequence):
        modality, elements = self.plan()
        model = self.m["models"][modality]
        payloads = [self.goods[e]["bytes"] if what == "good" else self.bads[e]["bytes"] for what, e in elements]
        batch = np.empty((len(payloads), 1), dtype=np.object_)
        for i, p in enumerate(payloads):
            batch[i, 0] = p
        tensor = grpcclient.InferInput(model["input"], list(batch.shape), "BYTES")
        tensor.set_data_from_numpy(batch)
        request_id = f"python{self.worker}-{sequence}"
        tally = self.tally
        tally["requests"] += 1
        tally["elements"] += len(elements)
        for what, e in elements:
            if what == "good":
                tally["good_elements"] += 1
            else:
                tally["bad_elements"] += 1
                kind = self.bads[e]["kind"]
                tally["bad_sent"][kind] = tally["bad_sent"].get(kind, 0) + 1
        t = self.now()
        started = time.perf_counter()
        result, error = None, None
        try:
            result = client.infer(
                model["name"], [tensor],
                outputs=[grpcclient.InferRequestedOutput(model["output"])],
                request_id=request_id, client_timeout=120)
        except InferenceServerException as e:
            error = e
        tally["latencies"].append([t, (time.perf_counter() - started) * 1e3, 0 if modality == "text" else 1])

        expected = self.expected_refusal(elements)
        tensor_name = model["input"]
        if error is not None:
            status, message = str(error.status()), error.message() or ""
            if status != "StatusCode.INVALID_ARGUMENT":
                self.wrong(t, f"{status.replace('StatusCode.', '')}: {fold(message)}", f"{request_id}: {status} {message}")
                return
            if expected is None:
                self.wrong(t, self.refusal_category(elements, tensor_name, message, None), f"{request_id}: {message}")
                return
            pos, bad = expected
            if f"{tensor_name} element {pos}{bad['fragment']}" in message:
                tally["refused_as_expected"] += 1
                tally["refused_naming"][bad["kind"]] = tally["refused_naming"].get(bad["kind"], 0) + 1
            else:
                self.wrong(t, self.refusal_category(elements, tensor_name, message, (pos, bad["kind"])),
                           f"{request_id}: expected element {pos} ({bad['kind']}), got: {message}")
            return
        if expected is not None:
            pos, bad = expected
            self.wrong(t, f"a bad element accepted: {bad['kind']}", f"{request_id}: element {pos} ({bad['kind']}) got an embedding")
            return
        response_id = result.get_response().id
        if response_id != request_id:
            self.wrong(t, "response id is not the request's", f"sent {request_id}, got {response_id!r}")
            return
        rows = result.as_numpy(model["output"])
        if rows is None or rows.shape != (len(elements), model["dim"]):
            shape = None if rows is None else rows.shape
            self.wrong(t, "wrong number of rows", f"{request_id}: shape {shape} for {len(elements)} elements")
            return
        ok = True
        for row, (_, good) in zip(rows, elements):
            ok &= self.check_row(t, good, row)
        if ok:
            tally["succeeded"] += 1

    def run(self):
        url = self.m["url"]
        client = grpcclient.InferenceServerClient(url=url)
        sequence = 0
        while time.time() < self.m["deadline_epoch"]:
            try:
                self.one(client, sequence)
            except Exception as e:  # a client-side failure is a wrong result, not a crash
                self.wrong(self.now(), f"python client error: {type(e).__name__}", f"{e}"[:300])
            sequence += 1
        client.close()
        return self.tally


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.manifest) as f:
        manifest = json.load(f)
    tally = Soak(manifest, args.worker).run()
    with open(args.out, "w") as f:
        json.dump(tally, f)
    print(f"python client {args.worker}: {tally['requests']} requests, {tally['wrong']} wrong", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
