"""Data: sources, splits, decoding, caches, loaders. The sources defined in modules of their own register here
(importing them; `datasets` itself is imported only when dataset=hf loads)."""

from cvrun.data import csv_source  # noqa: F401  (registers dataset=csv)
from cvrun.data import hf_source  # noqa: F401  (registers dataset=hf)
from cvrun.data import shards  # noqa: F401  (registers dataset=shards)
