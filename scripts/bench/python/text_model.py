"""The common alternative to the `clip` backend's text_preprocess kind: a
Triton Python-backend model tokenizing with Hugging Face transformers'
CLIPTokenizerFast (the Rust `tokenizers` library behind transformers'
AutoTokenizer / CLIPProcessor, which most CLIP-on-Triton deployments call),
padded to the context length.

Benchmark only (scripts/bench.sh). clip-bench writes bench.json beside this
file (see image_model.py).
"""

import json
import os
import sys

HERE = os.path.dirname(__file__)
with open(os.path.join(HERE, "bench.json")) as _f:
    SETTINGS = json.load(_f)
sys.path.insert(0, SETTINGS["site_packages"])

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
from transformers import CLIPTokenizerFast  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.context_length = int(SETTINGS["context_length"])
        self.tokenizer = CLIPTokenizerFast(tokenizer_file=os.path.join(HERE, SETTINGS["tokenizer"]))

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                texts = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
                sentences = [bytes(row[0]).decode("utf-8") for row in texts]
                ids = self.tokenizer(
                    sentences,
                    padding="max_length",
                    max_length=self.context_length,
                    truncation=True,
                    return_tensors="np",
                )["input_ids"].astype(np.int64)
                output = pb_utils.Tensor(self.output_name, ids)
                responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
            except Exception as error:  # one bad request fails alone
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
                )
        return responses
