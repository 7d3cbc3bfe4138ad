#!/usr/bin/env python3
"""CPU/GPU reference timings of diffusers on the full-size SD 1.5 (or SDXL) architecture.

Builds UNet2DConditionModel / AutoencoderKL / CLIPTextModel with Stable
Diffusion 1.5's real configs (--arch sdxl: SDXL's, read from assets/configs/sdxl, two
text encoders) and random weights (fp32 by default), then times

  * text encode        CLIP text encoder forward, batch 2 (cond + uncond), 77 tokens
  * unet step (CFG)    one UNet forward at batch 2, for each size (256, 512)
  * vae decode         AutoencoderKL decode of one latent, for each size
  * pipeline           a whole txt2img generation (default: 4 steps, 256x256, CFG 7.5)

and prints the peak RSS (resource.getrusage). The 512x512 parts are expensive on
a small CPU; use --sizes 256 to skip them.

  python bench/diffusers_bench.py                       # 256 + 512, 3 timed iterations
  python bench/diffusers_bench.py --sizes 256 --iters 1
  python bench/diffusers_bench.py --tiny --sizes 64     # smoke test with tiny configs
  python bench/diffusers_bench.py --save-weights DIR    # also write the random weights as a
                                                        # diffusers folder (for the Rust bench)
  python bench/diffusers_bench.py --save-weights DIR --no-bench
  python bench/diffusers_bench.py --device cuda --dtype fp16 --sizes 512 --pipeline-size 512 --pipeline-steps 20
  python bench/diffusers_bench.py --arch sdxl --device cuda --dtype fp16 --sizes 1024 --pipeline-size 1024 --pipeline-steps 20

Tokenizer for the pipeline / saved folder: tests/fixtures/models/sd1/tokenizer
(CLIP BPE vocab), override with --tokenizer.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "models", "sd1", "tokenizer")

# Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5) component configs.
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
SD15_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
    layer_norm_eps=1e-5,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)
SD15_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    clip_sample=False,
    timestep_spacing="leading",
    prediction_type="epsilon",
)

# Same block structure, tiny widths: only for --tiny smoke tests.
TINY_UNET = dict(SD15_UNET, block_out_channels=(32, 32, 64, 64), cross_attention_dim=32, norm_num_groups=16,
                 attention_head_dim=4, sample_size=8)
TINY_VAE = dict(SD15_VAE, block_out_channels=(16, 16, 32, 32), norm_num_groups=8, layers_per_block=1)
TINY_TEXT = dict(SD15_TEXT, hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
                 projection_dim=32)


def peak_rss_mib():
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / (1024.0 * 1024.0)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timeit(fn, device, warmup, iters):
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def profile_step(fn, device, label):
    """GPU (or CPU) time of one call by kernel group, to set beside `latent-studio bench --profile`."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    fn()
    sync(device)
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    groups = {}
    total = 0.0
    for event in prof.key_averages():
        if device.startswith("cuda"):
            # Device kernels only (their CPU-side operator rows would count the same time twice).
            if getattr(event, "device_type", None) is None or "CUDA" not in str(event.device_type):
                continue
            us = event.self_device_time_total
        else:
            us = event.self_cpu_time_total
        name = event.key.lower()
        if any(k in name for k in ("flash", "fmha", "attention", "sdpa")):
            group = "attention"
        elif any(k in name for k in ("conv", "implicit", "winograd", "xmma_fprop", "fprop", "dgrad", "nhwc", "nchw")):
            group = "convolution"
        elif any(k in name for k in ("gemm", "cutlass", "sm90_xmma", "cublas", "matmul", "addmm", "nvjet")):
            group = "matrix products (linear)"
        elif "norm" in name:
            group = "norms"
        else:
            group = "element-wise and the rest"
        groups[group] = groups.get(group, 0.0) + us
        total += us
    kind = "GPU kernel" if device.startswith("cuda") else "CPU"
    print(f"  profile of one {label} ({kind} time): {total / 1000:.1f} ms")
    for group, us in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"    {group:34s} {us / 1000:8.1f} ms  {100 * us / max(total, 1e-9):5.1f}%")
    if device.startswith("cuda"):
        kernels = [e for e in prof.key_averages() if "CUDA" in str(getattr(e, "device_type", ""))]
        top = sorted(kernels, key=lambda e: -e.self_device_time_total)[:12]
        for event in top:
            print(f"      {event.self_device_time_total / 1000:8.2f} ms  x{event.count:<4d} {event.key[:110]}")


