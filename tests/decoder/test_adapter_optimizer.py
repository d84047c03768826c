"""The adapters' own optimizer: schedule, validation, separate rates, global clipping."""

import numpy
import pytest
import torch

from spacy_cmllm.decoder.adapter_optimizer import AdapterOptimizer, AdapterStepper
from spacy_cmllm.pipeline.model import get_backbone
from tests.tiny import build_pipeline, save_tiny_decoder, train_examples


def test_warmup_then_cosine_and_linear_decay():
    cosine = AdapterOptimizer(learn_rate=1e-3, total_steps=100, warmup=0.1, schedule="cosine")
    assert cosine.warmup_steps == 10
    assert cosine.rate(0) == pytest.approx(1e-4)
    assert cosine.rate(9) == pytest.approx(1e-3)
    assert cosine.rate(55) == pytest.approx(5e-4)
    assert cosine.rate(100) == pytest.approx(0.0, abs=1e-12)
    linear = AdapterOptimizer(learn_rate=1e-3, total_steps=100, warmup=10, schedule="linear", min_rate=1e-4)
    assert linear.rate(55) == pytest.approx(1e-4 + 0.9e-3 * 0.5)
    assert linear.rate(500) == pytest.approx(1e-4)
    constant = AdapterOptimizer(learn_rate=1e-3, warmup=0, schedule="constant")
    assert constant.rate(0) == constant.rate(10**6) == 1e-3


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"learn_rate": -1.0, "total_steps": 10}, "learn_rate"),
        ({"schedule": "step", "total_steps": 10}, "schedule"),
        ({"total_steps": 0}, "total_steps"),  # a cosine decay needs the training length
        ({"total_steps": 10, "warmup": 20}, "warmup"),
        ({"total_steps": 10, "beta2": 1.0}, "beta2"),
        ({"total_steps": 10, "warmup": 2.5}, "warmup"),
    ],
)
def test_invalid_settings_name_the_field(settings, field):
    with pytest.raises(ValueError, match=f"E045.*{field}"):
        AdapterOptimizer(**settings)


def test_global_clipping_bounds_the_norm_over_all_adapter_gradients():
    module = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 4), "b": torch.nn.Linear(4, 4)})
    stepper = AdapterStepper(AdapterOptimizer(learn_rate=1e-3, total_steps=10, warmup=0, grad_clip=1.0), module)
    for p in module.parameters():
        p.grad = torch.full_like(p, 3.0)
    seen = []
    original = stepper.optimizer.step
    stepper.optimizer.step = lambda: (seen.append([p.grad.clone() for p in module.parameters()]), original())[1]
    stepper.step()
    grads = seen[0]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert float(total) == pytest.approx(1.0, rel=1e-5)
    # Clipped together: every tensor keeps its share (per-tensor clipping would not).
    assert all(torch.allclose(g, grads[0].flatten()[0].expand_as(g)) for g in grads)
    assert stepper.last_grad_norm == pytest.approx(3.0 * (2 * (16 + 4)) ** 0.5)
    assert all(p.grad is None for p in module.parameters())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, byte_level_tokenizer):
    return save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=4)


def test_adapters_and_heads_get_their_own_learning_rates(model_dir):
    from thinc.api import Adam

    adapter_lr, head_lr = 1e-4, 1e-2
    nlp = build_pipeline(
        model_dir,
        **{
            "@architectures": "spacy-cmllm.CausalMaskLLM.v2",
            "mixed_precision": False,
            "adapter_optimizer": {
                "@misc": "spacy-cmllm.AdapterOptimizer.v1",
                "learn_rate": adapter_lr,
                "total_steps": 10,
                "warmup": 0,
                "weight_decay": 0.0,
            },
        },
    )
    examples = train_examples(nlp)
    nlp.initialize(lambda: examples)
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    lora_b = {n: p.detach().clone() for n, p in backbone.decoder.named_parameters() if "lora_B" in n}
    softmax = nlp.get_pipe("tagger").model.get_ref("softmax")
    head_before = softmax.get_param("W").copy()
    nlp.update(examples, sgd=Adam(head_lr, grad_clip=0.0, L2=0.0))
    # Adam's first step moves each parameter with a gradient by about its learning rate.
    moved = torch.cat(
        [(p.detach() - lora_b[n]).abs().flatten() for n, p in backbone.decoder.named_parameters() if n in lora_b]
    )
    assert float(moved.max()) == pytest.approx(adapter_lr, rel=0.05)
    head_moved = numpy.abs(softmax.get_param("W") - head_before).max()
    assert head_moved == pytest.approx(head_lr, rel=0.05)


def test_a_step_does_not_read_the_norm_back(monkeypatch):
    """The norm stays a tensor until someone asks for it: reading it as a float every step
    would make the host wait for the GPU once per step."""
    reads = []

    class Watched(torch.Tensor):
        def __float__(self):
            reads.append("float")
            return super().__float__()

        def item(self):
            reads.append("item")
            return super().item()

    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: clip(*a, **k).as_subclass(Watched))
    module = torch.nn.Linear(4, 4)
    stepper = AdapterStepper(AdapterOptimizer(learn_rate=1e-3, total_steps=10, warmup=0), module)
    for _ in range(3):
        for p in module.parameters():
            p.grad = torch.full_like(p, 2.0)
        stepper.step()
    assert reads == []
    assert stepper.last_grad_norm == pytest.approx(2.0 * 20**0.5) and reads


def test_adamw_is_fused_only_when_every_adapter_is_on_a_gpu():
    from types import SimpleNamespace

    from spacy_cmllm.decoder.adapter_optimizer import adamw_kernel

    on_gpu, on_cpu = SimpleNamespace(is_cuda=True), SimpleNamespace(is_cuda=False)
    assert adamw_kernel([on_gpu, on_gpu]) == {"fused": True}
    assert adamw_kernel([on_gpu, on_cpu]) == {} and adamw_kernel([]) == {}
    stepper = AdapterStepper(AdapterOptimizer(total_steps=10), torch.nn.Linear(2, 2))
    assert not stepper.optimizer.defaults.get("fused")


def test_adapters_on_a_gpu_without_cupy_or_their_own_optimizer_are_explained(monkeypatch):
    """Without adapter_optimizer, thinc's optimizer steps the adapters, which for tensors on a
    GPU it can only do through cupy: without cupy, E131 says what to do (thinc's own failure
    is "'NoneType' object is not callable")."""
    import thinc.compat

    from spacy_cmllm.errors import CodedError
    from spacy_cmllm.pipeline.model import _check_thinc_can_step

    module = torch.nn.Linear(2, 2)
    module.weight.grad = torch.ones_like(module.weight)
    monkeypatch.setattr(thinc.compat, "cupy_from_dlpack", None)
    _check_thinc_can_step(module)  # on the CPU: thinc steps numpy views, no cupy needed
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    with pytest.raises(CodedError, match=r"E131.*1 adapter tensors.*adapter_optimizer.*cupy"):
        _check_thinc_can_step(module)
    monkeypatch.setattr(thinc.compat, "cupy_from_dlpack", lambda capsule: capsule)
    _check_thinc_can_step(module)
