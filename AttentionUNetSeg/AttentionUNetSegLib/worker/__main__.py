"""`python -m AttentionUNetSegLib.worker JOB_DIR | --standby [JOB]`: run one job (worker.jobs.main)."""
import gc
import sys

from .jobs import main

if __name__ == "__main__":
    status = main()
    gc.freeze()  # the exit skips traversing PyTorch's objects: the parent sees the end sooner (cli.console_main)
    sys.exit(status)
