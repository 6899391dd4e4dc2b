"""auditkit: radioactive marking of image datasets and signed p-value audits of suspect models.

Implements "Radioactive Data: Tracing Through Training" (Sablayrolles et al., ICML 2020)
as a library; :mod:`auditkit.cli` is a thin command-line layer over it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("auditkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from auditkit.errors import AuditkitError

__all__ = ["AuditkitError", "__version__"]
