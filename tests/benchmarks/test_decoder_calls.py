"""The plain PyTorch + peft reference loop the pipeline's training is timed against."""

import torch

from benchmarks import decoder_calls


def test_plain_peft_loop_trains_the_same_decoder_on_the_recorded_calls(make_decoder):
    """The reference loop replays the pipeline's own decoder calls: it must reach the
    adapters and count only real positions."""
    from spacy_cmllm.decoder.lora import add_lora
    from spacy_cmllm.decoder.unmask import unmask_layers

    decoder = make_decoder("llama", n_layers=4).model
    unmask_layers(decoder, "0011")
    decoder = add_lora(decoder, r=2, alpha=4.0, dropout=0.0, target_modules=["q_proj", "v_proj"])
    ids = torch.randint(1, 100, (2, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    calls = [{"input_ids": ids, "attention_mask": mask, "use_cache": False}]
    assert decoder_calls.real_positions(calls[0]).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    step = decoder_calls.plain_peft_loop(decoder, calls, hidden_size=64, n_labels=3, bf16=False, learn_rate=1e-2)
    before = {n: p.detach().clone() for n, p in decoder.named_parameters() if p.requires_grad}
    losses = [float(step()) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    after = dict(decoder.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n)
