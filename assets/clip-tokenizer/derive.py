#!/usr/bin/env python3
"""Derive a Hugging Face style CLIP tokenizer folder (vocab.json + merges.txt and the
SD1-flavoured tokenizer_config.json / special_tokens_map.json) from OpenAI's CLIP BPE
file `bpe_simple_vocab_16e6.txt.gz` (shipped e.g. inside the open_clip_torch wheel).

Usage:
    python derive.py path/to/bpe_simple_vocab_16e6.txt.gz [out_dir] [--pad '!']
    python derive.py path/to/open_clip_torch-*.whl [out_dir]

Only the Python standard library is used.
"""

import gzip
import io
import json
import os
import sys
import zipfile

N_MERGES = 49152 - 256 - 2
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"


def byte_alphabet():
    """The 256 printable characters standing for the bytes 0..255, in GPT-2/CLIP order:
    bytes that are printable Latin-1 map to themselves (listed first), the others are
    shifted to U+0100 and up (listed after, in byte order)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    chars = [chr(b) for b in printable]
    shift = 0
    for b in range(256):
        if b not in printable:
            chars.append(chr(256 + shift))
            shift += 1
    return chars


def read_bpe_lines(src):
    if src.endswith(".whl") or src.endswith(".zip"):
        with zipfile.ZipFile(src) as zf:
            raw = zf.read(BPE_MEMBER)
    else:
        with open(src, "rb") as f:
            raw = f.read()
    text = gzip.GzipFile(fileobj=io.BytesIO(raw)).read().decode("utf-8")
    return text.split("\n")


def main(argv):
    args = [a for a in argv[1:]]
    pad = "<|endoftext|>"
    if "--pad" in args:
        i = args.index("--pad")
        pad = args[i + 1]
        del args[i : i + 2]
    if not args:
        print(__doc__)
        return 2
    src = args[0]
    out_dir = args[1] if len(args) > 1 else os.path.dirname(os.path.abspath(__file__))

    lines = read_bpe_lines(src)
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    assert len(merges) == N_MERGES and all(len(m) == 2 for m in merges)

    alphabet = byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet]
    tokens += ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == 49408, len(vocab)

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")

    def special(content):
        return {
            "content": content,
            "lstrip": False,
            "normalized": True,
            "rstrip": False,
            "single_word": False,
        }

    special_map = {
        "bos_token": special("<|startoftext|>"),
        "eos_token": special("<|endoftext|>"),
        "pad_token": pad,
        "unk_token": special("<|endoftext|>"),
    }
    config = {
        "add_prefix_space": False,
        "bos_token": dict(special("<|startoftext|>"), __type="AddedToken"),
        "do_lower_case": True,
        "eos_token": dict(special("<|endoftext|>"), __type="AddedToken"),
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": pad,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": dict(special("<|endoftext|>"), __type="AddedToken"),
    }
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special_map, f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
