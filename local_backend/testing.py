"""Builders for tiny, randomly initialised models that load through the real loading paths.

Nothing here downloads anything: every architecture is built from a hand-written config and saved
with ``save_pretrained`` so that tests and benchmarks can point a ``models.yaml`` entry at the folder
and exercise ``AutoPipelineForText2Image`` / ``AutoModelForCausalLM`` exactly as a real model would.
The weights are random, so outputs are noise and gibberish; only shapes, determinism and plumbing matter.
"""

from __future__ import annotations

import json
from pathlib import Path

_CLIP_WORDS = [
    "a", "an", "the", "cat", "dog", "red", "blue", "green", "photo", "of", "on", "in", "with",
    "house", "tree", "sky", "car", "painting", "cute", "big", "small", "sun", "moon", "night",
]  # fmt: skip

_CHAT_WORDS = [
    "hello", "world", "how", "are", "you", "i", "am", "fine", "thanks", "what", "is", "the",
    "weather", "today", "it", "sunny", "rainy", "cold", "warm", "yes", "no", "maybe", "ok", "bye",
    "system", "user", "assistant", "a", "helpful", ".", ",", "?", "!",
]  # fmt: skip

# A ChatML-like template over whitespace-separated words so the tiny word-level tokenizer can encode it.
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|> {{ message['role'] }} {{ message['content'] }} <|im_end|> "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def write_tiny_image_pipeline(directory: Path, *, sample_size: int = 16, seed: int = 0) -> Path:
    """Save a tiny Stable-Diffusion-style pipeline (random weights) to ``directory`` and return it.

    The folder is a normal diffusers layout (``model_index.json`` + component subfolders), loadable with
    ``AutoPipelineForText2Image.from_pretrained(directory)``.
    """
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    unet = UNet2DConditionModel(  # type: ignore[no-untyped-call]
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(  # type: ignore[no-untyped-call]
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=sample_size * 2,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(_CLIP_WORDS) + 2,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=16,
            bos_token_id=0,  # the ids of <|startoftext|> / <|endoftext|> in the tiny vocab below
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    vocab_dir = directory / "_tokenizer_source"
    vocab_dir.mkdir(exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({f"{word}</w>": index + 2 for index, word in enumerate(_CLIP_WORDS)})
    (vocab_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (vocab_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(
        vocab_file=str(vocab_dir / "vocab.json"),
        merges_file=str(vocab_dir / "merges.txt"),
        model_max_length=77,
    )
    pipeline = StableDiffusionPipeline(  # type: ignore[no-untyped-call]
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=EulerDiscreteScheduler(steps_offset=1),  # type: ignore[no-untyped-call]
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory)  # type: ignore[attr-defined]
    return directory


def write_tiny_chat_model(directory: Path, *, seed: int = 0) -> Path:
    """Save a tiny Llama-architecture causal LM plus a word-level tokenizer with a chat template.

    Loadable with ``AutoModelForCausalLM.from_pretrained(directory)`` and ``AutoTokenizer``.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: index for index, token in enumerate(specials + _CHAT_WORDS)}
    word_level = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=word_level,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=256,
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<pad>"],
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
