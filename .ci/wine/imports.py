#!/usr/bin/env python3
"""Lists what a Windows executable imports (each DLL and its functions, from
`x86_64-w64-mingw32-objdump -p`) and fails when it needs more than its Windows floor ships.

    .ci/wine/imports.py EXE win10|win7

win10: only DLLs that Windows 10 / Server 2016 ship (API sets included).
win7:  only DLLs that Windows 7 / Server 2008 R2 ship (no API-set DLLs, no
       bcryptprimitives.dll), and none of the functions Windows added after 7 below.
"""
import re
import subprocess
import sys

SHIPPED_WIN7 = {
    "kernel32.dll", "ntdll.dll", "advapi32.dll", "userenv.dll", "ws2_32.dll", "msvcrt.dll",
    "oleaut32.dll", "ole32.dll", "rpcrt4.dll", "shell32.dll", "user32.dll", "secur32.dll",
    "bcrypt.dll", "psapi.dll", "iphlpapi.dll", "netapi32.dll", "crypt32.dll",
}
SHIPPED_WIN10 = SHIPPED_WIN7 | {"bcryptprimitives.dll", "combase.dll"}
# Functions the Rust standard library or its dependencies may import that Windows 7 lacks
# (with the Windows version that brought them).
AFTER_WIN7 = {
    "ProcessPrng": "10",
    "GetSystemTimePreciseAsFileTime": "8",
    "WaitOnAddress": "8",
    "WakeByAddressSingle": "8",
    "WakeByAddressAll": "8",
    "CreateFile2": "8",
    "CopyFile2": "8",
    "GetCurrentThreadStackLimits": "8",
    "PrefetchVirtualMemory": "8",
    "GetProcessMitigationPolicy": "8",
    "SetProcessMitigationPolicy": "8",
    "SetThreadDescription": "10 (1607)",
    "GetThreadDescription": "10 (1607)",
    "VirtualAlloc2": "10 (1803)",
    "MapViewOfFile3": "10 (1803)",
    "CompareObjectHandles": "10",
    "GetTempPath2W": "11",
    "GetTempPath2A": "11",
    "RoInitialize": "8",
}


def imports(exe):
    out = subprocess.run(["x86_64-w64-mingw32-objdump", "-p", exe], check=True,
                         capture_output=True, text=True).stdout
    table, dll = {}, None
    for line in out.splitlines():
        m = re.match(r"\s*DLL Name: (\S+)", line)
        if m:
            dll = m.group(1).lower()
            table.setdefault(dll, [])
            continue
        m = re.match(r"\s+[0-9a-f]+\s+\d+\s+(\S+)\s*$", line)
        if dll and m:
            table[dll].append(m.group(1))
        elif not line.strip():
            dll = None if not table.get(dll) else dll
    return table


def main():
    exe, floor = sys.argv[1], sys.argv[2]
    table = imports(exe)
    shipped = SHIPPED_WIN7 if floor == "win7" else SHIPPED_WIN10
    problems = []
    print(f"{exe} imports ({floor} floor):")
    for dll in sorted(table):
        funcs = sorted(table[dll])
        print(f"  {dll} ({len(funcs)}): {', '.join(funcs)}")
        if dll not in shipped and not (floor == "win10" and dll.startswith("api-ms-win-")):
            problems.append(f"{dll}: not shipped by Windows {'7' if floor == 'win7' else '10'}")
        if floor == "win7":
            for f in funcs:
                if f in AFTER_WIN7:
                    problems.append(f"{dll}!{f}: added in Windows {AFTER_WIN7[f]}")
    for p in problems:
        print(f"FAIL: {p}")
    sys.exit(1 if problems else 0)


main()
