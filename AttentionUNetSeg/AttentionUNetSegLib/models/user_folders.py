"""The per-user folders: the config folder (the user's model registry and the models fine-tuned here) and the
cache folder (downloaded models, converted OpenVINO networks). `ATTENTION_UNET_SEG_HOME` moves both under one root (tests, shared
installations); otherwise they are the platform's (platformdirs).
"""
from __future__ import annotations

import os
from pathlib import Path

HOME_VARIABLE = "ATTENTION_UNET_SEG_HOME"
APP_NAME = "AttentionUNetSeg"


def user_config_dir() -> Path:
    """Where the user's registry lives."""
    if os.environ.get(HOME_VARIABLE):
        return Path(os.environ[HOME_VARIABLE])
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def user_cache_dir() -> Path:
    """The root of the per-user caches."""
    if os.environ.get(HOME_VARIABLE):
        return Path(os.environ[HOME_VARIABLE]) / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def user_registry() -> Path:
    """The user's model registry file."""
    return user_config_dir() / "models.json"


def user_models_dir() -> Path:
    """Where models fine-tuned by the user are kept (they are registered in the user's registry)."""
    return user_config_dir() / "models"


def model_cache_dir() -> Path:
    """Where downloaded model files are kept, named by their sha256."""
    return user_cache_dir() / "models"
