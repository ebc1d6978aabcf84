"""Give the memory freed by a closed runtime session back to the operating system.

A build quantizes for each target and evaluates one runner after another (verify/compare.py `_evaluated`),
each allocating and freeing gigabytes at 224². glibc keeps freed blocks in its heaps, fragmented between
live ones, so what a stage freed stayed resident under the next: focalnet_tiny_srf with three targets and
1,000 eval images entered verify at 2,749 MB, and at 2,123 MB with a trim as each stage ends (its verify
peak 3,239 → 2,997 MB). malloc_trim(0) returns every free page of every heap to the kernel."""
from __future__ import annotations

import ctypes
import sys


def release_freed_memory() -> bool:
    """malloc_trim(0) where the C library is glibc; True when it ran. Elsewhere (macOS, musl, Windows) a no-op:
    their allocators return memory on their own terms and have no such call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        # the symbols this process already loaded: ctypes.util.find_library would fork ldconfig each call, and
        # a forked child of a gigabytes-large build counts its copy-on-write pages in the sampled tree
        trim = ctypes.CDLL(None).malloc_trim  # glibc only: musl has no malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True
