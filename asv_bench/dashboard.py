"""Record benchmark results and publish the asv dashboard.

Usage (from the repository root or anywhere)::

    python asv_bench/dashboard.py record              # this commit, installed package
    python asv_bench/dashboard.py record --range 5    # the last 5 commits (builds each)
    python asv_bench/dashboard.py publish             # write asv_bench/html/
    python asv_bench/dashboard.py preview             # serve it on http://127.0.0.1:8080

``publish`` also copies ``asv_bench/vendor`` (jQuery, flot, bootstrap, ...) into the site
and rewrites the CDN addresses asv writes, so the dashboard works offline.

``record`` without ``--range`` benchmarks the package installed in the running Python
(``asv run --python=same``) and files the results under the current commit
(``--set-commit-hash``); with ``--range N`` asv builds every commit of ``HEAD~N..HEAD`` in
its own virtual environment. ``--quick`` runs each benchmark once; ``--bench REGEX``
selects benchmarks; ``--config`` points at another asv.conf.json (the dashboard test
uses a temporary one).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor"

#: CDN address (as asv writes it) -> vendored copy, relative to the html folder.
CDN_TO_LOCAL = {
    "https://code.jquery.com/jquery-3.3.1.min.js": "vendor/js/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js":
        "vendor/js/jquery.flot.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js":
        "vendor/js/jquery.flot.time.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js":
        "vendor/js/jquery.flot.selection.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js":
        "vendor/js/jquery.flot.categories.js",
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        "vendor/js/jquery.flot.orderBars.js",
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js":
        "vendor/js/stupidtable.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js":
        "vendor/js/md5.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js":
        "vendor/js/bootstrap.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css":
        "vendor/css/bootstrap.min.css",
}


def html_dir(config: Path) -> Path:
    """The ``html_dir`` of an asv config (JSON with // comments)."""
    text = re.sub(r"^\s*//.*$", "", config.read_text(), flags=re.MULTILINE)
    return (config.parent / json.loads(text).get("html_dir", "html")).resolve()


def vendor_dependencies(html: Path) -> None:
    """Copy the vendored JS/CSS into ``html`` and point every page at the local copies.

    Raises RuntimeError when a page references a CDN address this script does not know
    (a newer asv): the dashboard would silently need the internet otherwise.
    """
    shutil.copytree(VENDOR, html / "vendor", dirs_exist_ok=True)
    for page in html.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        for cdn, local in CDN_TO_LOCAL.items():
            text = text.replace(cdn, local)
        # the CDN builds are minified, the vendored ones are npm's: drop the subresource
        # integrity hashes (the files are served from this repository, not a third party)
        text = re.sub(r'\s+(?:integrity|crossorigin)="[^"]*"', "", text)
        remote = re.findall(r'<(?:script|link|img)[^>]*(?:src|href)="(https?://[^"]+)"', text)
        if remote:
            raise RuntimeError(f"{page.name} still loads {remote}; add them to "
                               "asv_bench/vendor and CDN_TO_LOCAL")
        page.write_text(text, encoding="utf-8")


def _asv(config: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "asv", *args, "--config", str(config)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=config.parent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["record", "publish", "preview"])
    parser.add_argument("--config", type=Path, default=HERE / "asv.conf.json")
    parser.add_argument("--range", type=int, default=0, help="benchmark the last N commits")
    parser.add_argument("--quick", action="store_true", help="one run per benchmark")
    parser.add_argument("--bench", default=None, help="regular expression of benchmarks")
    args = parser.parse_args(argv)
    config = args.config.resolve()
    if args.action == "record":
        subprocess.run([sys.executable, "-m", "asv", "machine", "--yes"], check=True,
                       cwd=config.parent, stdout=subprocess.DEVNULL)
        extra = (["--quick"] if args.quick else []) + (["--bench", args.bench]
                                                        if args.bench else [])
        if args.range:
            _asv(config, "run", f"HEAD~{args.range}..HEAD", *extra)
        else:
            head = subprocess.run(["git", "rev-parse", "HEAD"], check=True, text=True,
                                  capture_output=True, cwd=HERE).stdout.strip()
            _asv(config, "run", "--python=same", "--set-commit-hash", head, *extra)
    elif args.action == "publish":
        _asv(config, "publish")
        vendor_dependencies(html_dir(config))
    else:
        _asv(config, "preview", "--port", "8080")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
