"""The repository being assembled: each model's config, the files of its version directory and what
the manifest says of it, kept in memory until ``write`` puts them on disk in one go.

``Repository.python_model`` adds a python-backend model (its ``model.py`` from
``cityserve/serving/triton_models/<folder>/``); ``Repository.add_ensemble`` adds an ensemble built from
steps (``ensembles.py``) against the models added so far.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

from ..errors import ConfigError
from .configs import Spec, check_model_name, config_text
from .engine_script import EngineBuild
from .ensembles import Pipeline, ensemble

FileContent = Union[Path, bytes, str]


@dataclasses.dataclass
class Repository:
    """The models of one repository: their configs, the files of their version directory, what the
    manifest says of them. Nothing touches the disk until ``write``."""

    target: str
    python_models: Path
    specs: dict[str, Spec] = dataclasses.field(default_factory=dict)
    files: dict[str, dict[str, FileContent]] = dataclasses.field(default_factory=dict)  # under 1/ (or ../warmup/)
    info: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    ensembles: list[str] = dataclasses.field(default_factory=list)
    engine_builds: list[EngineBuild] = dataclasses.field(default_factory=list)
    missing_plans: list[str] = dataclasses.field(default_factory=list)

    def add(self, spec: Spec, files: Mapping[str, FileContent], info: Mapping[str, Any]) -> str:
        name = check_model_name(spec.config.name)
        if name in self.specs:
            raise ConfigError(f"two models would be named {name!r}; give the cards different names")
        self.specs[name] = spec
        self.files[name] = dict(files)
        self.info[name] = dict(info)
        return name

    def python_model(self, spec: Spec, folder: str, info: Mapping[str, Any], **files: FileContent) -> str:
        """Add a python-backend model whose ``model.py`` is ``triton_models/<folder>/model.py``."""
        return self.add(
            spec, {"model.py": self.python_models / folder / "model.py", **files}, {"python_model": folder, **info}
        )

    def add_ensemble(self, pipeline: Pipeline, info: Mapping[str, Any] | None = None) -> str:
        members = {name: spec.config for name, spec in self.specs.items()}
        name = self.add(ensemble(pipeline, members), {}, {"role": "ensemble", **(info or {})})
        self.ensembles.append(name)
        return name

    def write(self, root: Path, configs_only: bool = False) -> None:
        """Each model's ``config.pbtxt`` (and, unless ``configs_only``, its ``1/`` files)."""
        for name, spec in self.specs.items():
            model_dir = root / name
            model_dir.mkdir(parents=True)
            (model_dir / "config.pbtxt").write_text(config_text(spec))
            if configs_only:
                continue
            version = model_dir / "1"
            version.mkdir()
            for rel, content in self.files[name].items():
                dest = version / rel
                dest.parent.mkdir(parents=True, exist_ok=True)  # "../warmup/<file>": warm-up data
                if isinstance(content, Path):
                    shutil.copyfile(content, dest)
                elif isinstance(content, bytes):
                    dest.write_bytes(content)
                else:
                    dest.write_text(content)


@dataclasses.dataclass
class BuiltRepository:
    path: Path
    target: str
    models: dict[str, dict[str, Any]]
    ensembles: list[str]
    notes: list[str]

    def configs(self) -> dict[str, Path]:
        return {name: self.path / name / "config.pbtxt" for name in self.models}
