/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Internal to the block layer: the driver list. */
#ifndef QKIT_BLOCK_INT_H
#define QKIT_BLOCK_INT_H

#include "qkit/block.h"

/* NULL-terminated list of every driver, protocols and formats (drivers.c). */
extern const BlockDriver *const bdrv_drivers[];

/* The file protocol's create options, which raw takes as its own. */
extern const QOptDesc file_create_opts[];

#endif
