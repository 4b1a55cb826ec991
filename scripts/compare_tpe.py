#!/usr/bin/env python3
"""Compares the tuner's Bayesian optimisation with random search and Optuna's TPE (what the
reference implementation used) on the same proxy objective, over several seeds.

For each seed it runs `dynamicrad tune` (BO + random search; skipped when the seed's trials.csv
exists and --reuse is given), then runs TPE through `dynamicrad tune --evaluate -` (one JSON request
per line, one JSON result per line: no Python bindings needed) with the search space printed by
`dynamicrad tune --space`. It writes <out>/seed-N/tpe.csv in the trials-CSV format, prints a
Markdown table of the mean best loss per cell and method, checks the acceptance rule (BO within 2%
of a 200-trial random search's best, averaged over seeds) and draws the mean curves with
`dynamicrad tune --plot`.

Needs python3 and optuna (pip install -r scripts/requirements-compare.txt); optuna is not a build
or CI dependency. Extra `dynamicrad tune` flags (geometry, --scene, --target-sparsity, ...) go after
`--` and are passed to every call.

    scripts/compare_tpe.py --cli build/dynamicrad --seeds 1,2,3,4,5 --out-dir tune-compare
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

REGIMES = ["low", "mid", "high"]
MODES = ["static-ratio", "dynamic-threshold"]
PARAM_COLUMNS = ["gamma", "lambda", "theta_m", "theta_c", "dense_adjacent", "r_near", "r_far",
                 "tau_near_rel", "tau_far_rel"]
HEADER = (["cell", "regime", "mode", "method", "trial"] + PARAM_COLUMNS +
          ["loss", "error", "sparsity", "relative_l2", "eval_seconds", "suggest_seconds"])


def run_tune(cli, seed, args, extra):
    out = os.path.join(args.out_dir, "seed-%d" % seed)
    if args.reuse and os.path.exists(os.path.join(out, "trials.csv")):
        return
    cmd = [cli, "tune", "--seed", str(seed), "--trials", str(args.trials),
           "--random-baseline", str(args.random), "--out-dir", out] + extra
    print("running:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def run_tpe(cli, seed, args, extra, space):
    import optuna  # imported here so that --no-tpe works without it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = os.path.join(args.out_dir, "seed-%d" % seed, "tpe.csv")
    if args.reuse and os.path.exists(path):
        return
    server = subprocess.Popen([cli, "tune", "--evaluate", "-"] + extra, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, bufsize=1)
    rows = []
    try:
        for regime in REGIMES:
            for mode in MODES:
                def objective(trial):
                    params = {}
                    for p in space[mode]:
                        if p["kind"] == "boolean":
                            params[p["name"]] = trial.suggest_categorical(p["name"], [False, True])
                        else:
                            params[p["name"]] = trial.suggest_float(
                                p["name"], p["lo"], p["hi"], log=p["scale"] == "log")
                    server.stdin.write(json.dumps(
                        {"regime": regime, "mode": mode, "params": params}) + "\n")
                    server.stdin.flush()
                    result = json.loads(server.stdout.readline())
                    row = {"cell": "%s/%s" % (regime, mode), "regime": regime, "mode": mode,
                           "method": "tpe", "trial": trial.number + 1,
                           "eval_seconds": result["seconds"], "suggest_seconds": ""}
                    for name in PARAM_COLUMNS:
                        value = params.get(name, "")
                        row[name] = ("true" if value else "false") if isinstance(value, bool) else value
                    for key in ["loss", "error", "sparsity", "relative_l2"]:
                        row[key] = result[key]
                    rows.append(row)
                    return result["loss"]

                study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
                study.optimize(objective, n_trials=args.trials)
                print("seed %d %s/%s: TPE best %.5g" % (seed, regime, mode, study.best_value),
                      file=sys.stderr)
    finally:
        server.stdin.close()
        server.wait()
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)


def best_curves(path):
    """{(cell, method): best-so-far list} of one trials CSV."""
    curves = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            curve = curves.setdefault((row["cell"], row["method"]), [])
            loss = float(row["loss"])
            curve.append(loss if not curve else min(curve[-1], loss))
    return curves


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cli", default="build/dynamicrad")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--random", type=int, default=200)
    parser.add_argument("--out-dir", default="tune-compare")
    parser.add_argument("--reuse", action="store_true", help="keep existing per-seed results")
    parser.add_argument("--no-tpe", action="store_true", help="skip TPE (no optuna needed)")
    parser.add_argument("extra", nargs="*", help="flags for every `dynamicrad tune` call (after --)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    cli = os.path.abspath(args.cli)
    os.makedirs(args.out_dir, exist_ok=True)

    space = json.loads(subprocess.run([cli, "tune", "--space"] + args.extra, check=True,
                                      capture_output=True, text=True).stdout)
    started = time.time()
    for seed in seeds:
        run_tune(cli, seed, args, args.extra)
        if not args.no_tpe:
            run_tpe(cli, seed, args, args.extra, space)

    # Mean best loss per cell and method over the seeds.
    per_seed = []
    files = []
    for seed in seeds:
        curves = {}
        for name in ["trials.csv", "tpe.csv"]:
            path = os.path.join(args.out_dir, "seed-%d" % seed, name)
            if os.path.exists(path):
                curves.update(best_curves(path))
                files.append(path)
        per_seed.append(curves)

    def mean_at(cell, method, n):
        values = [c[(cell, method)][min(n, len(c[(cell, method)])) - 1]
                  for c in per_seed if (cell, method) in c]
        return sum(values) / len(values) if values else float("nan")

    t = args.trials
    print("| cell | BO @%d | TPE @%d | random @%d | random @%d | BO / random@%d | within 2%% |" %
          (t, t, t, args.random, args.random))
    print("| --- | --- | --- | --- | --- | --- | --- |")
    met = True
    for regime in REGIMES:
        for mode in MODES:
            cell = "%s/%s" % (regime, mode)
            bo, tpe = mean_at(cell, "bo", t), mean_at(cell, "tpe", t)
            r30, rall = mean_at(cell, "random", t), mean_at(cell, "random", args.random)
            ok = bo <= 1.02 * rall
            met = met and ok
            print("| %s | %.5f | %.5f | %.5f | %.5f | %.3f | %s |" %
                  (cell, bo, tpe, r30, rall, bo / rall, "yes" if ok else "no"))
    print("\nseeds %s; acceptance (BO within 2%% of random@%d in every cell): %s; %.0f s" %
          (args.seeds, args.random, "met" if met else "NOT met", time.time() - started))

    png = os.path.join(args.out_dir, "convergence-mean.png")
    subprocess.run([cli, "tune", "--plot", ",".join(files), "--png", png, "--plot-trials", str(t),
                    "--title", "mean best loss over %d seeds: BO vs TPE vs random search" %
                    len(seeds)], check=True, stdout=subprocess.DEVNULL)
    print("curves:", png)


if __name__ == "__main__":
    main()
