// SPDX-License-Identifier: Apache-2.0
// glibc's record of the CPU's features (<sys/platform/x86.h>, glibc >= 2.33): what the CPU has
// and the OS supports, read once by glibc at start-up, so asking costs nothing, where a cpuid
// is a VM exit (~16 us on host B). CFS_HAVE_GLIBC_X86 is defined when it is there.
#pragma once

#if defined(__x86_64__) && __has_include(<sys/platform/x86.h>)
#define CFS_HAVE_GLIBC_X86 1
#if defined(__clang__)
// The header's inline functions return C's _Bool, which clang does not accept in C++.
#define _Bool bool
#include <sys/platform/x86.h>
#undef _Bool
#else
#include <sys/platform/x86.h>
#endif
#endif
