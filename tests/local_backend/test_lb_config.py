"""models.yaml validation: the packaged default, and bad files refused with file and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_backend.config import ConfigError, default_config_path, load_config


def test_packaged_default_declares_the_three_models() -> None:
    config = load_config()
    assert default_config_path().name == "models.yaml"
    by_name = {model.name: model for model in config.models}
    assert by_name["qwen2.5-0.5b-instruct"].source == "Qwen/Qwen2.5-0.5B-Instruct"
    assert by_name["qwen2.5-0.5b-instruct"].modality == "chat"
    assert by_name["sd-turbo"].source == "stabilityai/sd-turbo"
    assert by_name["sd-turbo"].load == "first_use"
    assert by_name["all-minilm-l6-v2"].source == "sentence-transformers/all-MiniLM-L6-v2"
    assert by_name["all-minilm-l6-v2"].modality == "embedding"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("models: [", "not valid YAML"),
        ("models: []", "models: List should have at least 1 item"),
        ("models:\n  - {name: a, source: x, modality: video}", "models[0].modality"),
        ("models:\n  - {name: a, source: x, modality: chat, batching: {max_batch: 4}}", "batching.max_batch"),
        (
            "models:\n  - {name: a, source: x, modality: chat, batching: {max_batch_size: 0}}",
            "greater than or equal to 1",
        ),
        (
            "models:\n  - {name: a, source: x, modality: chat}\n  - {name: a, source: y, modality: chat}",
            "declared twice",
        ),
        ("models:\n  - {name: a, source: x, modality: chat, speed: {vae_tiling: true}}", "image models only"),
        ("models:\n  - {name: a, source: x, modality: image, device: tpu}", "models[0].device"),
    ],
)
def test_bad_files_are_refused_with_file_and_reason(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(path) in str(raised.value)
    assert reason in str(raised.value)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "absent.yaml")
