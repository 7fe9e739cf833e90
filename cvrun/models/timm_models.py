"""model=timm: any architecture timm knows (model.arch), as a cvrun Classifier.

timm's model, its classifier taken out, is the backbone: images -> forward_features -> forward_head with
pre_logits=True (timm's pooling, and whatever its head holds before the classifier: ConvNeXt's norm,
MobileNetV3's conv_head). timm's classifier is the head. Every regime and command that takes a Classifier
thus takes a timm model unchanged: the transfer regimes find the head where they find any model's.

model.kwargs go to timm.create_model as they are (drop_path_rate, img_size, patch_size, ...). Weights come
from model.pretrained: `hub` (timm's download), a weights file (safetensors or a PyTorch state dict), a folder
holding one (a Hugging Face cache folder too), or a cvrun run folder or checkpoint of a timm model. timm is
imported only when a timm model is checked or built: `cvrun --help` stays fast.
"""

from __future__ import annotations

import difflib
import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional
from urllib.parse import urlparse

import torch
from torch import nn

from cvrun.config import ModelConfig, path_field
from cvrun.errors import UserError, require
from cvrun.models.registry import Classifier, register_model

log = logging.getLogger("cvrun")

HUB = "hub"
# What cvrun decides for itself: the class count comes from the data, the weights from model.pretrained.
RESERVED_KWARGS = {"num_classes": "the class count comes from the data",
                   "pretrained": "weights come from model.pretrained"}
# The files a weights folder may hold, in the order they are looked for (timm's and Hugging Face's names).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# A timm model at random init takes its data statistics from the dataset; with timm's weights, from the
# weights' pretrained config (these keys of it fill the dataset section's of the same name).
DATA_KEYS = ("mean", "std", "crop_pct", "interpolation")


def open_mapping() -> Any:
    """A dict key whose keys are the user's (model.kwargs): a node out of struct mode, so that an override adds
    keys to it (model.kwargs.img_size=32, model.kwargs={img_size:32}) where Hydra would refuse them as unknown."""
    from omegaconf import OmegaConf

    return field(default_factory=lambda: OmegaConf.create({}, flags={"struct": False}))


@dataclass
class TimmModelConfig(ModelConfig):
    name: str = "timm"
    # null, hub (timm's download), a weights file or folder, a cvrun run folder or checkpoint
    pretrained: Optional[str] = path_field("imagenet", HUB)
    # timm's stems are its own (auto or false); small_input=true applies to cvrun's architectures only
    small_input: Any = False
    arch: str = "???"  # any name timm.list_models() knows, with or without a pretrained tag (convnext_atto.d2_in1k)
    kwargs: Dict[str, Any] = open_mapping()  # passed to timm.create_model (img_size, patch_size, ...)

    def check(self) -> None:
        super().check()
        require(str(self.small_input).lower() != "true",
                "model.small_input=true: timm's architectures keep their own stems; drop it, and give stem settings "
                "through model.kwargs (a ViT at 32 px: model.kwargs={img_size:32,patch_size:4})")
        check_arch(self.arch)
        for key, reason in RESERVED_KWARGS.items():
            require(key not in self.kwargs, f"model.kwargs.{key} is cvrun's to set ({reason}); drop it")
        require(not (self.drop_path and "drop_path_rate" in self.kwargs),
                f"model.drop_path={self.drop_path} is timm's drop_path_rate, which model.kwargs.drop_path_rate sets "
                "too: set one of them")

    def title(self) -> str:
        return f"timm {self.arch}"

    @classmethod
    def complete(cls, cfg: Any) -> None:
        """The dataset's mean and std (crop_pct, interpolation) from the weights' pretrained config, where the
        user left them (fill_dataset)."""
        fill_dataset(cfg)


def check_arch(arch: str) -> None:
    """An architecture timm does not know is a UserError with timm's closest names."""
    import timm

    if timm.is_model(arch):
        return
    names = timm.list_models() + timm.list_pretrained()
    close = difflib.get_close_matches(arch, names, n=3, cutoff=0.6)
    hint = (f"did you mean {', '.join(close)}?" if close else
            "timm.list_models() lists them (e.g. convnext_atto, resnet50, efficientnet_b0, vit_small_patch16_224)")
    raise UserError(f"model.arch={arch} is not an architecture timm knows; {hint}")


