"""Data sets, splits and input pipelines for tfrec."""

from tfrec.data.datasets import (
    DATASETS,
    DataError,
    DatasetSpec,
    Interactions,
    RemoteFile,
    dataset_dir,
    git_blob_sha1,
    list_datasets,
    load_interactions,
    merge_duplicates,
    read_ratings_file,
    sha256_file,
    source_files,
    verify_file,
)
from tfrec.data.splits import (
    Split,
    leave_one_out,
    load_split,
    ncf_split,
    ncf_validation,
    random_split,
)

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetSpec",
    "Interactions",
    "RemoteFile",
    "Split",
    "dataset_dir",
    "git_blob_sha1",
    "leave_one_out",
    "list_datasets",
    "load_interactions",
    "load_split",
    "merge_duplicates",
    "ncf_split",
    "ncf_validation",
    "random_split",
    "read_ratings_file",
    "sha256_file",
    "source_files",
    "verify_file",
]
