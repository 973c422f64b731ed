/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Temporary weak stand-ins for subcommands whose files have not landed yet. */
#include <stdio.h>

#include "img.h"

#define IMG_STUB(fn) \
    __attribute__((weak)) int fn(int argc, char **argv) \
    { \
        fprintf(stderr, "%s: not built\n", argv[0]); \
        return 1; \
    }

IMG_STUB(img_convert)
IMG_STUB(img_dd)
IMG_STUB(img_bench)
IMG_STUB(img_bitmap)