class TimmBackbone(nn.Module):
    """A timm model without its classifier: images -> the features its classifier would take."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)


class TimmClassifier(Classifier):
    """A timm model as cvrun's backbone + head. `arch`, `timm_kwargs` and `classifier_name` (where timm keeps the
    classifier: head.fc, fc, classifier, head) rebuild it and place timm's weights."""

    def __init__(self, model: nn.Module, arch: str, timm_kwargs: dict[str, Any], num_classes: int, dropout: float):
        classifier = model.get_classifier()
        if isinstance(classifier, (tuple, list)):
            raise UserError(f"model.arch={arch} has {len(classifier)} classifiers (a distillation token's beside the "
                            "class token's); cvrun trains one head: use the architecture without _distilled")
        classifier_name = next(name for name, module in model.named_modules() if module is classifier)
        model.reset_classifier(0)
        width = getattr(model, "head_hidden_size", None) or model.num_features
        super().__init__(TimmBackbone(model), width, num_classes, dropout)
        # timm's own classifier and its initialisation when it is one linear layer (almost every model);
        # otherwise (a 1x1 convolution, a normalised linear layer) the Classifier's linear head.
        fits = isinstance(classifier, nn.Linear) and (classifier.in_features, classifier.out_features) == (
            width, num_classes)
        if fits:
            self.replace_output_layer(classifier)
        self.arch, self.timm_kwargs, self.classifier_name = arch, timm_kwargs, classifier_name

    @property
    def timm_model(self) -> nn.Module:
        return self.backbone.model


def timm_arguments(arch: str, image_size: int, drop_path: float, kwargs: dict[str, Any]) -> dict[str, Any]:
    """timm.create_model's keyword arguments: model.kwargs, model.drop_path as drop_path_rate, and for an
    architecture of a fixed input size (a ViT's position embeddings) the data's image size unless kwargs give one."""
    from timm.models import get_pretrained_cfg

    pretrained_cfg = get_pretrained_cfg(arch)
    fixed = pretrained_cfg is not None and pretrained_cfg.fixed_input_size
    return {**({"img_size": image_size} if fixed else {}), **({"drop_path_rate": drop_path} if drop_path else {}),
            **kwargs}


def create_timm(arch: str, num_classes: int, arguments: dict[str, Any], **weights: Any) -> nn.Module:
    """timm.create_model; an argument the architecture does not take is a UserError naming it."""
    import timm

    try:
        return timm.create_model(arch, num_classes=num_classes, **weights, **arguments)
    except TypeError as err:
        raise UserError(f"model.arch={arch} does not take these model.kwargs ({err}); "
                        "drop the ones its constructor does not name") from None


@register_model("timm", config=TimmModelConfig, has_blocks=True)
def timm_model(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float,
               arch: str, kwargs: dict[str, Any]) -> TimmClassifier:
    """timm's `arch` at random init; model.pretrained's weights are placed by load_pretrained."""
    arguments = timm_arguments(arch, image_size, drop_path, dict(kwargs))
    model = TimmClassifier(create_timm(arch, num_classes, arguments), arch, arguments, num_classes, dropout)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    except AssertionError as err:  # timm asserts an input size a model cannot take (a ViT's patch grid)
        raise UserError(f"model.arch={arch} cannot take {image_size} px images ({err}); set model.kwargs to fit "
                        f"them (a ViT: model.kwargs={{img_size:{image_size},patch_size:4}}) or change "
                        "dataset.image_size") from None
    return model.train()


# --- weights -----------------------------------------------------------------------------------------------


@dataclass
class TimmWeights:
    """Where a timm model's weights are: a file (with the folder's config.json, when it has one) or timm's hub."""

    reference: str
    file: Path | None
    folder_config: dict[str, Any]


