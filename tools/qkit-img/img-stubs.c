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
IMG_STUB(img_amend)
IMG_STUB(img_check)
IMG_STUB(img_commit)
IMG_STUB(img_compare)
IMG_STUB(img_create)
IMG_STUB(img_map)
IMG_STUB(img_measure)
IMG_STUB(img_snapshot)
IMG_STUB(img_rebase)
IMG_STUB(img_resize)
