"""CUDA IPC for push_cuda: bucket buffers, their handles and the GPU's UUID.

Handles come from the CUDA driver (libcuda, present wherever a GPU is), called through ctypes:
``cuIpcGetMemHandle`` on the bucket's buffer and ``cuMemGetAddressRange`` for where the buffer
starts within its allocation. PyTorch's own storage sharing (``_share_cuda_``) is not used: it
ties the memory's lifetime to a reference count that only a PyTorch receiver releases.
"""
from __future__ import annotations

import ctypes

_driver = None


def _lib():
    global _driver
    if _driver is None:
        lib = ctypes.CDLL("libcuda.so.1")
        lib.cuIpcGetMemHandle.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
        lib.cuMemGetAddressRange_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64),
                                                ctypes.POINTER(ctypes.c_size_t), ctypes.c_uint64]
        lib.cuDeviceGetUuid_v2.argtypes = [ctypes.c_void_p, ctypes.c_int]
        _driver = lib
    return _driver


def _check(result, what):
    if result != 0:
        raise RuntimeError(f"CUDA driver call {what} failed with error {result}")


def ipc_reference(ptr: int):
    """(64-byte handle, offset of ptr within its allocation) for a device pointer."""
    lib = _lib()
    handle = (ctypes.c_char * 64)()
    _check(lib.cuIpcGetMemHandle(ctypes.addressof(handle), ctypes.c_uint64(ptr)),
           "cuIpcGetMemHandle")
    base = ctypes.c_uint64()
    size = ctypes.c_size_t()
    _check(lib.cuMemGetAddressRange_v2(ctypes.byref(base), ctypes.byref(size), ctypes.c_uint64(ptr)),
           "cuMemGetAddressRange")
    return bytes(handle), ptr - base.value


def gpu_uuid(ordinal: int) -> str:
    """The device's UUID as CUDA and nvidia-smi spell it: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx."""
    lib = _lib()
    raw = (ctypes.c_ubyte * 16)()
    _check(lib.cuDeviceGetUuid_v2(ctypes.addressof(raw), ordinal), "cuDeviceGetUuid")
    h = bytes(raw).hex()
    return f"GPU-{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