def weights_in_folder(folder: Path) -> Path | None:
    """The weights file of a folder: in it, or in the Hugging Face cache layout (models--org--name/snapshots/<rev>/,
    the revision refs/main names, else the newest)."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    snapshots = folder / "snapshots"
    if snapshots.is_dir():
        main = folder / "refs" / "main"
        revisions = ([snapshots / main.read_text().strip()] if main.is_file() else
                     sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True))
        for revision in revisions:
            found = weights_in_folder(revision)
            if found is not None:
                return found
    return None


def is_cvrun_checkpoint(path: Path) -> bool:
    """A cvrun checkpoint (its config inside) rather than a bare state dict; safetensors files never are."""
    if path.suffix == ".safetensors":
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the loader that reads it
        return False
    return isinstance(state, dict) and "config" in state and "class_names" in state


def timm_weights(reference: str, arch: str) -> TimmWeights | None:
    """The timm weights model.pretrained names; None when it names a cvrun run folder or checkpoint (loaded as
    any model's). Reads listings and small files only: it runs before the run folder is made."""
    if reference == HUB:
        return TimmWeights(reference, None, {})
    if reference == "imagenet":
        raise UserError("model.pretrained=imagenet names torchvision's weights; timm's are model.pretrained=hub "
                        f"(timm's download of {arch}'s), a weights file or a folder holding one")
    path = Path(reference).expanduser()
    if path.is_file():
        return None if is_cvrun_checkpoint(path) else TimmWeights(reference, path, {})
    if not path.is_dir():
        raise UserError(f"model.pretrained={reference} does not exist; pass hub, a weights file (safetensors or "
                        "PyTorch), a folder holding one, or a cvrun run folder")
    if (path / "config.yaml").is_file():
        return None
    file = weights_in_folder(path)
    if file is None:
        raise UserError(f"model.pretrained={reference} is a folder with no weights ({', '.join(WEIGHT_FILES[:2])}, "
                        "or snapshots/ of the Hugging Face cache) and no config.yaml of a cvrun run; pass the "
                        "weights file itself")
    config_file = file.parent / "config.json"
    folder_config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    source_arch = folder_config.get("architecture")
    if source_arch and source_arch != arch.split(".")[0]:
        raise UserError(f"model.pretrained={reference} holds timm's {source_arch} (its config.json), but "
                        f"model.arch={arch}; set model.arch={source_arch}")
    return TimmWeights(reference, file, folder_config)


def check_timm_pretrained(cfg: Any) -> None:
    """What can be checked of a timm model's model.pretrained before the run folder is made: a file or folder
    that holds weights, or for hub that timm has weights for the architecture and can fetch them."""
    weights = timm_weights(cfg.pretrained, cfg.arch) if cfg.pretrained is not None else None
    if weights is not None and weights.file is None:
        hub_file(cfg.arch)


def pretrained_cfg_of(arch: str) -> Any:
    """timm's pretrained config of `arch` (its default tag unless the name carries one), or None."""
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(arch)


def hub_file(arch: str) -> Path | None:
    """timm's weights of `arch` in the local caches (Hugging Face's, torch hub's), or None when they are to be
    downloaded; a UserError when timm has none or they cannot be downloaded (no connection)."""
    import timm

    pretrained = pretrained_cfg_of(arch)
    if pretrained is None or not (pretrained.hf_hub_id or pretrained.url):
        tagged = timm.list_pretrained(f"{arch.split('.')[0]}.*")
        hint = f"model.arch={' or '.join(tagged[:3])} has them" if tagged else "choose an architecture that has them"
        raise UserError(f"model.pretrained=hub: timm has no pretrained weights of {arch} to download; {hint}, or "
                        "start from random weights (model.pretrained=null)")
    if pretrained.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import ENDPOINT, HF_HUB_OFFLINE

        repo = pretrained.hf_hub_id.split("@")[0]
        for name in WEIGHT_FILES:
            cached = try_to_load_from_cache(repo, name)
            if isinstance(cached, str):
                return Path(cached)
        url, offline = f"{ENDPOINT}/{repo}/resolve/main/model.safetensors", HF_HUB_OFFLINE
    else:
        from torch.hub import get_dir

        url = pretrained.url
        cached_path = Path(get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        if cached_path.is_file():
            return cached_path
        offline = False
    reason = "HF_HUB_OFFLINE is set" if offline else unreachable(url)
    if reason:
        raise UserError(offline_message(arch, url, reason))
    return None


def unreachable(url: str) -> str | None:
    """Why `url`'s host cannot be reached (its name does not resolve: no network), or None. A DNS lookup is the
    quick test: without it the download retries for most of a minute before it fails."""
    host = urlparse(url).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
    except OSError as err:
        return f"{host} does not resolve: {err.strerror or err}"
    return None


def offline_message(arch: str, url: str, reason: str) -> str:
    return (f"model.pretrained=hub: cannot download timm's {arch} weights ({reason}); fetch {url} on a machine "
            "with internet, copy it here and set model.pretrained=PATH/TO/THAT/FILE")


def timm_state_dict(model: TimmClassifier, weights: TimmWeights) -> tuple[dict[str, torch.Tensor], str]:
    """timm's weights as the Classifier's tensors (backbone.model.<key>, the classifier's as head.*), read by timm
    itself (create_model with pretrained=True: its checkpoint filter adapts position embeddings to img_size);
    and what they were read from, for the log."""
    file = weights.file if weights.file is not None else hub_file(model.arch)
    classes = classifier_rows(file, model.classifier_name) if file is not None else None
    overlay = {} if file is None else {"file": str(file), "num_classes": classes}
    if classes is None:
        classes = pretrained_cfg_of(model.arch).num_classes
    try:
        source = create_timm(model.arch, classes, model.timm_kwargs, pretrained=True, pretrained_cfg_overlay=overlay)
    except (RuntimeError, KeyError, ValueError) as err:  # a tensor missing, left over or misshapen: other weights
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))[:200]
        raise UserError(f"model.pretrained={weights.reference} does not fit timm's {model.arch} "
                        f"(model.kwargs={model.timm_kwargs}): {detail}") from None
    except OSError as err:  # the download failed (a connection that dropped, a repository that moved)
        url = f"https://huggingface.co/{pretrained_cfg_of(model.arch).hf_hub_id}"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(offline_message(model.arch, url, reason)) from None
    prefix = model.classifier_name + "."
    state = {(f"head.{key[len(prefix):]}" if key.startswith(prefix) else f"backbone.model.{key}"): tensor
             for key, tensor in source.state_dict().items()}
    return state, str(file) if file is not None else f"timm's hub ({pretrained_cfg_of(model.arch).hf_hub_id})"


