"""Probe (not part of lsr): the default splade's expansion (terms the text does not hold) scaled by
LAMBDA, documents and queries alike, then scripts/word_tf_grid.py's grid on the same arguments.

    python reports/splade-words/expansion/lambda_grid.py 0.5 FOLDER --datasets ... --avgdl-corpus ... \
        --k1 0.5,0.75,1 --b 0.4,0.6 --powers 0.75,1 --json OUT.json

FOLDER: the default splade with lsr_terms.json without its tf (reports/splade-words/alpha/run.sh, alpha 0.5).
"""

import importlib
import sys
from pathlib import Path

from lsr.encoders.words import WordTerms


def main() -> int:
    lam = float(sys.argv[1])
    orig = WordTerms.expansion

    def scaled(tokens, weights, token_terms):
        return {t: lam * w for t, w in orig(tokens, weights, token_terms).items()}

    WordTerms.expansion = staticmethod(scaled)
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
    return importlib.import_module("word_tf_grid").main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
