"""Models: the registry and its architectures (importing this registers them)."""

from cvrun.models import architectures  # noqa: F401  (registers the models)
from cvrun.models.registry import MODELS, Classifier, build_model, create_model

__all__ = ["MODELS", "Classifier", "build_model", "create_model"]
