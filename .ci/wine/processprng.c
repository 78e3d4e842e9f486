/* bcryptprimitives.dll stand-in for Wine < 8.13, which lacks it. Rust's standard library
 * (1.78 and later) imports ProcessPrng from it on Windows; without this every test binary
 * dies at start-up under Wine 8.0 with status 0xc0000135. Real Windows 10+ ships the DLL.
 * ProcessPrng fills a buffer with random bytes; RtlGenRandom (advapi32's SystemFunction036)
 * does the same. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
