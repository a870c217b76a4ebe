"""The background worker the Slicer module runs segmentations and fine-tunings in: `python -m
AttentionUNetSegLib.worker JOB_DIR` (`__main__`); the job folder's files (`jobs`); the events it prints, one a
line, and their parser (`protocol`, torch-free)."""
