"""Ship the package to Spark: ``fraudlab`` zipped for ``spark-submit --py-files``.

The DAGs zip it when a run starts (never at parse time), so every run ships the code
as it is in the checkout or the image.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: The folder holding the ``fraudlab`` package (and the apps).
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def zip_package(folder: str | Path) -> str:
    """Write ``<folder>/fraudlab.zip`` (``fraudlab/...`` inside, as ``--py-files`` needs it); return its path."""
    base = Path(folder) / "fraudlab"
    base.parent.mkdir(parents=True, exist_ok=True)
    return shutil.make_archive(str(base), "zip", root_dir=PACKAGE_ROOT, base_dir="fraudlab")
