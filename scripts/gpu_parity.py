#!/usr/bin/env python3
"""Parity of a GPU build with diffusers on the committed fixture cases (run by gpu-check.sh).

Runs `latent-studio generate --device DEVICE` for each named case of tests/fixtures/cases.json
(the same request tests/parity.rs makes through the library: plain prompt syntax, the case's
scheduler, seed, size and init image) and compares the PNG with the diffusers float32 image
stored in tests/fixtures/cases/NAME.safetensors. A dtype with a limit fails past it; one
without is only reported (f16 differs from float32 by its rounding, as diffusers fp16 does).

  python3 scripts/gpu_parity.py --bin BIN --out DIR --dtype f32:2 --dtype f16 \
      --cases sd1_default,sdxl_neg_text
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image
from safetensors.numpy import load_file

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures")


def cli_args(case):
    args = [
        "generate",
        "--model", os.path.join(FIXTURES, "models", case["model"]),
        "--prompt", case["prompt"],
        "--steps", str(case["steps"]),
        "--guidance", str(case["guidance"]),
        "--seed", str(case["seed"]),
        "--width", str(case["width"]),
        "--height", str(case["height"]),
        "--scheduler", case["scheduler"],
        "--prompt-syntax", "plain",
    ]
    if case.get("negative_prompt") is not None:
        args += ["--negative-prompt", case["negative_prompt"]]
    if case.get("init_image"):
        args += ["--init-image", os.path.join(FIXTURES, case["init_image"]), "--strength", str(case["strength"])]
    return args


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cases", required=True, help="comma-separated case names")
    ap.add_argument("--dtype", action="append", required=True,
                    help="DTYPE or DTYPE:MAX_DIFF_OUT_OF_255 (repeatable)")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per generation")
    args = ap.parse_args()

    cases = {c["name"]: c for c in json.load(open(os.path.join(FIXTURES, "cases.json")))}
    failures = []
    for spec in args.dtype:
        dtype, _, limit = spec.partition(":")
        limit = float(limit) if limit else None
        for name in args.cases.split(","):
            case = cases.get(name)
            if case is None:
                failures.append(f"{name}: no such case in cases.json")
                continue
            png = os.path.join(args.out, f"parity_{name}_{dtype}.png")
            command = [args.bin, *cli_args(case), "--device", args.device, "--dtype", dtype, "--output", png]
            start = time.time()
            try:
                run = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                failures.append(f"{name} {dtype}: timed out after {args.timeout} s")
                print(f"{name:<22} {dtype}: TIMEOUT")
                continue
            seconds = time.time() - start
            if run.returncode != 0:
                failures.append(f"{name} {dtype}: exit {run.returncode}")
                print(f"{name:<22} {dtype}: exit {run.returncode}\n{run.stderr[-2000:]}")
                continue
            reference = load_file(os.path.join(FIXTURES, "cases", name + ".safetensors"))["image"]
            image = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
            if image.shape != reference.shape:
                failures.append(f"{name} {dtype}: image {image.shape} vs reference {reference.shape}")
                continue
            diff = np.abs(image - reference.astype(np.int16))
            verdict = ""
            if limit is not None:
                ok = diff.max() <= limit
                verdict = f"  {'OK' if ok else 'FAIL'} (limit {limit:g}/255)"
                if not ok:
                    failures.append(f"{name} {dtype}: max |diff| {diff.max()}/255")
            print(f"{name:<22} {dtype}: max |diff| {diff.max():3d}/255  mean {diff.mean():.3f}/255"
                  f"  ({seconds:.1f} s){verdict}")
    if failures:
        print("parity failures:\n  " + "\n  ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
