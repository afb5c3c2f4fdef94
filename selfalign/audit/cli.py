"""`selfalign`: commands for planning and auditing a run.

    selfalign plan [--json]        what `dvc repro` would run now: per stage its work, time and memory
    selfalign trace ID [--json]    print a record's chain back to the seeds it came from
    selfalign report [--out DIR]   an HTML data report of the run: funnel, lengths, citations, eval
    selfalign timings [--write F]  wall time and peak memory per stage, from Snakemake's benchmark records
    selfalign readme [--check]     rewrite (or only compare) the README's result tables from the run

Every command takes --root DIR, the pipeline's folder (default: .).
"""
from __future__ import annotations

import argparse
import json
import sys

from selfalign.audit.lineage import Index, shorten
from selfalign.core.files import InputError


def plan(args) -> int:
    from selfalign.plan import plan as p

    parallel = args.parallel
    if args.profile:
        from selfalign.core.files import read_yaml

        parallel = int((read_yaml(f"{args.profile}/config.yaml") or {}).get("jobs", 1))
    result = p.build(args.root, rates_file=args.rates, parallel=parallel, stages=args.stages,
                     gpu_memory=args.gpu_memory)
    p.save(args.root, result)
    print(json.dumps(result, indent=2) if args.json else p.text(result))
    return 1 if result["problems"] else 0


def trace(args) -> int:
    index = Index(args.root)
    chain = index.chain(args.id)
    if args.json:
        print(json.dumps([index.describe(n) | {"depth": d} for d, n in chain], indent=2, ensure_ascii=False))
        return 0
    for depth, node in chain:
        info = index.describe(node)
        pad = "  " * depth
        print(f"{pad}{node.id}  [{node.stage}]  {node.file}@{info['git_revision'] or 'worktree'}"
              + (f" md5 {info['file_md5'][:8]}" if info["file_md5"] else ""))
        print(f"{pad}  {shorten(node.text)!r}")
        if "model" in info:
            print(f"{pad}  model {info['model']}  decoding {json.dumps(info['decoding'], sort_keys=True)}"
                  + (f"  engine {json.dumps(info['engine'], sort_keys=True)}" if "engine" in info else ""))
        if "principles_version" in info:
            print(f"{pad}  principles {info['principles_version']}  cited {info.get('cited')}")
    return 0


def report(args) -> int:
    from selfalign.audit.report import build

    page = build(args.root, args.out, rules=not args.no_rules)
    print(f"wrote {page}")
    return 0


def timings(args) -> int:
    from selfalign.audit import timings as t

    snap = t.write_snapshot(args.root, args.write) if args.write else t.snapshot(args.root)
    print(t.markdown(snap))
    if args.write:
        print(f"wrote {args.write}")
    return 0


def readme(args) -> int:
    from selfalign.audit import readme as r

    current = r.update(args.readme, args.root, check=args.check)
    if args.check and not current:
        print(f"selfalign: {args.readme}'s tables differ from the metrics and timings of the run in {args.root}; "
              "run `selfalign readme` to rewrite them", file=sys.stderr)
        return 1
    print(f"{args.readme}: tables {'current' if current else 'rewritten'}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="selfalign", description="Plan and audit a SELF-ALIGN pipeline run.")
    sub = ap.add_subparsers(dest="command", required=True)

    def command(name: str, func, help: str):
        c = sub.add_parser(name, help=help)
        c.add_argument("--root", default=".", help="the pipeline's folder (default: .)")
        c.set_defaults(func=func)
        return c

    pl = command("plan", plan, "what `dvc repro` would run now, and its tokens, time and memory (no model is loaded)")
    pl.add_argument("--json", action="store_true", help="machine-readable output (schemas/plan.schema.json)")
    pl.add_argument("--rates", metavar="FILE", help="a timings snapshot to take rates from (`selfalign timings --write`, "
                    "e.g. from a GPU run); default: this folder's last run, else bench/pipeline_timings.json")
    pl.add_argument("--parallel", type=int, default=1, metavar="N", help="jobs that run at once (GPUs, nodes; default 1)")
    pl.add_argument("--profile", metavar="DIR", help="a Snakemake profile (e.g. profiles/slurm): its `jobs` run at once")
    pl.add_argument("--stages", nargs="+", metavar="STAGE", help="plan these stages instead of the ones dvc would run")
    pl.add_argument("--gpu-memory", type=float, metavar="GB", help="plan memory per GPU for GPUs of GB each (e.g. 80), "
                    "not necessarily this machine's; default: this machine's CUDA device, else its CPU memory")
    t = command("trace", trace, "print a record's lineage back to its seeds")
    t.add_argument("id")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    r = command("report", report, "write an HTML data report of the run")
    r.add_argument("--out", default="report", help="output folder (default: report/)")
    r.add_argument("--no-rules", action="store_true", help="skip Snakemake's --report of the rules")
    m = command("timings", timings, "wall time and peak memory per stage of the last run (benchmarks/)")
    m.add_argument("--write", metavar="FILE", help="also save them as a JSON snapshot (e.g. bench/pipeline_timings.json)")
    d = command("readme", readme, "rewrite the README's result tables from metrics/, bench/pipeline_timings.json and bench/quality.json")
    d.add_argument("--check", action="store_true", help="only compare; exit 1 when the README is out of date")
    d.add_argument("--readme", default="README.md", help="the README to rewrite (default: README.md)")
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except InputError as e:
        print(f"selfalign: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
