#!/usr/bin/env python3
"""Writes seed inputs of the fuzz targets into fuzz/corpus/<target>/ (standard library only).

The committed corpus (fuzz/corpus/) started from these and is minimised with `cargo fuzz cmin`;
run this again only to start a corpus over. Names come from the fixtures in tests/fixtures.
"""

import json
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus"

PARAMETERS = [
    "masterpiece, best quality, 1girl, (detailed eyes:1.2),\n<lora:add_detail:0.5>, sunset\n"
    "Negative prompt: (worst quality, low quality:1.4), EasyNegative\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 3571104785, "
    "Size: 512x768, Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.45, "
    "Clip skip: 2, Hires upscale: 2, Hires steps: 15, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "add_detail: 7c6bad76eb54", TI hashes: "EasyNegative: c74b4e810b03", '
    "Version: v1.9.4",
    "a photo of an astronaut riding a horse on mars\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, "
    "Size: 768x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly",
    "cinematic photo of a fox\r\nNegative prompt: cartoon\r\n"
    "Steps: 25, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, "
    "Seed: 1, Size: 896x1152, Model: flux1-dev, Version: f2.0.1v1.10.1-previous-313-g8a042934, "
    'ADetailer model: face_yolov8n.pt, ADetailer prompt: "detailed face, smile", Module 1: ae\r\n',
    "portrait of a knight\nSteps: 30, Sampler: DPM++ 2M SDE Karras, CFG scale: 5, Seed: 9, "
    "Size: 832x1216, Created Date: 2024-05-01T10:00:00.0000000Z, "
    'Civitai resources: [{"type":"checkpoint","modelVersionId":290640}], Civitai metadata: {}',
    "猫と犬 🐱\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 2x2",
    "just a prompt, no parameter line",
]

PROMPTS = [
    "a castle on a hill, (masterpiece:1.2), [blurry]",
    "((nested)) [[down]] (a (b:1.5) c:0.5) \\(literal\\) \\\\ \\",
    "(x: -1.5e3 ) (y:+.5) (z:1.2.3) (w:abc) :1) ] ) [ (",
    "one BREAK two BREAKfast (BREAK) BREAK BREAK",
    "<lora:add_detail:0.5> sunset <lyco:thing:1:te=0.5> <hypernet:x:1> <LORA:bad:1> <lora:bare>",
    "<lora:name:notanumber> <lora::1> <lora:a:1:2:3> <notatag <a:b",
    "emb, em em em, e, emb x, " + "word, " * 40,
    "a, b, c, " * 30 + "BREAK" + " d" * 80,
    "",
    "猫と犬 🐱, café (naïve:1.1)",
]

TEXT = PROMPTS[:6] + [
    "<|startoftext|>hello<|endoftext|> world",
    "Ünïcödé ﬁ ligature Ａ full-width 123,456.789 i'm you're",
    "\u200b\u00a0\t\n tabs\tand\nnewlines",
    "🐱🐶🦊 emoji and ZWJ 👩‍💻",
]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def png(text_chunks_before, text_chunks_after=()) -> bytes:
    width = height = 2
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\0" + bytes(range(3 * width)) for _ in range(height))
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    for kind, payload in text_chunks_before:
        out += png_chunk(kind, payload)
    out += png_chunk(b"IDAT", zlib.compress(raw))
    for kind, payload in text_chunks_after:
        out += png_chunk(kind, payload)
    return out + png_chunk(b"IEND", b"")


def text_chunk(text: str):
    return b"tEXt", b"parameters\0" + text.encode("latin-1")


def ztxt_chunk(text: str):
    return b"zTXt", b"parameters\0\0" + zlib.compress(text.encode("latin-1"))


def itxt_chunk(text: str, compressed: bool):
    body = zlib.compress(text.encode()) if compressed else text.encode()
    return b"iTXt", b"parameters\0" + bytes([int(compressed), 0]) + b"\0\0" + body


