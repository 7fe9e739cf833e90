"""Where the config tree is, in a source checkout and in an installed wheel."""

from pathlib import Path


def config_dir() -> Path:
    bundled = Path(__file__).resolve().parent / "configs"
    if (bundled / "train.yaml").is_file():
        return bundled
    return Path(__file__).resolve().parent.parent / "configs"
