/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * guest-get-devices: driver information is a Windows feature; on Linux qemu-ga keeps the
 * command disabled, and so does qkit-ga (see ga_update_enabled).
 */
#include "qga/ga.h"

/* Only reachable if the command were enabled: the error qemu-ga has for it. */
static json_t *cmd_devices(void *opaque, json_t *args, Error **errp)
{
    error_setg(errp, QGA_ERR_UNSUPPORTED);
    return NULL;
}

const QmpCommandDef ga_devices_cmds[] = {
    { "guest-get-devices", cmd_devices },
    { NULL },
};
