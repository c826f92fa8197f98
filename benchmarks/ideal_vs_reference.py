"""lmlab.imaging vs the reference JAX package ``encoding-information`` 0.1.1, on identical measurements.

Both sides fit the same density models on the same train array and score the same test array (exchanged as
.npy files): full Gaussian, stationary Gaussian process (plug-in, and with ``use_iterative_optimization``),
PixelCNN. The reference runs in its own venv (``make bench-ideal`` creates ``.venv-ref``) through its model
classes' ``.fit`` / ``.compute_negative_log_likelihood``, not ``estimate_mutual_information`` (which reshuffles
with an unseeded RNG). Prints and writes JSON with a top-level ``agreement`` (relative difference of H(Y) and
of Î per estimator) and the wall time of both sides.

    make bench-ideal                     # or:
    python benchmarks/ideal_vs_reference.py --ref-python .venv-ref/bin/python --out runs/bench-ideal.json
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REF_SCRIPT = r'''
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as onp
t_import = time.perf_counter()
from encoding_information.models.gaussian_process import FullGaussianProcess, StationaryGaussianProcess
from encoding_information.models.pixel_cnn import PixelCNN
t_import = time.perf_counter() - t_import
d = sys.argv[1]
args = json.loads(open(d + "/args.json").read())
train, test = onp.load(d + "/train.npy"), onp.load(d + "/test.npy")
out = {"import_seconds": t_import}
def timed(name, fn):
    t = time.perf_counter(); v = float(fn()); out[name] = {"nll": v, "seconds": time.perf_counter() - t}
timed("full_gaussian", lambda: FullGaussianProcess(train, seed=0).compute_negative_log_likelihood(test, data_seed=1, verbose=False))
def sgp(iterative):
    m = StationaryGaussianProcess(train, seed=0)
    if iterative:
        m.fit(train, data_seed=0, verbose=False)
    return m.compute_negative_log_likelihood(test, data_seed=1, verbose=False)
timed("stationary_gp", lambda: sgp(False))
timed("stationary_gp_iterative", lambda: sgp(True))
if args["pixelcnn"]:
    p = args["pixelcnn"]
    def pcnn():
        m = PixelCNN(num_hidden_channels=p["hidden"], num_mixture_components=p["n_mix"])
        m.fit(train, learning_rate=p["lr"], max_epochs=p["max_epochs"], steps_per_epoch=p["steps_per_epoch"],
              patience=p["patience"], batch_size=p["batch_size"], model_seed=0, data_seed=0, verbose=False)
        out["pixelcnn_epochs"] = len(m.val_loss_history) - 1
        return m.compute_negative_log_likelihood(test, data_seed=1, verbose=False)
    timed("pixelcnn", pcnn)
open(d + "/ref.json", "w").write(json.dumps(out))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref-python", default=".venv-ref/bin/python")
    ap.add_argument("--out", default="runs/bench-ideal.json")
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--photons", type=float, default=100.0)
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--pixelcnn-hidden", type=int, default=32)
    ap.add_argument("--pixelcnn-mix", type=int, default=10)
    ap.add_argument("--pixelcnn-epochs", type=int, default=10)
    ap.add_argument("--pixelcnn-steps", type=int, default=50)
    ap.add_argument("--no-pixelcnn", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from lmlab.imaging import (FullGaussian, PixelCNN, PixelCNNConfig, StationaryGaussianProcess, add_poisson_noise,
                               load_objects, poisson_conditional_entropy_per_image, random_patches)

    # identical measurements: grey photo patches through an ideal lens, Poisson noise at `photons`
    imgs = load_objects("sample_images", color=False, downsample=2)
    rng = np.random.default_rng(0)
    x_train = random_patches(imgs, args.n_train, args.patch, rng, rows=(0, 0.75))[:, 0]
    x_test = random_patches(imgs, args.n_test, args.patch, rng, rows=(0.75, 1))[:, 0]
    scale = args.photons / float(x_train.mean())
    g = torch.Generator().manual_seed(0)
    y_train = add_poisson_noise(x_train * scale, g).numpy().astype(np.float32)
    y_test = add_poisson_noise(x_test * scale, g).numpy().astype(np.float32)
    h_cond = float(poisson_conditional_entropy_per_image(x_test * scale).mean())
    pcfg = PixelCNNConfig(hidden=args.pixelcnn_hidden, n_mix=args.pixelcnn_mix, max_epochs=args.pixelcnn_epochs,
                          steps_per_epoch=args.pixelcnn_steps, patience=args.pixelcnn_epochs)

    ours: dict[str, dict] = {}

    def timed(name: str, fn) -> None:  # noqa: ANN001
        t = time.perf_counter()
        nll = fn()
        ours[name] = {"nll": float(nll.mean()), "seconds": time.perf_counter() - t}
        boot = np.random.default_rng(0).integers(0, len(nll), (1000, len(nll)))
        means = nll.numpy()[boot].mean(1)
        ours[name]["ci95"] = [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]

    timed("full_gaussian", lambda: FullGaussian().fit(y_train).nll(y_test))
    timed("stationary_gp", lambda: StationaryGaussianProcess().fit(y_train).nll(y_test))
    timed("stationary_gp_iterative", lambda: StationaryGaussianProcess().fit(y_train, iterative=True).nll(y_test))
    if not args.no_pixelcnn:
        timed("pixelcnn", lambda: PixelCNN(pcfg).fit(y_train).nll(y_test))

    ref: dict = {}
    ref_error = None
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/train.npy", y_train)
        np.save(f"{d}/test.npy", y_test)
        (Path(d) / "args.json").write_text(json.dumps({"pixelcnn": None if args.no_pixelcnn else {
            "hidden": pcfg.hidden, "n_mix": pcfg.n_mix, "lr": pcfg.lr, "max_epochs": pcfg.max_epochs,
            "steps_per_epoch": pcfg.steps_per_epoch, "patience": pcfg.patience, "batch_size": pcfg.batch_size}}))
        (Path(d) / "ref.py").write_text(REF_SCRIPT)
        env = {"OMP_NUM_THREADS": str(args.threads), "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false "
               f"intra_op_parallelism_threads={args.threads}", "TF_NUM_INTRAOP_THREADS": str(args.threads),
               "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu",
               "PATH": "/usr/bin:/bin"}
        try:
            proc = subprocess.run([args.ref_python, f"{d}/ref.py", d], capture_output=True, text=True, env=env,
                                  timeout=1800)
            if proc.returncode == 0:
                ref = json.loads((Path(d) / "ref.json").read_text())
            else:
                ref_error = proc.stderr.strip().splitlines()[-5:]
        except (OSError, subprocess.TimeoutExpired) as e:
            ref_error = [str(e)]

    ln2 = math.log(2)
    agreement, goals = {}, {}
    for name, o in ours.items():
        if name not in ref:
            continue
        r = ref[name]
        mi_o, mi_r = (o["nll"] - h_cond) / ln2, (r["nll"] - h_cond) / ln2
        agreement[name] = {"h_y_rel_diff": abs(o["nll"] - r["nll"]) / abs(r["nll"]),
                           "mi_rel_diff": abs(mi_o - mi_r) / abs(mi_r), "h_y_ours": o["nll"], "h_y_ref": r["nll"],
                           "mi_bits_ours": mi_o, "mi_bits_ref": mi_r,
                           "time_ratio_ref_over_ours": r["seconds"] / max(o["seconds"], 1e-9)}
        if name == "pixelcnn":
            lo, hi = o["ci95"]
            goals[name] = {"goal": "reference test NLL inside our bootstrap 95% CI", "ci95_ours": o["ci95"],
                           "met": bool(lo <= r["nll"] <= hi)}
        else:
            goals[name] = {"goal": "relative difference of Î <= 2%",
                           "met": bool(agreement[name]["mi_rel_diff"] <= 0.02)}
    result = {"agreement": agreement, "goals": goals, "ours": ours, "reference": ref, "reference_error": ref_error,
              "h_y_given_x": h_cond, "units": "nats/pixel (H), bits/pixel (Î)",
              "data": {"patch": args.patch, "photons": args.photons, "n_train": args.n_train, "n_test": args.n_test,
                       "source": "sklearn sample_images, grey, downsampled x2, Poisson noise"},
              "pixelcnn": None if args.no_pixelcnn else pcfg.__dict__ | {"dilations": list(pcfg.dilations)},
              "threads": args.threads, "device": "cpu"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"agreement": agreement, "goals": goals, "reference_error": ref_error}, indent=2))


if __name__ == "__main__":
    main()
