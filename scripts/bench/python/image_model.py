"""The common alternative to the `clip` backend's image_preprocess kind: a
Triton Python-backend model doing CLIP's image preprocessing with PIL and
numpy, as Hugging Face's CLIPImageProcessor(use_fast=False) does it:
decode, convert to RGB, resize the shortest side with bicubic filtering,
center-crop, scale to [0, 1], normalize, CHW.

With "draft" in bench.json (the python_draft variant) it adds the one line
a user would: PIL's draft(), so that libjpeg decodes a large JPEG at a
reduced DCT scale as the `clip` backend does.

Benchmark only (scripts/bench.sh). clip-bench writes bench.json beside this
file with the model's facts and the folder of the packages (the stub embeds
the system Python in isolated mode, so it does not see a venv by itself).
"""

import io
import json
import os
import sys

with open(os.path.join(os.path.dirname(__file__), "bench.json")) as _f:
    SETTINGS = json.load(_f)
sys.path.insert(0, SETTINGS["site_packages"])

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
from PIL import Image  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.size = int(SETTINGS["image_size"])
        self.mean = np.array(SETTINGS["mean"], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.array(SETTINGS["std"], dtype=np.float32).reshape(3, 1, 1)
        self.draft = bool(SETTINGS.get("draft"))

    def preprocess(self, data):
        size = self.size
        image = Image.open(io.BytesIO(data))
        if self.draft:
            # JPEG only: the strongest of 1/2, 1/4, 1/8 that keeps both sides >= 2 * size.
            image.draft("RGB", (size * 2, size * 2))
        image = image.convert("RGB")
        width, height = image.size
        # transformers' get_resize_output_image_size(default_to_square=False)
        if width <= height:
            new_width, new_height = size, int(size * height / width)
        else:
            new_width, new_height = int(size * width / height), size
        image = image.resize((new_width, new_height), Image.Resampling.BICUBIC)
        left = int((new_width - size) / 2)
        top = int((new_height - size) / 2)
        image = image.crop((left, top, left + size, top + size))
        pixels = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
        pixels = pixels.transpose(2, 0, 1)
        return (pixels - self.mean) / self.std

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                images = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
                batch = np.stack([self.preprocess(bytes(row[0])) for row in images])
                output = pb_utils.Tensor(self.output_name, batch.astype(np.float32))
                responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
            except Exception as error:  # one bad request fails alone
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
                )
        return responses