def classifier_rows(file: Path, classifier_name: str) -> int:
    """How many classes a weights file's classifier has (0: a file without one, saved as a backbone)."""
    key = f"{classifier_name}.weight"
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            return handle.get_slice(key).get_shape()[0] if key in handle.keys() else 0
    from timm.models import load_state_dict

    state = load_state_dict(str(file))
    return int(state[key].shape[0]) if key in state else 0


def data_config(cfg: Any) -> dict[str, Any] | None:
    """The data settings of the weights a timm model starts from (timm's pretrained config: mean, std,
    interpolation, crop_pct, input size), or None when it starts from random weights or a cvrun run (whose
    dataset section is its own)."""
    if cfg.pretrained is None:
        return None
    weights = timm_weights(cfg.pretrained, cfg.arch)
    if weights is None:
        return None
    pretrained = weights.folder_config.get("pretrained_cfg") or pretrained_cfg_of(cfg.arch).to_dict()
    return {key: pretrained[key] for key in ("mean", "std", "interpolation", "crop_pct", "input_size")
            if pretrained.get(key) is not None}


def fill_dataset(cfg: Any) -> list[str]:
    """A train config's dataset keys (mean, std; crop_pct and interpolation where the dataset section has them)
    set from the timm weights' pretrained config, where they hold the dataset option's own values: what the
    command line, an experiment or a user's YAML set stays. Returns what it set, as `key=value`, and says so in
    the log."""
    from omegaconf import OmegaConf

    from cvrun import config

    if "dataset" not in cfg or "model" not in cfg:
        return []
    try:
        settings = data_config(cfg.model) if cfg.model.name == "timm" else None
    except UserError:  # weights that are gone: the checks before a run say so; a saved config keeps its values
        return []
    if not settings:
        return []
    own = {**vars(OmegaConf.get_type(cfg.dataset)()), **config.option_values("dataset", cfg.dataset.name)}
    filled = []
    for key in DATA_KEYS:
        if key not in cfg.dataset or key not in settings:
            continue
        value = settings[key]
        value = [float(v) for v in value] if isinstance(value, (tuple, list)) else value
        if key == "interpolation" and value not in getattr(config, "INTERPOLATIONS", ()):
            continue  # a filter cvrun does not resize with (timm's "random"): the dataset's stays
        current = cfg.dataset[key]
        current = list(current) if OmegaConf.is_list(current) else current
        if current == own.get(key) and current != value:
            cfg.dataset[key] = value
            filled.append(f"dataset.{key}={value}")
    if filled:
        size = settings.get("input_size", (3, None, None))[-1]
        log.info("timm weights of %s: %s from their pretrained config (they were trained at %s px; "
                 "dataset.image_size=%d)", cfg.model.arch, ", ".join(filled), size, cfg.dataset.image_size)
    return filled
