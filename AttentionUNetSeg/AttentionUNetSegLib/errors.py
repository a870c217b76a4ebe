"""Exceptions with messages that name the problem and the fix."""


class AttentionUNetSegError(Exception):
    """Base class: every error this package raises on purpose derives from it."""


class InputImageError(AttentionUNetSegError):
    """The input image cannot be segmented as it is (wrong dimension, spacing, values, file)."""


class ModelFileError(AttentionUNetSegError):
    """A model file is missing, corrupt, of an unknown version or does not match its metadata."""


class OutputError(AttentionUNetSegError):
    """Outputs cannot be written (folder not writable, name clash)."""


class CancelledError(AttentionUNetSegError):
    """The user cancelled a running job; nothing was written."""


class InvalidOptionError(AttentionUNetSegError, ValueError):
    """An option has a value that cannot work here (e.g. --device cuda without a GPU)."""


class DatasetError(AttentionUNetSegError):
    """A dataset folder, label map or evaluation file is unusable as given (unmatched cases, grids that differ)."""


class TrainingError(AttentionUNetSegError):
    """A training run cannot start or go on (diverged loss, unusable checkpoint, mismatched resume)."""


class DiskFullError(OutputError):
    """The disk of an output folder (or a file-size limit) has no room for what is being written; what was being
    written was not left half-written."""