def safetensors(tensors, metadata=None) -> bytes:
    """tensors: (name, dtype, shape, data bytes)."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + data


def f32(*values) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def header_names(path: Path):
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return [n for n in json.loads(raw[8 : 8 + length]) if n != "__metadata__"]


def every(names, count):
    step = max(1, len(names) // count)
    return names[::step][:count]


def write(target: str, name: str, data: bytes):
    folder = OUT / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def main():
    for i, text in enumerate(PARAMETERS):
        write("png_parameters", f"text_{i}", text.encode())
    latin = PARAMETERS[1]
    utf8 = PARAMETERS[4]
    write("png_parameters", "png_text", png([text_chunk(latin)]))
    write("png_parameters", "png_ztxt", png([ztxt_chunk(latin), (b"tEXt", b"Software\0test")]))
    write("png_parameters", "png_itxt", png([itxt_chunk(utf8, False)]))
    write("png_parameters", "png_itxt_after", png([], [itxt_chunk(utf8, True)]))
    write("png_parameters", "png_none", png([(b"tEXt", b"Software\0test")]))

    for i, text in enumerate(PROMPTS):
        write("a1111_prompt", f"prompt_{i}", text.encode())
    for i, text in enumerate(TEXT):
        write("tokenizer", f"text_{i}", text.encode())

    loras = FIXTURES / "formats" / "loras"
    for path in sorted(loras.glob("*.safetensors")):
        names = header_names(path)
        write("lora_keys", path.stem, bytes([2]) + "\n".join(every(names, 40)).encode())
    write(
        "lora_keys",
        "ldm_kohya",
        bytes([2])
        + b"\n".join(
            [
                b"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight",
                b"lora_unet_input_blocks_1_0_in_layers_2.lora_down.weight",
                b"lora_unet_middle_block_1_proj_in.lora_down.weight",
                b"lora_unet_output_blocks_2_1_transformer_blocks_1_ff_net_0_proj.lora_down.weight",
                b"unet.mid_block.attentions.0.processor.to_q_lora.lora.down.weight",
                b"text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight",
            ]
        ),
    )

    singles = FIXTURES / "formats" / "single"
    for path in sorted(singles.glob("*.safetensors")):
        names = header_names(path)
        write("single_file_detector", path.stem, bytes([4]) + "\n".join(every(names, 60)).encode())
    for path in sorted((FIXTURES / "formats" / "embeddings").glob("*.safetensors")):
        write("single_file_detector", path.stem, bytes([0]) + "\n".join(header_names(path)).encode())
    write(
        "single_file_detector",
        "lora",
        bytes([0]) + "\n".join(header_names(loras / "sd1_kohya.safetensors")[:8]).encode(),
    )
    write(
        "single_file_detector",
        "diffusers",
        bytes([0]) + "\n".join(every(header_names(FIXTURES / "models/sd1/unet/diffusion_pytorch_model.safetensors"), 20)).encode(),
    )

    # safetensors: the embeddings fixtures as they are, and small files with real names.
    for path in sorted((FIXTURES / "formats" / "embeddings").glob("*.safetensors")):
        write("safetensors_header", path.stem, path.read_bytes())
    write(
        "safetensors_header",
        "lora_kohya",
        safetensors(
            [
                ("lora_unet_mid_block_attentions_0_proj_in.alpha", "F32", [], f32(1.0)),
                ("lora_unet_mid_block_attentions_0_proj_in.lora_down.weight", "F32", [1, 2], f32(1, 2)),
                ("lora_unet_mid_block_attentions_0_proj_in.lora_up.weight", "F16", [2, 1], b"\0\x3c\0\x3c"),
                ("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", "BF16", [1, 2], b"\x80\x3f\x80\x3f"),
                ("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", "F32", [2, 1], f32(3, 4)),
            ],
            {"ss_network_dim": "1", "ss_network_alpha": "1"},
        ),
    )
    write(
        "safetensors_header",
        "lora_peft",
        safetensors(
            [
                ("unet.down_blocks.0.attentions.0.proj_in.lora_A.weight", "F32", [1, 2], f32(1, 2)),
                ("unet.down_blocks.0.attentions.0.proj_in.lora_B.weight", "F32", [2, 1], f32(1, 2)),
                ("text_encoder.encoder.layers.0.mlp.fc2.lora_A.weight", "F64", [1, 1], struct.pack("<d", 1.0)),
                ("text_encoder.encoder.layers.0.mlp.fc2.lora_B.weight", "F32", [1, 1], f32(1)),
            ],
            {
                "lora_adapter_metadata": json.dumps(
                    {"unet.r": 1, "unet.lora_alpha": 2, "unet.alpha_pattern": {"proj_in": 4}, "text_encoder.r": 1}
                )
            },
        ),
    )
    write(
        "safetensors_header",
        "single_file",
        safetensors(
            [
                ("model.diffusion_model.input_blocks.0.0.weight", "F16", [1, 4, 1, 1], b"\0\x3c" * 4),
                ("model.diffusion_model.out.2.bias", "F32", [1], f32(0.5)),
                ("cond_stage_model.transformer.text_model.final_layer_norm.weight", "BF16", [2], b"\x80\x3f" * 2),
                ("first_stage_model.decoder.mid.attn_1.q.weight", "F32", [1, 1, 1, 1], f32(2)),
                ("model_ema.num_updates", "I64", [], struct.pack("<q", 7)),
                ("alphas", "U8", [3], b"\1\2\3"),
                ("ids", "U32", [1], struct.pack("<I", 5)),
                ("odd", "F8_E4M3", [1], b"\0"),
            ],
            {"format": "pt"},
        ),
    )
    write("safetensors_header", "empty_header", safetensors([]))

    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote seeds to {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
