"""common.memory.keep_freed_memory: accepted on glibc, and harmless to call twice."""

import platform

import pytest

from common.memory import keep_freed_memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_freed_memory_is_accepted_on_glibc():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True


def test_gcsan_and_mpm_mains_use_it():
    import gcsan.main
    import mpm.main

    assert gcsan.main.keep_freed_memory is keep_freed_memory
    assert mpm.main.keep_freed_memory is keep_freed_memory
