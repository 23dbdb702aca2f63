"""The package's own warning class (tests turn it into errors)."""


class AuditWarning(UserWarning):
    """A handled problem worth telling the user about (a file skipped, a setting adjusted)."""
