/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one list of block drivers: adding a format or protocol is one line here. */
#include "block-int.h"

const BlockDriver *const bdrv_drivers[] = {
    &bdrv_file,
    &bdrv_raw,
    &bdrv_qcow2,
    &bdrv_nbd,
    NULL,
};
