/*
 * A stand-in for Windows' bcryptprimitives.dll, for running latent-studio.exe under Wine 8
 * (Debian 12), which lacks the DLL. Rust's standard library (1.78+) imports ProcessPrng from
 * it for HashMap seeds and random numbers; real Windows 10/11 have it, so this file is for
 * scripts/windows-check.sh only and is never shipped.
 *
 * ProcessPrng fills the buffer from RtlGenRandom (advapi32's SystemFunction036), the system
 * random generator older Rust releases used. Built by scripts/windows-check.sh:
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c \
 *       bcryptprimitives.def -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    /* RtlGenRandom takes a ULONG length: fill larger requests in pieces. */
    while (length > 0) {
        ULONG piece = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, piece)) {
            return FALSE;
        }
        data += piece;
        length -= piece;
    }
    return TRUE;
}
