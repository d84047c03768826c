"""The GPU check's stages (benchmarks/gpu_check.py runs each in a process of its own under a
hard time limit): ``stages`` names them; ``recipe`` holds what they share (the recipe's
config as it runs on the device, the corpus); ``measure`` and ``shapes`` what they measure
with; ``report`` what they write."""
