"""Install a trained run dir as the bundled model: copy model.pt and record its SHA-256.

Usage: python scripts/bundle_model.py runs/bundled
"""

import shutil
import sys
from pathlib import Path

from emovox.bundled import sha256

DEST = Path(__file__).resolve().parents[1] / "src" / "emovox" / "bundled_model"


def main(run_dir: str) -> None:
    src = Path(run_dir) / "model.pt"
    DEST.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, DEST / "model.pt")
    (DEST / "SHA256SUMS").write_text(f"{sha256(DEST / 'model.pt')}  model.pt\n")
    print(f"bundled {src} -> {DEST / 'model.pt'} ({(DEST / 'model.pt').stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(sys.argv[1])
