"""The one exception root of auditkit.

Every error a user can cause (bad input, missing file, wrong key permissions, a registry
from another version) is raised as an :class:`AuditkitError` whose message says what is
wrong and what to do. The CLI prints that message on one line and exits non-zero.
"""


class AuditkitError(Exception):
    """A problem the user can fix; ``str(error)`` is a one-line diagnostic."""


class VerificationError(AuditkitError):
    """A signed report failed verification (tampered, wrong key, malformed)."""
