#!/usr/bin/env python3
"""A filesystem that never answers, for tests: mounted at argv[1], it completes FUSE's
handshake, prints "mounted", then leaves every request (LOOKUP, GETATTR, ...) waiting for
ever, as a dead NFS server or a hung FUSE daemon does. Needs root and /dev/fuse. Ends when
killed or unmounted (killing it aborts the waiting requests)."""
import ctypes
import os
import struct
import sys

FUSE_INIT = 26
MS_NOSUID, MS_NODEV = 0x2, 0x4

mountpoint = sys.argv[1]
fd = os.open("/dev/fuse", os.O_RDWR)
libc = ctypes.CDLL(None, use_errno=True)
options = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
if libc.mount(b"hang", mountpoint.encode(), b"fuse", MS_NOSUID | MS_NODEV, options) != 0:
    sys.exit(f"mount: {os.strerror(ctypes.get_errno())}")
print("mounted", flush=True)

while True:
    try:
        request = os.read(fd, (1 << 20) + 4096)
    except OSError:
        break  # unmounted
    if len(request) < 40:
        continue
    _length, opcode, unique = struct.unpack_from("<IIQ", request)
    if opcode == FUSE_INIT:
        _major, _minor, max_readahead, _flags = struct.unpack_from("<IIII", request, 40)
        # Protocol 7.22: the short reply every kernel accepts.
        body = struct.pack("<IIIIHHI", 7, 22, max_readahead, 0, 16, 12, 65536)
        os.write(fd, struct.pack("<IiQ", 16 + len(body), 0, unique) + body)
    # Anything else: no answer, ever.
