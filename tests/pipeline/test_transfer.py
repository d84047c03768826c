"""The decoder's output to the heads and the gradients back (pipeline/transfer.py).

No GPU here: numpy heads are tested for real; cupy heads and a decoder on another device are
simulated with fake ops and torch's "meta" device, which stands in for a device other than
the CPU (tensors move there, their values are not computed)."""

from types import SimpleNamespace

import numpy
import pytest
import torch
from thinc.api import NumpyOps

from spacy_cmllm.pipeline import model as model_module
from spacy_cmllm.pipeline import transfer
from spacy_cmllm.pipeline.transfer import gradients_to_torch, heads_device, to_heads
from tests.tiny import build_pipeline, save_tiny_decoder, train, train_examples


class FakeCupyOps:
    """Ops whose arrays live on CUDA device `device_id` (what CupyOps reports)."""

    def __init__(self, device_id: int):
        self.xp = SimpleNamespace(cuda=SimpleNamespace(Device=lambda: SimpleNamespace(id=device_id)))


def test_heads_device():
    assert heads_device(NumpyOps()) == torch.device("cpu")
    assert heads_device(FakeCupyOps(1)) == torch.device("cuda", 1)


def test_to_heads_numpy_shares_memory_and_detaches():
    tensor = torch.randn(5, 3, requires_grad=True) * 2
    array = to_heads(tensor, NumpyOps())
    assert isinstance(array, numpy.ndarray) and array.dtype == numpy.float32
    numpy.testing.assert_array_equal(array, tensor.detach().numpy())
    # As before: no copy on a CPU, the per-doc slices are views of the decoder's output.
    assert numpy.shares_memory(array, tensor.detach().numpy())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_to_heads_casts_half_precision_to_float32(dtype):
    tensor = torch.randn(4, 6).to(dtype)
    array = to_heads(tensor, NumpyOps())
    assert array.dtype == numpy.float32
    numpy.testing.assert_array_equal(array, tensor.float().numpy())


def test_to_heads_moves_the_whole_batch_once_to_the_heads_device(monkeypatch):
    """Heads on another device than the decoder (cupy heads, a CPU decoder): the batch is
    cast to float32 where it is, moved once, then handed to thinc's torch2xp with the
    heads' ops."""
    ops = FakeCupyOps(0)
    elsewhere = torch.device("meta")
    monkeypatch.setattr(transfer, "heads_device", lambda o: elsewhere if o is ops else torch.device("cpu"))
    handed = []

    def fake_torch2xp(tensor, *, ops=None):
        handed.append((tensor, ops))
        return "cupy array"

    monkeypatch.setattr(transfer, "torch2xp", fake_torch2xp)
    assert to_heads(torch.randn(7, 4, dtype=torch.bfloat16), ops) == "cupy array"
    ((tensor, passed_ops),) = handed
    assert tensor.device == elsewhere and tensor.dtype == torch.float32 and tuple(tensor.shape) == (7, 4)
    assert passed_ops is ops


def test_cupy_heads_without_cuda_in_torch_is_explained(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"E070.*cupy on CUDA device 1.*without --gpu-id"):
        to_heads(torch.zeros(2, 3), FakeCupyOps(1))


def test_gradients_to_torch_is_the_old_numpy_path_bit_for_bit():
    rng = numpy.random.default_rng(0)
    gradients = [rng.standard_normal((n, 8)).astype("float32") for n in (3, 1, 5)]
    like = torch.zeros(9, 8)
    tensor = gradients_to_torch(gradients, like=like)
    old = torch.from_numpy(numpy.ascontiguousarray(numpy.concatenate(gradients)))
    assert tensor.dtype == torch.float32 and tensor.device == like.device
    assert torch.equal(tensor, old)
    single = gradients_to_torch(gradients[:1], like=torch.zeros(3, 8))
    assert torch.equal(single, torch.from_numpy(gradients[0]))


def test_gradients_reach_the_decoders_device_and_dtype():
    """Heads on the CPU (numpy), decoder elsewhere (cupy not installed, CUDA decoder): the
    gradients arrive as one tensor on the decoder's device."""
    gradients = [numpy.ones((2, 4), dtype="float32"), numpy.full((3, 4), 2.0, dtype="float32")]
    tensor = gradients_to_torch(gradients, like=torch.empty(5, 4, device="meta"))
    assert tensor.device == torch.device("meta") and tuple(tensor.shape) == (5, 4)
    assert gradients_to_torch(gradients, like=torch.empty(5, 4, dtype=torch.float64)).dtype == torch.float64


@pytest.fixture(scope="module")
def tiny_nlp(tmp_path_factory, byte_level_tokenizer):
    path = save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=2)
    nlp = build_pipeline(path, unmask="01", mixed_precision=False)
    train(nlp, steps=0)
    return nlp


def test_pipeline_transfers_once_per_batch_and_back(tiny_nlp, monkeypatch):
    """One transfer of the decoder's output per decoder batch (not per doc), one of the
    gradients back per update, with arrays of the heads' kind."""
    from thinc.api import Adam

    outputs, gradients = [], []
    real_to_heads, real_gradients = model_module.to_heads, model_module.gradients_to_torch

    def spy_to_heads(tensor, ops):
        outputs.append((tensor.shape, ops))
        return real_to_heads(tensor, ops)

    def spy_gradients(arrays, like):
        gradients.append(([type(a) for a in arrays], like.device, like.dtype))
        return real_gradients(arrays, like)

    monkeypatch.setattr(model_module, "to_heads", spy_to_heads)
    monkeypatch.setattr(model_module, "gradients_to_torch", spy_gradients)
    docs = list(tiny_nlp.pipe(["John lives in New York .", "Mary visited Paris .", "Hello ."], batch_size=3))
    assert len(outputs) == 1
    assert outputs[0][1] is tiny_nlp.get_pipe("transformer").model.ops
    hidden = [doc._.trf_data.model_output.last_hidden_state for doc in docs]
    assert outputs[0][0][0] == sum(h.shape[1] for h in hidden)
    assert all(isinstance(h, numpy.ndarray) and h.dtype == numpy.float32 for h in hidden)

    outputs.clear()
    tiny_nlp.update(train_examples(tiny_nlp), sgd=Adam(0.001))
    assert len(outputs) == 1
    ((types, device, dtype),) = gradients
    assert types == [numpy.ndarray] * 2 and device == torch.device("cpu") and dtype == torch.float32


def test_to_device_pins_and_does_not_wait_on_a_gpu(monkeypatch):
    """On a CPU a plain tensor; towards a GPU through pinned memory with non_blocking (a copy
    from pageable memory waits for the GPU's queue), here with the move itself recorded."""
    from spacy_cmllm.pipeline.transfer import to_device

    array = numpy.arange(6, dtype="int64").reshape(2, 3)[:, ::2]  # not contiguous
    on_cpu = to_device(array, torch.device("cpu"))
    assert on_cpu.tolist() == [[0, 2], [3, 5]] and on_cpu.dtype == torch.int64
    moves = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: moves.append("pinned") or self.clone())
    monkeypatch.setattr(
        torch.Tensor, "to", lambda self, device, non_blocking=False: moves.append((str(device), non_blocking)) or self
    )
    assert to_device(array, torch.device("cuda", 0)).tolist() == [[0, 2], [3, 5]]
    assert moves == ["pinned", ("cuda:0", True)]
