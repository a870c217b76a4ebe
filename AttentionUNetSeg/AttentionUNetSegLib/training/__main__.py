"""`python -m AttentionUNetSegLib.training ARGS` (also `torchrun ... -m AttentionUNetSegLib.training ARGS`) is
`attention-unet train ARGS`."""
import sys

from ..cli.train import main

if __name__ == "__main__":
    sys.exit(main())
