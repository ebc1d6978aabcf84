"""Give the memory freed by a closed runtime session back to the operating system.

A build evaluates one runner after another at 224² (verify/compare.py `_evaluated`), each allocating and
freeing gigabytes of batch buffers. glibc keeps freed blocks in its heaps, fragmented, so the process's
resident set grew with the number of batches evaluated: focalnet_tiny_srf with three targets peaked in
its verify stage at 2,628 MB with 200 eval images and 3,239 MB with 1,000. malloc_trim(0) returns every
free page of every heap to the kernel."""
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
