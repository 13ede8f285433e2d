"""The recipe's endpoint handler, kept only as the benchmark's baseline (not shipped).

As in the blog post's `code/inference.py`: a transformers `pipeline` in fp32, `application/x-text`
in, `{"sentiment": label, "score": p}` out, no batching, no thread or numerics tuning.
"""

import json

from transformers import pipeline


def model_fn(model_dir):
    return pipeline("text-classification", model=model_dir, tokenizer=model_dir)


def input_fn(request_body, request_content_type):
    if request_content_type == "application/x-text":
        return request_body.decode("utf-8") if isinstance(request_body, (bytes, bytearray)) else request_body
    raise ValueError(f"unsupported content type {request_content_type}")


def predict_fn(input_data, model):
    return model(input_data, truncation=True)


def output_fn(prediction, accept):
    return json.dumps({"sentiment": prediction[0]["label"], "score": prediction[0]["score"]})
