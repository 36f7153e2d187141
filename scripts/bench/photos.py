"""Bench photos at the sizes people send (about 0.3, 2 and 12 megapixels),
as JPEG quality 90 with the bytes per pixel of camera photos (0.3 to 0.5).

Photos upscaled from small samples are smoother than camera photos and
decode faster. These are tiled from the real photos in
tests/fixtures/images/inputs (scikit-image's samples), each tile near its
native scale, with sensor-like noise whose strength is searched per photo
until the file lands near the target bytes per pixel.

  photos.py OUT_DIR SIZE_NAME=WxH[,...] --count N [--seed S]
Writes OUT_DIR/<SIZE_NAME>/NN.jpg and OUT_DIR/manifest.json.
"""

import argparse
import io
import json
import os

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SOURCES = [
    "astronaut.png",
    "coffee.bmp",
    "chelsea_lossless.webp",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "rocket.jpg",
    "motorcycle_progressive.jpg",
    "wide.png",
]
TARGET_BPP = 0.4
QUALITY = 90
TILE = 600


def load_sources():
    folder = os.path.join(ROOT, "tests", "fixtures", "images", "inputs")
    return [Image.open(os.path.join(folder, name)).convert("RGB") for name in SOURCES]


def mosaic(sources, width, height, rng):
    cols = max(1, round(width / TILE))
    rows = max(1, round(height / TILE))
    canvas = Image.new("RGB", (width, height))
    xs = np.linspace(0, width, cols + 1).astype(int)
    ys = np.linspace(0, height, rows + 1).astype(int)
    for r in range(rows):
        for c in range(cols):
            w, h = xs[c + 1] - xs[c], ys[r + 1] - ys[r]
            source = sources[rng.integers(len(sources))]
            if rng.random() < 0.5:
                source = source.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            # Cover the tile at the smallest scale that fills it, then crop.
            scale = max(w / source.width, h / source.height)
            resized = source.resize(
                (max(w, round(source.width * scale)), max(h, round(source.height * scale))),
                Image.Resampling.BICUBIC,
            )
            left = rng.integers(resized.width - w + 1)
            top = rng.integers(resized.height - h + 1)
            canvas.paste(resized.crop((left, top, left + w, top + h)), (xs[c], ys[r]))
    return np.asarray(canvas, dtype=np.float32)


def encode(pixels, sigma, rng):
    noise = rng.normal(0.0, sigma, pixels.shape[:2] + (1,)).astype(np.float32)
    chroma = rng.normal(0.0, sigma / 3, pixels.shape).astype(np.float32)
    noisy = np.clip(pixels + noise + chroma, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, "JPEG", quality=QUALITY, subsampling="4:2:0")
    return out.getvalue()


def photo(sources, width, height, rng):
    pixels = mosaic(sources, width, height, rng)
    low, high = 0.0, 24.0
    best = None
    for _ in range(7):
        sigma = (low + high) / 2
        data = encode(pixels, sigma, np.random.default_rng(rng.integers(1 << 32)))
        bpp = len(data) / (width * height)
        if best is None or abs(bpp - TARGET_BPP) < abs(best[1] - TARGET_BPP):
            best = (data, bpp, sigma)
        if abs(bpp - TARGET_BPP) < 0.02:
            break
        if bpp < TARGET_BPP:
            low = sigma
        else:
            high = sigma
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("sizes", help="NAME=WxH,...")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sources = load_sources()
    manifest = {"quality": QUALITY, "target_bytes_per_pixel": TARGET_BPP, "sizes": []}
    for spec in args.sizes.split(","):
        name, dims = spec.split("=")
        width, height = (int(v) for v in dims.split("x"))
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        files, total = [], 0
        for i in range(args.count):
            data, bpp, sigma = photo(sources, width, height, rng)
            path = os.path.join(folder, f"{i:02}.jpg")
            with open(path, "wb") as f:
                f.write(data)
            files.append({"file": f"{name}/{i:02}.jpg", "bytes": len(data), "noise_sigma": round(sigma, 2)})
            total += len(data)
        entry = {
            "name": name,
            "width": width,
            "height": height,
            "megapixels": round(width * height / 1e6, 2),
            "bytes_per_pixel": round(total / (args.count * width * height), 3),
            "files": files,
        }
        manifest["sizes"].append(entry)
        print(f"photos: {name} {width}x{height}: {entry['bytes_per_pixel']} bytes/pixel", flush=True)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
