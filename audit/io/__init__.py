"""Decoding and caching images (:mod:`audit.io.decode`, :mod:`audit.io.tensor_cache`)."""

from audit.io.heif import enable as _enable_heif

# HEIF/HEIC through pillow-heif where it is installed; here so that worker processes, which import
# audit.io.decode, register it too (a no-op without pillow-heif).
_enable_heif()
