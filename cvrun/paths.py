"""Where configs are: cvrun's config tree (a source checkout, an installed wheel), and the folders of your own
that a command line puts beside it (--config-dir DIR, hydra.searchpath=[file://DIR,pkg://PACKAGE]).

Hydra searches cvrun's configs/ first, then --config-dir, then hydra.searchpath's entries in their order: an
option found in two of them is the first one's. The functions here answer in the same order, so cvrun's checks
of an option (did-you-mean lists, a key the option does not take) see what Hydra will compose.
"""

from __future__ import annotations

import os
from pathlib import Path

from cvrun.errors import UserError

# This launch's search path entries after cvrun's configs/, as Hydra takes them (file://ABSOLUTE, pkg://NAME).
_user_sources: list[str] = []


def config_dir() -> Path:
    bundled = Path(__file__).resolve().parent / "configs"
    if (bundled / "train.yaml").is_file():
        return bundled
    return Path(__file__).resolve().parent.parent / "configs"


def use_config_sources(config_dir_flag: str | None, searchpath: list[str]) -> list[str]:
    """Record the config folders of this launch (--config-dir's, then hydra.searchpath's); each must exist.
    Returns them as search path entries with absolute folders."""
    sources = [] if config_dir_flag is None else [f"file://{folder_of('--config-dir', config_dir_flag)}"]
    for entry in searchpath:
        scheme, sep, where = entry.partition("://")
        if not sep or scheme not in ("file", "pkg") or not where:
            raise UserError(f"hydra.searchpath entry '{entry}': write file://FOLDER (a folder of YAMLs) or "
                            "pkg://PACKAGE (an installed package holding them), e.g. hydra.searchpath=[file://myconf]")
        if scheme == "file":
            sources.append(f"file://{folder_of(f'hydra.searchpath entry {entry}', where)}")
        else:
            package_folder(entry, where)  # importable, and read by Hydra
            sources.append(entry)
    _user_sources[:] = sources
    return list(sources)


def folder_of(given_as: str, folder: str) -> Path:
    path = Path(os.path.abspath(Path(folder).expanduser()))  # as Hydra reads --config-dir
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise UserError(f"{given_as}: {path} {what}; name a folder of config groups (model/, experiment/, ...)")
    return path


def package_folder(entry: str, package: str) -> Path | None:
    """The folder of a pkg:// entry's package (None for one in a zip file, which Hydra reads but cvrun's checks
    do not see into); a package that cannot be imported, or that Hydra would skip (no __init__.py), is refused."""
    from importlib import resources

    name = package.replace("/", ".").rstrip(".")
    try:
        files = resources.files(name)
    except (ImportError, TypeError, ValueError) as err:
        raise UserError(f"hydra.searchpath entry '{entry}': package {name} cannot be imported ({err}); install it, "
                        "or name its folder with file://FOLDER") from None
    if not files.joinpath("__init__.py").is_file():
        raise UserError(f"hydra.searchpath entry '{entry}': {name} has no __init__.py, and Hydra reads pkg:// "
                        "configs only from a regular package; add one, or name the folder with file://FOLDER")
    return files if isinstance(files, Path) else None


def config_sources() -> list[str]:
    """This launch's search path entries after cvrun's configs/ (what hydra.searchpath would hold)."""
    return list(_user_sources)


def config_search_dirs() -> list[Path]:
    """The folders Hydra finds configs in, in its order: cvrun's configs/, then the user's."""
    dirs = [config_dir()]
    for source in _user_sources:
        scheme, _, where = source.partition("://")
        folder = Path(where) if scheme == "file" else package_folder(source, where)
        if folder is not None:
            dirs.append(folder)
    return dirs


def option_files(group: str) -> dict[str, Path]:
    """Every YAML option of a config group: name -> the file Hydra composes for it."""
    found: dict[str, Path] = {}
    for folder in config_search_dirs():
        for path in sorted((folder / group).glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def option_file(group: str, name: str) -> Path | None:
    """The YAML file `group=name` composes (None: no folder holds one)."""
    return option_files(group).get(name)


def config_groups() -> list[str]:
    """The config groups of every folder on the search path (Hydra's own hydra/ aside)."""
    return sorted({p.name for folder in config_search_dirs() for p in folder.iterdir()
                   if p.is_dir() and p.name not in ("hydra", "__pycache__")})


def launch_dir() -> Path:
    """The folder cvrun was started in, which a relative path in a config means: Hydra's runtime.cwd in a job
    that hydra.job.chdir=true moved into its output folder, else the current folder."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        if hydra.job.chdir and Path.cwd().resolve() == Path(hydra.runtime.output_dir).resolve():
            return Path(hydra.runtime.cwd)
    return Path.cwd()


def launch_path(value: str) -> Path:
    """A path of a config (dataset.root, model.pretrained, ...) as an absolute path from the launch folder."""
    return launch_dir() / Path(value).expanduser()
