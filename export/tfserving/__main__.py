"""``python -m export.tfserving [OUTPUT]``: compiles the loader program (to OUTPUT,
or to the cache) and prints its path."""

import sys

from export.tfserving import LoaderError, build_loader

if __name__ == "__main__":
    try:
        print(build_loader(sys.argv[1] if len(sys.argv) > 1 else None))
    except LoaderError as err:
        sys.exit(f"error: {err}")
