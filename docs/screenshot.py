"""Make docs/report.png, the README's picture of a report, from a real run: launch the
fig1-difficulty preset on digits through the CLI, write its report, and capture the top of the
page in headless Chromium.

    python docs/screenshot.py [--chromium PATH] [--seeds 100]

Needs the `[train]` install (the launch) and Chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SWEEP = [sys.executable, "-m", "sweep.cli"]


def run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"docs/screenshot.py: `{' '.join(argv)}` failed:\n{proc.stderr[-2000:]}")


def capture(chromium: str, page: Path, out: Path, width: int, height: int) -> None:
    """The top `height` pixels of `page` at `width`, after its plotly figures have drawn, kept in
    64 colours (a third of the bytes of the full-colour image, with no visible loss)."""
    from PIL import Image  # Pillow comes with torchvision

    run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            "--virtual-time-budget=10000",
            f"--screenshot={out}",
            page.as_uri(),
        ]
    )
    Image.open(out).convert("RGB").quantize(colors=64).save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--out", type=Path, default=HERE / "report.png")
    args = parser.parse_args()
    if not args.chromium:
        sys.exit("docs/screenshot.py: no Chromium found: install it (apt-get install chromium) or pass --chromium")
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        run(
            [
                *SWEEP,
                "launch",
                "fig1-difficulty",
                "--dataset",
                "digits",
                "--set",
                f"seeds={args.seeds}",
                "--results",
                str(results),
            ]
        )
        run([*SWEEP, "report", "fig1-difficulty", "--results", str(results)])
        capture(args.chromium, results / "fig1-difficulty" / "report.html", args.out, 1280, 1800)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