def sdxl_config(component):
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    with open(os.path.join(ROOT, "assets", "configs", "sdxl", component, name)) as f:
        cfg = json.load(f)
    return {k: v for k, v in cfg.items() if not k.startswith("_") and k != "architectures"}


def build_sdxl(args, dtype):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    scheduler = EulerDiscreteScheduler.from_config(sdxl_config("scheduler"))
    t0 = time.perf_counter()
    # Built directly on the device: initializing 3.5B random parameters on the CPU is slow.
    with torch.device(args.device):
        torch.manual_seed(args.seed)
        unet = UNet2DConditionModel(**sdxl_config("unet"))
        torch.manual_seed(args.seed + 1)
        vae = AutoencoderKL(**sdxl_config("vae"))
        torch.manual_seed(args.seed + 2)
        text = CLIPTextModel(CLIPTextConfig(**sdxl_config("text_encoder")))
        text_2 = CLIPTextModelWithProjection(CLIPTextConfig(**sdxl_config("text_encoder_2")))
    for m in (unet, vae, text, text_2):
        m.eval().to(device=args.device, dtype=dtype)
    build_s = time.perf_counter() - t0
    n = {k: sum(p.numel() for p in m.parameters())
         for k, m in (("unet", unet), ("vae", vae), ("text", text), ("text_2", text_2))}
    return unet, vae, (text, text_2), scheduler, build_s, n


def build(args, dtype):
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if args.arch == "sdxl":
        return build_sdxl(args, dtype)
    unet_cfg, vae_cfg, text_cfg = (TINY_UNET, TINY_VAE, TINY_TEXT) if args.tiny else (SD15_UNET, SD15_VAE, SD15_TEXT)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    unet = UNet2DConditionModel(**unet_cfg)
    torch.manual_seed(args.seed + 1)
    vae = AutoencoderKL(**vae_cfg)
    torch.manual_seed(args.seed + 2)
    text = CLIPTextModel(CLIPTextConfig(**text_cfg))
    scheduler = PNDMScheduler.from_config(SD15_SCHEDULER)
    for m in (unet, vae, text):
        m.eval().to(device=args.device, dtype=dtype)
    build_s = time.perf_counter() - t0
    n = {k: sum(p.numel() for p in m.parameters()) for k, m in (("unet", unet), ("vae", vae), ("text", text))}
    return unet, vae, text, scheduler, build_s, n


