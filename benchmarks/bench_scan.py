"""Butler's credential scanner next to detect-secrets: precision, recall and throughput, in one run.

    pip install -e '.[bench]'                     # detect-secrets==1.5.0
    python benchmarks/bench_scan.py               # corpus accuracy + ~64 MB throughput tree
    python benchmarks/bench_scan.py --tree-mb 16  # a smaller tree
    python benchmarks/bench_scan.py --no-detect-secrets

Two corpora are scored: the one the rules were written with (benchmarks/scan_corpus.py) and a second one written
from other people's published formats and test cases (benchmarks/scan_corpus_public.py). Real code is measured
by benchmarks/bench_scan_real.py. Accuracy is judged per line: a tool "finds" a labelled secret when it reports
anything on that line, and every reported line without a labelled secret is a false positive. Both tools scan
the same corpus, written fresh from a fixed seed. detect-secrets runs as its CLI does
(`detect-secrets scan --all-files`, all plugins and default filters); its throughput is measured as that CLI
(which uses every core), and with --ds-single-process also in one process through its Python API. Butler uses
one process. On 2 cores the whole run takes about 7 minutes, nearly all of it detect-secrets on the tree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scan_corpus_public
from _common import machine
from scan_corpus import ALL_KINDS, SEED, generate, generate_tree

from butler_skill.core.scan import scan_text
from butler_skill.handlers.scan import ScanSecretsInput, collect
from butler_skill.scanning.sources import ScanStats, iter_files

Key = tuple[str, int]


def butler_predictions(corpus: Path) -> dict[Key, str]:
    found: dict[Key, str] = {}
    stats = ScanStats()
    for unit in iter_files(["files"], corpus, stats):
        for f in scan_text(unit.text, unit.path):
            found.setdefault((f.path, f.line), f.rule_id)
    return found


def detect_secrets_predictions(corpus: Path) -> dict[Key, str] | None:
    exe = Path(sys.executable).with_name("detect-secrets")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "detect_secrets"]
    try:
        proc = subprocess.run([*cmd, "scan", "--all-files", "files"], cwd=corpus, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"detect-secrets unavailable ({exc}); pip install detect-secrets==1.5.0", file=sys.stderr)
        return None
    found: dict[Key, str] = {}
    for filename, items in json.loads(proc.stdout)["results"].items():
        for item in items:
            found.setdefault((filename, int(item["line_number"])), item["type"])
    return found


def detect_secrets_version() -> str:
    try:
        from detect_secrets.__version__ import VERSION

        return str(VERSION)
    except ImportError:
        return "absent"


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "  -  "


class Scores:
    def __init__(self, labels: list[dict[str, object]], predicted: dict[Key, str]) -> None:
        self.positives: dict[Key, str] = {}
        self.negatives: dict[Key, str] = {}
        for label in labels:
            key = (str(label["path"]), int(str(label["line"])))
            (self.positives if label["positive"] else self.negatives)[key] = str(label["kind"])
        self.predicted = predicted
        self.tp = sum(1 for k in predicted if k in self.positives)
        self.fp = len(predicted) - self.tp
        self.fn = sum(1 for k in self.positives if k not in predicted)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def recall_by_kind(self) -> dict[str, tuple[int, int]]:
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for k, kind in self.positives.items():
            out[kind][1] += 1
            out[kind][0] += k in self.predicted
        return {kind: (v[0], v[1]) for kind, v in out.items()}

    def precision_by_rule(self) -> dict[str, tuple[int, int]]:
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for k, rule in self.predicted.items():
            out[rule][1] += 1
            out[rule][0] += k in self.positives
        return {rule: (v[0], v[1]) for rule, v in out.items()}

    def false_positives_by_category(self) -> Counter[str]:
        return Counter(self.negatives.get(k, "unlabelled") for k in self.predicted if k not in self.positives)


def print_accuracy(labels: list[dict[str, object]], butler: Scores, ds: Scores | None,
                   kinds: Iterable[str] = ALL_KINDS) -> None:
    rb, rd = butler.recall_by_kind(), ds.recall_by_kind() if ds else {}
    pb = butler.precision_by_rule()
    print("\nPer kind. Recall: labelled lines found. Precision: Butler's rule of that id (when one exists).")
    print(f"  {'rule':28s} {'n':>4s} {'Butler P':>9s} {'Butler R':>9s} {'d-s R':>7s}")
    for kind in kinds:
        found, n = rb.get(kind, (0, 0))
        tp, predicted = pb.get(kind, (0, 0))
        ds_found = rd.get(kind, (0, 0))[0] if ds else 0
        print(f"  {kind:28s} {n:4d} {_ratio(tp, predicted):>9s} {_ratio(found, n):>9s} "
              f"{_ratio(ds_found, n) if ds else '  -':>7s}")
    if ds:
        print("\ndetect-secrets per plugin: lines reported, of which labelled secrets, precision")
        for rule, (tp, predicted) in sorted(ds.precision_by_rule().items(), key=lambda kv: -kv[1][1]):
            print(f"  {rule:32s} {predicted:5d} {tp:5d} {_ratio(tp, predicted):>7s}")
    print("\nFalse positives by negative category (lines)")
    cats = sorted(set(butler.false_positives_by_category()) | set(ds.false_positives_by_category() if ds else {}))
    negs = Counter(str(label["kind"]) for label in labels if not label["positive"])
    print(f"  {'category':16s} {'labelled':>8s} {'Butler':>7s} {'d-s':>7s}")
    fb, fd = butler.false_positives_by_category(), ds.false_positives_by_category() if ds else Counter()
    for cat in sorted(set(cats) | set(negs)):
        print(f"  {cat:16s} {negs.get(cat, 0):8d} {fb.get(cat, 0):7d} {fd.get(cat, 0) if ds else '-':>7}")
    print("\nOverall (lines)")
    print(f"  {'tool':16s} {'TP':>5s} {'FP':>5s} {'FN':>5s} {'precision':>10s} {'recall':>8s}")
    rows: Iterable[tuple[str, Scores | None]] = (("butler", butler), ("detect-secrets", ds))
    for name, s in rows:
        if s is not None:
            print(f"  {name:16s} {s.tp:5d} {s.fp:5d} {s.fn:5d} {s.precision:10.4f} {s.recall:8.4f}")


def _tree_size(tree: Path) -> tuple[int, int]:
    files = [p for p in tree.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _time(fn: object, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def throughput(tree: Path, with_ds: bool, ds_single: bool) -> None:
    n_files, size = _tree_size(tree)
    mb = size / 1e6
    print(f"\nThroughput over a mixed tree: {n_files} files, {mb:.1f} MB (page cache warm; best of runs)")

    def butler_run() -> None:
        out = collect(SimpleNamespace(cwd=tree), ScanSecretsInput(paths=["."])).output()
        butler_run.findings = len(out.findings)  # type: ignore[attr-defined]

    butler_run()  # warm the page cache
    t = _time(butler_run, 3)
    print(f"  {'butler (1 process)':38s} {t:8.2f} s  {mb / t:8.1f} MB/s   findings {butler_run.findings}")  # type: ignore[attr-defined]
    if not with_ds:
        return
    exe = Path(sys.executable).with_name("detect-secrets")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "detect_secrets"]
    start = time.perf_counter()
    proc = subprocess.run([*cmd, "scan", "--all-files", "."], cwd=tree, capture_output=True, check=False)
    t_cli = time.perf_counter() - start
    n = sum(len(v) for v in json.loads(proc.stdout or b'{"results": {}}')["results"].values())
    print(f"  {f'detect-secrets CLI ({os.cpu_count()} processes)':38s} {t_cli:8.2f} s  {mb / t_cli:8.1f} MB/s   "
          f"findings {n}")
    if not ds_single:
        return
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    files = sorted(str(p) for p in tree.rglob("*") if p.is_file())
    with default_settings():
        start = time.perf_counter()
        n = sum(1 for f in files for _ in scan_file(f))
        t_api = time.perf_counter() - start
    print(f"  {'detect-secrets API (1 process)':38s} {t_api:8.2f} s  {mb / t_api:8.1f} MB/s   findings {n}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Butler scanner vs detect-secrets")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "scan")
    parser.add_argument("--tree-mb", type=int, default=64, help="size of the throughput tree (0: skip)")
    parser.add_argument("--seed", type=int, default=SEED, help="corpus seed (default: the published figures')")
    parser.add_argument("--public-seed", type=int, default=scan_corpus_public.SEED, help="second corpus' seed")
    parser.add_argument("--no-detect-secrets", action="store_true")
    parser.add_argument("--ds-single-process", action="store_true",
                        help="also time detect-secrets in one process through its API (slow: ~2x its CLI time)")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    print(f"detect-secrets {detect_secrets_version()}")
    corpus = args.out / "corpus"
    labels = generate(corpus, args.seed)
    n_pos = sum(1 for label in labels if label["positive"])
    n_files, size = _tree_size(corpus / "files")
    print(f"corpus (seed {args.seed}): {n_files} files, {size / 1e6:.2f} MB, {n_pos} labelled secrets, "
          f"{len(labels) - n_pos} labelled decoys")
    butler = Scores(labels, butler_predictions(corpus))
    ds_pred = None if args.no_detect_secrets else detect_secrets_predictions(corpus)
    ds = Scores(labels, ds_pred) if ds_pred is not None else None
    print_accuracy(labels, butler, ds)

    # The second corpus: written from other people's published formats, not with the rules (see its docstring).
    public = args.out / "corpus-public"
    labels = scan_corpus_public.generate(public, args.public_seed)
    n_pos = sum(1 for label in labels if label["positive"])
    n_files, size = _tree_size(public / "files")
    print(f"\n== second corpus, from published formats (seed {args.public_seed}): {n_files} files, "
          f"{size / 1e6:.2f} MB, {n_pos} labelled secrets, {len(labels) - n_pos} labelled decoys")
    butler = Scores(labels, butler_predictions(public))
    ds_pred = None if args.no_detect_secrets else detect_secrets_predictions(public)
    ds = Scores(labels, ds_pred) if ds_pred is not None else None
    print_accuracy(labels, butler, ds, scan_corpus_public.ALL_KINDS)

    if args.tree_mb > 0:
        tree = args.out / "tree"
        marker = args.out / "tree.mb"
        if not tree.exists() or not marker.exists() or marker.read_text() != str(args.tree_mb):
            generate_tree(tree, args.tree_mb)
            marker.write_text(str(args.tree_mb))
        throughput(tree, ds is not None, args.ds_single_process)


if __name__ == "__main__":
    main()
