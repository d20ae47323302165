# Lets pytest run these tests from the source tree without installing the
# package: an installed kvcodec wins; otherwise bindings/python is added to
# the path.
import sys
from pathlib import Path

try:
    import kvcodec  # noqa: F401
except ImportError as e:
    if "shared library not found" in str(e):
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
