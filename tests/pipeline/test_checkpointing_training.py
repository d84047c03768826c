"""Gradient checkpointing changes memory, not training: a pipeline that makes several
decoder calls per step (one per window batch, with different batch sizes and padding)
reaches the same adapter weights with it as without."""

import pytest
import torch

from spacy_cmllm.decoder.lora import adapter_state
from spacy_cmllm.pipeline.model import get_backbone
from tests.tiny import TRAIN_DATA, build_pipeline, save_tiny_decoder

STEPS = 4
# Docs of different lengths, so that windows batched together pad differently.
DATA = TRAIN_DATA + [
    (
        "John lives in New York .".split(),
        ["NNP", "VBZ", "IN", "NNP", "NNP", "."],
        ["U-PER", "O", "O", "B-LOC", "L-LOC", "O"],
    ),
    ("Mary visited Paris .".split(), ["NNP", "VBD", "NNP", "."], ["U-PER", "O", "U-LOC", "O"]),
    ("Google .".split(), ["NNP", "."], ["U-ORG", "O"]),
    ("Paris".split(), ["NNP"], ["U-LOC"]),
    ("Acme Corp works .".split(), ["NNP", "NNP", "VBZ", "."], ["B-ORG", "L-ORG", "O", "O"]),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, byte_level_tokenizer):
    return save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=4)


def trained_adapters(model_dir, checkpointing):
    from spacy.training import Example
    from thinc.api import Adam, fix_random_seed

    # 45 pieces per call put two or three windows in a call: a step makes several calls with
    # different batch sizes and padding.
    nlp = build_pipeline(
        model_dir, unmask="0101", window=16, stride=8, max_batch_pieces=45, gradient_checkpointing=checkpointing
    )
    calls = []

    def record(module, args, kwargs):
        mask = kwargs["attention_mask"]
        if mask is None:  # nothing padded
            mask = torch.ones_like(kwargs["input_ids"])
        if module.training:
            calls.append((tuple(mask.shape), int((mask == 0).sum())))

    fix_random_seed(0)
    examples = [
        Example.from_dict(nlp.make_doc(" ".join(words)), {"words": words, "tags": tags, "entities": ents})
        for words, tags, ents in DATA
    ]
    nlp.initialize(lambda: examples)
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    assert backbone.base_model.gradient_checkpointing == checkpointing
    hook = backbone.base_model.register_forward_pre_hook(record, with_kwargs=True)
    optimizer = Adam(0.003)
    for _ in range(STEPS):
        nlp.update(examples, sgd=optimizer)
    hook.remove()
    return adapter_state(backbone.decoder), calls


def test_checkpointed_training_reaches_the_same_adapters(model_dir):
    plain, calls = trained_adapters(model_dir, checkpointing=False)
    checkpointed, calls_checkpointed = trained_adapters(model_dir, checkpointing=True)
    assert calls == calls_checkpointed
    per_step = len(calls) // STEPS
    assert per_step >= 3, calls
    step = calls[:per_step]
    assert len(set(step)) >= 3 and sum(padded > 0 for _, padded in step) >= 2, step
    assert plain.keys() == checkpointed.keys() and plain
    moved = 0
    for name, weight in plain.items():
        torch.testing.assert_close(checkpointed[name], weight, atol=1e-5, rtol=0, msg=name)
        moved += "lora_B" in name and bool(weight.abs().max() > 0)
    assert moved, "the adapters did not train"
