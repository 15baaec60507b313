"""Train the neural vocoder: ``python -m cadenza.models.vocoder.train`` (56 min on one CPU thread).

Each step takes random 0.32 s excerpts of the training speech and singing
(``models.vocoder.data``), runs the net over them (after a warm-up of
``WARM`` frames so the GRU state is not fresh), renders audio with the DDSP
synth's torch twins (the harmonic basis from the numba kernel of
``engine/dsp/ddsp.py``, several times faster than torch's on the CPU) and
minimises DDSP's multi-scale spectral loss (L1 of linear and log magnitudes,
FFT sizes 2048 … 64) against the input delayed by ``DELAY_HOPS`` frames: the
bench's distance itself. Fixed seed, one torch thread, a tqdm progress bar;
training stops after ``--steps`` steps or ``--minutes`` minutes, whichever
comes first, and the learning rate follows a cosine over the same span (by
default the time budget ends first, so the number of steps depends on the
machine's load). Every ``--val-every`` steps and at the end it scores
``--val-size`` fixed held-out excerpts. Writes ``models/vocoder/vocoder.pt``
(a state dict, with its sha256) and ``models/vocoder/train_log.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.engine.dsp.ddsp import noise_matrix, taper_hz
from cadenza.engine.dsp.pitch import MODEL_INPUT_SETTINGS
from cadenza.models import ddsp_torch as S
from cadenza.models.ddsp_torch import multiscale_spectral_loss
from cadenza.models.vocoder import data
from cadenza.models.vocoder import features as F
from cadenza.models.vocoder.model import (DELAY_HOPS, HIDDEN, MAX_HZ, NOISE_HZ, N_HARMONICS, N_NOISE,
                                          VocoderNet, envelope_weights)
from cadenza.models.weights import save_weights

HERE = Path(__file__).resolve().parent
SR = data.SAMPLE_RATE
HOP = F.hop_samples(SR)
FFT_SIZES = (2048, 1024, 512, 256, 128, 64)
WARM = 24  # frames run before the scored excerpt
SEGMENT = 120  # scored frames per excerpt (0.32 s)


def prepare(split: str) -> list[dict]:
    """Per clip of a split: float32 audio, log-mel (T, 80), held f0 and voicing (T,); cached in data/."""
    from tqdm import tqdm

    clips = data.load(split)
    cache = data.CACHE / f"features_{split}.npz"
    if cache.exists():
        feats = dict(np.load(cache))  # read each array once
        bounds = np.concatenate([[0], np.cumsum(feats["frames"])])
        return [{"kind": k, "audio": a, "mel": feats["mel"][s:e], "f0": feats["f0"][s:e],
                 "voicing": feats["voicing"][s:e]} for (k, a), s, e in zip(clips, bounds[:-1], bounds[1:])]
    mel = F.MelAnalyser(SR)
    out = []
    for kind, audio in tqdm(clips, desc=f"features {split}", unit="clip"):
        f0, voicing = F.pitch_frames(audio, SR)
        out.append({"kind": kind, "audio": audio, "mel": mel.frames(audio), "f0": f0, "voicing": voicing})
    np.savez(cache, frames=[len(it["mel"]) for it in out], mel=np.concatenate([it["mel"] for it in out]),
             f0=np.concatenate([it["f0"] for it in out]), voicing=np.concatenate([it["voicing"] for it in out]))
    return out


def spectral_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DDSP multi-scale spectral loss between (B, N) signals, at the vocoder's FFT sizes."""
    return multiscale_spectral_loss(x, y, FFT_SIZES, eps=1e-5)


class Synth:
    """The DDSP harmonic-plus-noise synth (torch twins) driven by the vocoder's outputs."""

    def __init__(self, sr: float):
        self.sr = sr
        self.hop = F.hop_samples(sr)
        self.taper = taper_hz(MAX_HZ)
        self.mat = torch.from_numpy(noise_matrix(N_NOISE, NOISE_HZ, sr))

    def __call__(self, amp, env, noise_mags, f0, white):
        """amp (B, T), env (B, T, 80), noise_mags (B, T, N_NOISE), f0 (B, T) Hz, white (B, T·hop) → audio.

        Frame 0 of the inputs is the frame before the rendered span (interpolation start).
        """
        weights = envelope_weights(env, f0)
        amps = S.harmonic_amplitudes(amp, weights, f0, MAX_HZ, self.taper)
        harm = S.harmonic_synth(f0[:, 1:], amps[:, 1:], self.hop, self.sr, MAX_HZ, self.taper,
                                f0_prev=f0[:, 0], amps_prev=amps[:, 0],
                                basis=S.fast_harmonic_basis(f0[:, 1:], N_HARMONICS, self.hop, self.sr, MAX_HZ,
                                                            self.taper, f0_prev=f0[:, 0]))
        return harm + S.noise_synth(noise_mags[:, 1:], white, self.mat, self.hop)


