"""Finding and loading the Hugging Face model to compile.

A MODEL is one of
- the name of a bundled config (built on the ``meta`` device: shapes only, enough to
  compile, plan and report), e.g. ``qwen1.5-7b-chat``;
- the name of a packaged checkpoint, ``qwen2.5-coder-0.5b-instruct``: real weights from
  the optional ``gguf`` extra, assembled once into a cache (see ``frontend/gguf.py``);
- a local Hugging Face model directory or a qwen2 ``.gguf`` file (loaded in fp32).
Nothing is downloaded.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from aielower.errors import ModelError
from aielower.frontend.config_checks import check_config, check_loading_info


def bundled_configs() -> list[str]:
    """Names of the configs that ship with aielower (e.g. ``qwen1.5-7b-chat``)."""
    folder = resources.files("aielower.frontend") / "configs"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def bundled_config(name: str):
    """The ``Qwen2Config`` of a bundled config name."""
    from transformers import Qwen2Config

    names = bundled_configs()
    if name not in names:
        raise ModelError(f"unknown model {name!r}: not a bundled config ({', '.join(names)}) nor a local directory")
    text = (resources.files("aielower.frontend") / "configs" / f"{name}.json").read_text(encoding="utf-8")
    data = {k: v for k, v in json.loads(text).items() if not k.startswith("_")}
    config = Qwen2Config(**data)
    config.name_or_path = name
    check_config(config, f"bundled config {name}")
    return config


PACKAGED_CHECKPOINTS = ("qwen2.5-coder-0.5b-instruct",)


def _packaged_gguf(name: str) -> Path:
    from aielower.frontend.gguf import assemble_checkpoint

    return assemble_checkpoint()


def load_model(name_or_dir: str | Path):
    """Return a ``Qwen2ForCausalLM``: on ``meta`` for a bundled config name, with weights
    (fp32, eval mode) for a packaged checkpoint, a local HF directory or a ``.gguf`` file."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, Qwen2ForCausalLM

    path = Path(name_or_dir)
    if str(name_or_dir) in PACKAGED_CHECKPOINTS:
        path = _packaged_gguf(str(name_or_dir))
    if path.suffix == ".gguf":
        from aielower.frontend.gguf import load_gguf

        model = load_gguf(path)[0]
        model.config.name_or_path = path.stem  # names the compiled module after the file
        return model
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is a directory without config.json: not a Hugging Face model directory")
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{path}: cannot read config.json: {e}") from None
        check_config(config, str(path))
        try:
            model, info = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32,
                                                               output_loading_info=True)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            raise ModelError(f"{path}: cannot load the model weights: {e}") from None
        check_loading_info(info, model, str(path))
        return model.eval()
    if str(name_or_dir) not in bundled_configs():
        raise ModelError(
            f"unknown model {str(name_or_dir)!r}: not a bundled config ({', '.join(bundled_configs())}), "
            f"a packaged checkpoint ({', '.join(PACKAGED_CHECKPOINTS)}), a local directory or a .gguf file"
        )
    config = bundled_config(str(name_or_dir))
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    return model.eval()


def load_tokenizer(name_or_dir: str | Path):
    """The tokenizer of a packaged checkpoint, a local HF directory or a ``.gguf`` file."""
    from transformers import AutoTokenizer

    path = Path(name_or_dir)
    if str(name_or_dir) in PACKAGED_CHECKPOINTS:
        path = _packaged_gguf(str(name_or_dir))
    if path.suffix == ".gguf" and path.is_file():
        from aielower.frontend.gguf import load_gguf_tokenizer

        return load_gguf_tokenizer(path)
    if path.is_dir():
        try:
            return AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"{path}: no usable tokenizer in this directory: {e}") from None
    if str(name_or_dir) in bundled_configs():
        raise ModelError(f"{name_or_dir!r} is a bundled config (architecture only): it has no tokenizer or weights")
    raise ModelError(f"no tokenizer for {str(name_or_dir)!r}: not a packaged checkpoint, a directory or a .gguf file")
