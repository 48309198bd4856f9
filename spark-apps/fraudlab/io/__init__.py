"""Reading and writing: files on any Hadoop file system, and the claims formats of the batch apps.

- :mod:`fraudlab.io.files`: small files, line reading, folders (local, HDFS, S3), re-exported here
  so ``from fraudlab import io; io.write_json(...)`` reads as before;
- :mod:`fraudlab.io.claims`: claims in and scored claims out, as Parquet, CSV or JSON lines.
"""

from fraudlab.io.files import (
    PublishError,
    exists,
    overlap,
    publishing,
    read_header,
    read_json,
    read_lines,
    read_text,
    skip_checksums,
    write_bytes,
    write_json,
    write_text,
)

__all__ = ["PublishError", "exists", "overlap", "publishing", "read_header", "read_json", "read_lines", "read_text",
           "skip_checksums", "write_bytes", "write_json", "write_text"]
