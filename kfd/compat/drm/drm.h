/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * <linux/kfd_ioctl.h> includes <drm/drm.h>, but Debian's linux-libc-dev leaves
 * the DRM UAPI headers to libdrm-dev, which installs them under libdrm/. This
 * directory is on the include path only to close that gap.
 */

#include <libdrm/drm.h>
