"""Models: the registry and its architectures (importing this registers them)."""

from cvrun.models import architectures, target, timm_models  # noqa: F401  (register the models)
from cvrun.models.registry import MODELS, Classifier, build_model, create_model

__all__ = ["MODELS", "Classifier", "build_model", "create_model"]
