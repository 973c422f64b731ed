/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The Linux kernel's NBD client (/dev/nbdX), as qemu-nbd -c and -d drive it: the
 * tool serves the export on one end of a socketpair, this code hands the other end
 * (already past the handshake) to the kernel through the ioctls of <linux/nbd.h>.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/nbd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "nbd/server.h"

/* The block size the kernel device is set up with. */
#define KERNEL_BLOCK_SIZE 512

int nbd_kernel_open(const char *device, Error **errp)
{
    int fd = open(device, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Failed to open %s", device);
        return -errno;
    }
    return fd;
}

int nbd_kernel_attach(int dev_fd, int sock_fd, uint64_t size, uint16_t flags, Error **errp)
{
    if (ioctl(dev_fd, NBD_SET_BLKSIZE, (unsigned long)KERNEL_BLOCK_SIZE) < 0) {
        error_setg_errno(errp, errno, "Failed setting NBD block size");
        return -errno;
    }
    if (ioctl(dev_fd, NBD_SET_SIZE_BLOCKS, (unsigned long)(size / KERNEL_BLOCK_SIZE)) < 0) {
        error_setg_errno(errp, errno, "Failed setting size (in blocks)");
        return -errno;
    }
    if (ioctl(dev_fd, NBD_SET_FLAGS, (unsigned long)flags) < 0) {
        /* Old kernels know no flags: harmless unless the export is read-only. */
        if (errno != ENOTTY || (flags & NBD_FLAG_READ_ONLY) == 0) {
            error_setg_errno(errp, errno, "Failed setting flags");
            return -errno;
        }
    }
    int ro = (flags & NBD_FLAG_READ_ONLY) != 0;
    if (ioctl(dev_fd, BLKROSET, &ro) < 0) {
        error_setg_errno(errp, errno, "Failed setting read-only attribute");
        return -errno;
    }
    ioctl(dev_fd, NBD_CLEAR_SOCK);
    if (ioctl(dev_fd, NBD_SET_SOCK, (unsigned long)sock_fd) < 0) {
        error_setg_errno(errp, errno, "Failed to set NBD socket");
        return -errno;
    }
    /* Runs the kernel's client until the device is disconnected. */
    int ret = ioctl(dev_fd, NBD_DO_IT);
    int err = errno;
    ioctl(dev_fd, NBD_CLEAR_QUE);
    ioctl(dev_fd, NBD_CLEAR_SOCK);
    if (ret < 0 && err != EPIPE) {
        error_setg_errno(errp, err, "NBD_DO_IT failed");
        return -err;
    }
    return 0;
}

int nbd_kernel_disconnect(const char *device, Error **errp)
{
    int fd = open(device, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Cannot open %s", device);
        return -errno;
    }
    ioctl(fd, NBD_CLEAR_QUE);
    int ret = ioctl(fd, NBD_DISCONNECT);
    int err = errno;
    ioctl(fd, NBD_CLEAR_SOCK);
    close(fd);
    if (ret < 0) {
        error_setg_errno(errp, err, "Cannot disconnect %s", device);
        return -err;
    }
    return 0;
}