def make_pipeline(args, unet, vae, text, scheduler):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(args.tokenizer)
    if args.arch == "sdxl":
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text[0], text_encoder_2=text[1], tokenizer=tok,
                                         tokenizer_2=tok, unet=unet, scheduler=scheduler,
                                         force_zeros_for_empty_prompt=True, add_watermarker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="sd15", choices=["sd15", "sdxl"])
    ap.add_argument("--sizes", default="256,512", help="comma list of square image sizes for unet/vae parts")
    ap.add_argument("--pipeline-size", type=int, default=256)
    ap.add_argument("--pipeline-steps", type=int, default=4)
    ap.add_argument("--parts", default="text,unet,vae,pipeline")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="tiny widths (smoke test only, not SD 1.5 timings)")
    ap.add_argument("--tokenizer", default=DEFAULT_TOKENIZER)
    ap.add_argument("--save-weights", metavar="DIR", help="save the random-weight pipeline as a diffusers folder")
    ap.add_argument("--no-bench", action="store_true", help="with --save-weights: only save")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--profile", action="store_true",
                    help="after each timed UNet step, one more under torch.profiler: GPU time by kernel group")
    args = ap.parse_args()
    if args.arch == "sdxl" and (args.tiny or args.save_weights):
        ap.error("--arch sdxl supports neither --tiny nor --save-weights")

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    parts = set(args.parts.split(","))

    import diffusers
    import transformers

    unet, vae, text, scheduler, build_s, nparams = build(args, dtype)
    info = dict(torch=torch.__version__, diffusers=diffusers.__version__, transformers=transformers.__version__,
                arch=args.arch, device=args.device, dtype=args.dtype, threads=torch.get_num_threads(), cpu=platform.processor(),
                tiny=args.tiny, build_s=round(build_s, 3), params=nparams)
    print(json.dumps(info))

    if args.save_weights:
        t0 = time.perf_counter()
        make_pipeline(args, unet, vae, text, scheduler).save_pretrained(args.save_weights, safe_serialization=True)
        # transformers 5 saves tokenizer.json only; ship the hub-style vocab.json/merges.txt files instead
        if os.path.exists(os.path.join(args.tokenizer, "vocab.json")):
            tdir = os.path.join(args.save_weights, "tokenizer")
            shutil.rmtree(tdir)
            shutil.copytree(args.tokenizer, tdir)
        print(f"saved weights to {args.save_weights} in {time.perf_counter() - t0:.1f}s")
        if args.no_bench:
            print(f"peak RSS: {peak_rss_mib():.0f} MiB")
            return

    results = []

    def report(name, times, **extra):
        r = dict(name=name, mean_s=sum(times) / len(times), min_s=min(times), iters=len(times), **extra)
        results.append(r)
        print(f"{name:32s} mean {r['mean_s'] * 1000:10.1f} ms   min {r['min_s'] * 1000:10.1f} ms   "
              f"(n={len(times)})  peak RSS {peak_rss_mib():.0f} MiB", flush=True)

    dev = args.device
    with torch.inference_mode():
        if "text" in parts:
            ids = torch.randint(0, 49406, (2, 77), generator=torch.Generator().manual_seed(0)).to(dev)
            encoders = text if isinstance(text, tuple) else (text,)
            report("text encode (batch 2)",
                   timeit(lambda: [enc(ids)[0] for enc in encoders], dev, args.warmup, args.iters))
        for size in sizes:
            lat = size // 8
            if "unet" in parts:
                x = torch.randn(2, 4, lat, lat, generator=torch.Generator().manual_seed(1)).to(dev, dtype)
                ctx = torch.randn(2, 77, unet.config.cross_attention_dim,
                                  generator=torch.Generator().manual_seed(2)).to(dev, dtype)
                t = torch.tensor(500, device=dev)
                added = None
                if args.arch == "sdxl":
                    pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
                    added = dict(text_embeds=torch.randn(2, pooled, generator=torch.Generator().manual_seed(4))
                                 .to(dev, dtype),
                                 time_ids=torch.tensor([[size, size, 0, 0, size, size]] * 2, device=dev, dtype=dtype))
                report(f"unet step CFG b2 {size}x{size}",
                       timeit(lambda: unet(x, t, encoder_hidden_states=ctx, added_cond_kwargs=added).sample,
                              dev, args.warmup, args.iters),
                       size=size)
                if args.profile:
                    profile_step(lambda: unet(x, t, encoder_hidden_states=ctx, added_cond_kwargs=added).sample,
                                 dev, f"unet step {size}x{size}")
            if "vae" in parts:
                z = torch.randn(1, 4, lat, lat, generator=torch.Generator().manual_seed(3)).to(dev, dtype)
                report(f"vae decode {size}x{size}", timeit(lambda: vae.decode(z).sample, dev, args.warmup, args.iters),
                       size=size)
        if "pipeline" in parts:
            pipe = make_pipeline(args, unet, vae, text, scheduler)
            s = args.pipeline_size

            def gen():
                return pipe("a photo of an astronaut riding a horse on mars", num_inference_steps=args.pipeline_steps,
                            guidance_scale=7.5, width=s, height=s, output_type="np",
                            generator=torch.Generator("cpu").manual_seed(0)).images

            report(f"pipeline {args.pipeline_steps} steps {s}x{s} CFG", timeit(gen, dev, args.warmup, args.iters),
                   size=s, steps=args.pipeline_steps)
    peak = peak_rss_mib()
    print(f"peak RSS: {peak:.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(info=info, results=results, peak_rss_mib=peak), f, indent=1)


if __name__ == "__main__":
    main()