def batch(items, rng, size):
    """Random excerpts: inputs of WARM + SEGMENT frames, targets of SEGMENT hops (delayed)."""
    lengths = np.array([it["mel"].shape[0] for it in items], np.float64)
    ok = lengths > WARM + SEGMENT + DELAY_HOPS + 1
    p = np.where(ok, lengths, 0.0)
    p /= p.sum()
    mel, f0, voi, tgt = [], [], [], []
    for i in rng.choice(len(items), size=size, p=p):
        it = items[i]
        s = int(rng.integers(WARM + DELAY_HOPS, it["mel"].shape[0] - SEGMENT + 1))
        mel.append(it["mel"][s - WARM: s + SEGMENT])
        f0.append(it["f0"][s - WARM: s + SEGMENT])
        voi.append(it["voicing"][s - WARM: s + SEGMENT])
        a = (s - DELAY_HOPS) * HOP
        tgt.append(it["audio"][a: a + SEGMENT * HOP])
    t = lambda xs: torch.from_numpy(np.stack(xs).astype(np.float32))  # noqa: E731
    return t(mel), t(f0), t(voi), t(tgt)


def run_batch(net, synth, mel, f0, voi, gen):
    """Render the scored span of a batch: (B, SEGMENT · hop)."""
    amp, env, noise, _ = net(mel, f0, voi)
    sl = slice(WARM - 1, None)
    white = torch.rand(mel.shape[0], SEGMENT * synth.hop, generator=gen) * 2.0 - 1.0
    return synth(amp[:, sl], env[:, sl], noise[:, sl], f0[:, sl], white)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100000)
    parser.add_argument("--minutes", type=float, default=56.0, help="wall-clock budget for the steps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=HIDDEN, help="GRU width (the live node reads model.HIDDEN)")
    parser.add_argument("--stop-at", type=int, default=None,
                        help="pilot runs: stop after this many steps, the schedule still spanning --steps")
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--val-size", type=int, default=64, help="held-out excerpts scored at each check")
    parser.add_argument("--out", type=Path, default=HERE / "vocoder.pt")
    parser.add_argument("--log", type=Path, default=HERE / "train_log.json")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    t_start = time.time()
    train = prepare("train")
    test = prepare("test")
    net = VocoderNet(args.hidden)
    all_mel = np.concatenate([it["mel"] for it in train])
    net.mel_mean.fill_(float(all_mel.mean()))
    net.mel_std.fill_(float(all_mel.std()))
    synth = Synth(SR)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    val = batch(test, np.random.default_rng(1), args.val_size)
    log = {"steps": [], "train_loss": [], "val_loss": []}
    t_train = time.time()
    deadline = t_train + args.minutes * 60.0
    bar = tqdm(range(args.steps), desc="vocoder", unit="step")
    running = None
    step = 0

    def check(step: int) -> None:
        """Log the held-out loss of the weights after ``step``."""
        with torch.no_grad():
            v = spectral_loss(run_batch(net, synth, *val[:3], torch.Generator().manual_seed(1)), val[3]).item()
        log["steps"].append(step)
        log["train_loss"].append(running)
        log["val_loss"].append(v)
        tqdm.write(f"step {step}: train {running:.3f} val {v:.3f} ({(time.time() - t_start) / 60:.1f} min)")

    for step in bar:
        mel, f0, voi, tgt = batch(train, rng, args.batch)
        loss = spectral_loss(run_batch(net, synth, mel, f0, voi, gen), tgt)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 2.0)
        opt.step()
        # cosine decay over the steps or the time budget, whichever runs out first
        progress = min(1.0, max((step + 1) / args.steps, (time.time() - t_train) / (args.minutes * 60.0)))
        for group in opt.param_groups:
            group["lr"] = args.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.3f}")
        last = args.stop_at is not None and step + 1 >= args.stop_at
        if step % args.val_every == 0 or time.time() > deadline or last:
            check(step)
            save_weights(net.state_dict(), args.out)
        if time.time() > deadline or last:
            break
    if log["steps"][-1] != step:  # the final weights' held-out loss
        check(step)
    save_weights(net.state_dict(), args.out)
    log |= {"final_step": step + 1, "minutes": (time.time() - t_start) / 60.0, "batch": args.batch,
            "segment_frames": SEGMENT, "threads": args.threads, "seed": 0,
            "hidden": args.hidden, "val_excerpts": args.val_size, "pitch_settings": MODEL_INPUT_SETTINGS,
            "lr": args.lr, "schedule_steps": args.steps,
            "train_clips": len(train), "test_clips": len(test),
            "train_minutes_audio": sum(len(it["audio"]) for it in train) / SR / 60.0}
    args.log.write_text(json.dumps(log, indent=1))
    print(f"wrote {args.out} after {step + 1} steps, {log['minutes']:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
