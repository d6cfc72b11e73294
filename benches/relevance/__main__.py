"""``python -m benches.relevance [--quick] [options]``: run the benchmark, write JSON, docs and plots."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from benches.relevance.report import (
    compare,
    markdown,
    plot,
    summarise_j4,
    summarise_track,
    write_section,
)
from benches.relevance.runner import QUICK, Benchmark, BenchSettings
from benches.relevance.sanity import SanityError
from benches.relevance.seeds import MEAN_SUFFIX, group_of, seed_groups, seed_summary
from benches.relevance.verdict import ceiling, targets_met, verdict
from benches.relevance.wm_methods import world_model_scorers
from worldmodel.checkpoint import atomic_write_json
from worldmodel.run import package_version

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benches.relevance", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny CI-sized run (< 1 minute)")
    p.add_argument("--cache-dir", type=Path, default=ROOT / "benches" / ".cache" / "relevance")
    p.add_argument(
        "--out", type=Path, default=None, help="results JSON (default benches/results/relevance*.json)"
    )
    p.add_argument(
        "--docs", type=Path, default=None, help="markdown file whose Relevance section is rewritten"
    )
    p.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img")
    p.add_argument("--test-per-track", type=int, default=None, help="instances of the primary track")
    p.add_argument("--long-per-track", type=int, default=None, help="instances of the long track")
    p.add_argument("--n-j4", type=int, default=None)
    p.add_argument(
        "--cut-seed",
        type=int,
        default=None,
        help="draw the test cuts with this seed (a replicate; same models, writes relevance_cut<N>.json "
        "and leaves the docs alone)",
    )
    p.add_argument("--lm-steps", type=int, default=None, help="training steps of the scorer LM")
    p.add_argument(
        "--lm-seeds", type=int, default=None, help="scorer LMs (self-information, contrast) with seeds 0..N-1"
    )
    p.add_argument("--judge-steps", type=int, default=None, help="training steps of the J2 judge LM")
    p.add_argument(
        "--judge-compressed",
        type=float,
        default=None,
        help="share of the judge's training batches given as compressed contexts before intact turns",
    )
    p.add_argument(
        "--world-model",
        default=None,
        help="DialogueWorldModel directory for the world-model methods ('none' to skip)",
    )
    p.add_argument(
        "--wm-methods",
        default="fast,exact,reuse,reuse_seed1,reuse_seed2,hybrid,hybrid_seed1,hybrid_seed2",
        help="world-model methods to run (comma list; reuse_seed<k> / hybrid_seed<k>: with the reuse "
        "head trained with seed k)",
    )
    p.add_argument(
        "--wm-instances", type=int, default=None, help="run the world-model methods on the first N instances"
    )
    p.add_argument(
        "--wm-tracks", default="primary,long", help="tracks for wm_fast/exact/hybrid (wm_reuse runs on all)"
    )
    p.add_argument("--only", default="", help="evaluate only these methods into the cache (no report)")
    p.add_argument("--candidate", default=None, help="method compared against every baseline")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> BenchSettings:
    s = QUICK if args.quick else BenchSettings()
    changes = {
        k: v
        for k, v in (
            ("test_per_track", args.test_per_track),
            ("long_per_track", args.long_per_track),
            ("n_j4", args.n_j4),
            ("lm_seeds", args.lm_seeds),
            ("cut_seed", args.cut_seed),
        )
        if v is not None
    }
    if args.lm_steps is not None:
        changes["lm"] = dataclasses.replace(s.lm, steps=args.lm_steps)
    if args.judge_steps is not None:
        changes["judge"] = dataclasses.replace(s.judge, steps=args.judge_steps)
    if args.judge_compressed is not None:
        if not 0.0 <= args.judge_compressed <= 1.0:
            raise SystemExit(f"--judge-compressed must be in [0, 1], got {args.judge_compressed}")
        judge = changes.get("judge", s.judge)
        changes["judge"] = dataclasses.replace(judge, compressed=args.judge_compressed)
    for key, value in changes.items():
        least = 0 if key == "cut_seed" else 1
        if isinstance(value, int) and value < least:
            raise SystemExit(f"--{key.replace('_', '-')} must be >= {least}, got {value}")
    return dataclasses.replace(s, **changes)


def results_name(settings: BenchSettings) -> str:
    """The default results file: ``relevance.json``, ``relevance_quick.json`` or ``relevance_cut<N>.json``."""
    quick = "_quick" if settings.quick else ""
    cut = "" if settings.cut_seed is None else f"_cut{settings.cut_seed}"
    return f"relevance{quick}{cut}.json"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = settings_from(args)
    methods = tuple(m for m in args.wm_methods.split(",") if m)
    extra = (
        ()
        if args.world_model == "none"
        else tuple(
            world_model_scorers(
                args.world_model, methods, args.wm_instances, tuple(args.wm_tracks.split(","))
            )
        )
    )
    try:
        raw = Benchmark(settings, args.cache_dir, extra).run(tuple(m for m in args.only.split(",") if m))
    except SanityError as err:
        out = args.out or ROOT / "benches" / "results" / results_name(settings)
        atomic_write_json(out, {"status": f"stopped: {err.args[0]}", "sanity": err.args[1]})
        raise SystemExit(f"benchmark stopped, no numbers reported: {err.args[0]} (see {out})") from None
    if args.only:
        print(
            json.dumps({"cached": {t: list(m) for t, m in raw["tracks"].items()} | {"j4": list(raw["j4"])}})
        )
        return raw
    names = [sc.name for sc in extra]
    preferred = [m for m in ("wm_hybrid", "wm_reuse") if m in names]  # the recommended method first
    candidate = args.candidate or (preferred or names or ["contrast"])[0]
    if not args.candidate and f"{candidate}_seed1" in names:
        candidate += MEAN_SUFFIX  # a learned method is judged on its seed mean; each seed is reported too
    n, seed = settings.n_resamples, settings.seed
    summary = {
        "command": "python -m benches.relevance " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "status": "ok",
        "version": package_version(),
        "settings": dataclasses.asdict(settings),
        "sizes": raw["sizes"],
        "sanity": raw["sanity"],
        "n_resamples": n,
        "random_seeds": settings.random_seeds,
        "candidate": candidate,
        "tracks": {t: summarise_track(m, n, seed) for t, m in raw["tracks"].items()},
        "j4": summarise_j4(raw["j4"], n, seed),
    }
    summary["comparisons"] = compare(raw, candidate, n, seed)
    summary["verdict_at_0.25"] = verdict(summary["comparisons"])
    summary["seeds"] = seed_summary(summary)
    if candidate.endswith(MEAN_SUFFIX):
        members = seed_groups(raw["j4"]).get(group_of(candidate), [])
        summary["seed_verdicts"] = {m: targets_met(verdict(compare(raw, m, n, seed))) for m in members}
    if "oracle" in raw["tracks"].get("primary", {}):
        summary["ceiling_at_0.25"] = ceiling(compare(raw, "oracle", n, seed))
    out = args.out or ROOT / "benches" / "results" / results_name(settings)
    atomic_write_json(out, summary)
    protocol = not args.quick and settings.cut_seed is None
    docs = args.docs if args.docs is not None else (ROOT / "docs" / "benchmarks.md" if protocol else None)
    if docs is not None:
        pngs = plot(summary, args.img_dir)
        rel = [os.path.relpath(p, docs.parent) for p in pngs]
        write_section(docs, markdown(summary, summary["command"], rel))
    print(
        json.dumps(
            {
                "out": str(out),
                "sizes": raw["sizes"],
                "candidate": candidate,
                "verdict_at_0.25": summary["verdict_at_0.25"],
            },
            indent=1,
        )
    )
    return summary


if __name__ == "__main__":
    main()
