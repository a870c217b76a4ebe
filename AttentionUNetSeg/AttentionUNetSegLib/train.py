"""`python -m AttentionUNetSegLib.train ARGS` (also `torchrun ... -m AttentionUNetSegLib.train ARGS`) is
`attention-unet train ARGS`."""
import sys

from .cli.train import main

if __name__ == "__main__":
    sys.exit(main())
