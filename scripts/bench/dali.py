"""In-process peers of the `clip` backend's image preprocessing, for
scripts/bench.sh, on the bench photos (photos.py's manifest.json):

- NVIDIA DALI's CPU pipeline (device_id=None: no GPU needed): decode on the
  CPU, resize the shorter side to `size` with cubic interpolation and
  antialiasing, center crop, normalize with CLIP's mean and std (x255),
  CHW float32. Measured with num_threads=1 and with one thread per core,
  images/s and the process's CPU time (DALI's own threads included).
- The DCT scale PIL's draft("RGB", (2*size, 2*size)) picks for each photo,
  the one line the python_draft Triton model adds: the report shows it
  beside the scale our backend picked.

  dali.py --photos DIR --seconds T --out DIR [--no-dali]
Reads the size, mean and std from DIR/options.json (clip-bench inprocess
writes it); writes DIR/dali.json (the schema of clip-bench inprocess) and
DIR/pil_draft.json.
"""

import argparse
import json
import os
import resource
import time

import numpy as np
from PIL import Image

BATCH = 16


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pil_draft_scale(path, size):
    with Image.open(path) as image:
        image.draft("RGB", (size * 2, size * 2))
        # (scale, 0) once draft applied; empty when it could not (not a JPEG).
        return image.decoderconfig[0] if image.decoderconfig else 1


def dali_pipeline(photos, threads, size, mean, std):
    from nvidia.dali import fn, pipeline_def, types

    # The same photos in every batch, cycled up to BATCH; DALI copies nothing (no_copy).
    batch = [np.frombuffer(photos[i % len(photos)], dtype=np.uint8) for i in range(BATCH)]

    # prefetch_queue_depth=1: each run() computes exactly one batch, so the timed
    # window holds no work begun before it or left after it (CPU only, there is
    # no GPU stage to overlap with).
    @pipeline_def(batch_size=BATCH, num_threads=threads, device_id=None, prefetch_queue_depth=1)
    def pipeline():
        encoded = fn.external_source(source=lambda: batch, batch=True, no_copy=True)
        images = fn.decoders.image(encoded, device="cpu", output_type=types.RGB)
        images = fn.resize(
            images, resize_shorter=size, interp_type=types.INTERP_CUBIC, antialias=True
        )
        return fn.crop_mirror_normalize(
            images,
            crop=(size, size),
            mean=[m * 255 for m in mean],
            std=[s * 255 for s in std],
            output_layout="CHW",
            dtype=types.FLOAT,
        )

    pipe = pipeline()
    pipe.build()
    return pipe


def measure_dali(photos, threads, size, mean, std, seconds):
    pipe = dali_pipeline(photos, threads, size, mean, std)
    (out,) = pipe.run()  # warm-up: buffers grow to the photos' size
    if out.as_tensor().shape() != [BATCH, 3, size, size]:
        raise SystemExit(f"dali: unexpected output shape {out.as_tensor().shape()}")
    cpu0, start = cpu_seconds(), time.perf_counter()
    runs = 0
    while time.perf_counter() - start < seconds or runs < 2:
        pipe.run()
        runs += 1
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    del pipe
    return {
        "threads": threads,
        "images": runs * BATCH,
        "wall_s": wall,
        "cpu_s": cpu,
        "images_per_second": runs * BATCH / wall,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-dali", action="store_true", help="only the PIL draft scales")
    args = parser.parse_args()
    with open(os.path.join(args.out, "options.json")) as f:
        options = json.load(f)
    size, mean, std = options["size"], options["mean"], options["std"]
    cores = len(os.sched_getaffinity(0))
    with open(os.path.join(args.photos, "manifest.json")) as f:
        manifest = json.load(f)

    scales, results = {}, []
    for group in manifest["sizes"]:
        name = group["name"]
        paths = [os.path.join(args.photos, f["file"]) for f in group["files"]]
        scales[name] = [pil_draft_scale(p, size) for p in paths]
        if args.no_dali:
            continue
        photos = []
        for path in paths:
            with open(path, "rb") as f:
                photos.append(f.read())
        for threads in sorted({1, cores}):
            result = measure_dali(photos, threads, size, mean, std, args.seconds)
            result["size"] = name
            print(f"dali: {name} {threads} thread(s): {result['images_per_second']:.1f} images/s")
            results.append(result)
    with open(os.path.join(args.out, "pil_draft.json"), "w") as f:
        json.dump({"draft": [size * 2, size * 2], "scales": scales}, f, indent=1)
    if not args.no_dali:
        from nvidia.dali import __version__ as version

        doc = {"implementation": "dali", "version": version, "cores": cores, "results": results}
        with open(os.path.join(args.out, "dali.json"), "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
