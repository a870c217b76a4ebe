"""`python -m AttentionUNetSegLib.training ARGS` is `attention-unet train ARGS`."""
import sys

from ..cli.train import main

sys.exit(main())
