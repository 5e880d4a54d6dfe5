"""minirun.linux builds its few C types on _ctypes instead of importing ctypes
(start latency); here they are held against ctypes' own, and the module is shown
to work without ctypes imported."""

import ctypes
import os
import subprocess
import sys

import pytest

from minirun import linux


@pytest.mark.parametrize("ours, theirs", [(linux.c_int, ctypes.c_int), (linux.c_uint, ctypes.c_uint),
                                          (linux.c_long, ctypes.c_long), (linux.c_ulong, ctypes.c_ulong),
                                          (linux.c_ulong, ctypes.c_size_t), (linux.c_ulong, ctypes.c_uint64),
                                          (linux.c_ushort, ctypes.c_ushort), (linux.c_char, ctypes.c_char)])
def test_types_match_ctypes(ours, theirs):
    assert ctypes.sizeof(ours) == ctypes.sizeof(theirs)
    assert ours._type_ == theirs._type_ or ctypes.sizeof(ours) == ctypes.sizeof(theirs) == 8
    if ours is not linux.c_char:
        for value in (0, 1, 2**31 - 1, 2**32 + 5, -1):
            assert ours(value).value == theirs(value).value


def test_sock_fprog_is_laid_out_as_the_kernel_reads_it():
    """struct sock_fprog: unsigned short len, then (aligned) the filter pointer."""
    prog = linux._SockFprog(3, 0x1122334455667788)
    assert ctypes.sizeof(prog) == 16
    assert bytes(prog) == (3).to_bytes(2, "little") + bytes(6) + (0x1122334455667788).to_bytes(8, "little")


def test_buffer_is_a_zeroed_string_buffer():
    buf = linux.buffer(32)
    assert len(buf) == 32 and buf.raw == bytes(32) == ctypes.create_string_buffer(32).raw


def test_libc_calls_return_results_and_keep_errno(tmp_path):
    assert linux._libc.getpid() == os.getpid()
    assert linux._libc.syscall(linux.c_long(39)) == os.getpid()          # getpid on x86_64
    with pytest.raises(OSError) as failed:
        linux.statfs_type(str(tmp_path / "missing"))
    assert failed.value.errno == 2
    assert linux.statfs_type(str(tmp_path)) == ctypes.c_long.from_buffer(_statfs(str(tmp_path))).value & 0xFFFFFFFF


def _statfs(path: str):
    buf = ctypes.create_string_buffer(256)
    assert ctypes.CDLL(None).statfs(path.encode(), buf) == 0
    return buf


def test_the_module_does_not_import_ctypes():
    out = subprocess.run([sys.executable, "-c", "import sys, minirun.linux as l; l.statfs_type('/'); "
                          "print('ctypes' in sys.modules, 'struct' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
