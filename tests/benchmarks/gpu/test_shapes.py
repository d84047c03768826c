"""The 7B stages' shapes are the published ones."""

from benchmarks.gpu import shapes


def test_7b_shapes_are_the_published_ones():
    llama, mistral = shapes.SHAPES["llama2_7b"], shapes.SHAPES["mistral_7b"]
    assert (
        llama["hidden_size"],
        llama["num_hidden_layers"],
        llama["num_attention_heads"],
        llama["intermediate_size"],
    ) == (4096, 32, 32, 11008)
    assert llama["num_key_value_heads"] == 32 and llama["vocab_size"] == 32000
    assert (mistral["intermediate_size"], mistral["num_key_value_heads"], mistral["sliding_window"]) == (14336, 8, 4096)
    for name, tiny in shapes.TINY_SHAPES.items():
        assert tiny["family"] == shapes.SHAPES[name]["family"] and tiny["hidden_size"] < 256
