/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * SMI events (AMDKFD_IOC_SMI_EVENTS, interface 1.3+) and the GPU events that
 * feed them: GPU resets and VM faults, triggered by kfdemu-ctl
 * (docs/emulator.md, "GPU resets and VM faults").
 *
 * The kernel's anon fd ("kfd_smi_ev") is a FIFO under DIR/smi/ opened
 * O_RDWR|O_NONBLOCK: read() and poll() are the pipe's own and behave like
 * kfd_smi_ev_read/kfd_smi_ev_poll (EAGAIN when empty, POLLIN when not);
 * write() of the event mask is interposed by the preload layer
 * (emu_smi_write). Node-wide state (the listeners, the reset sequence numbers,
 * the reset in progress) lives in DIR/smi/state under the arena lock.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "emu-kernel.h"

/* Listeners this process holds: the preload layer's write() asks emu_smi_write only when > 0. */
extern unsigned emu_smi_n_fds;

/* kfd_ioctl_smi_events: a new listener on gpu_id for the calling context (*ret_fd: its fd). */
int emu_smi_open(EmuKernel *k, uint32_t proc, uint32_t gpu_id, uint32_t *ret_fd);

/*
 * write() on fd: if fd is a listener of this process, kfd_smi_ev_write (n < 8: -EFAULT, else the
 * first 8 bytes are the new mask, returns 8) and *ret is the result; returns false when fd is none.
 */
bool emu_smi_write(EmuKernel *k, int fd, const void *buf, size_t n, ssize_t *ret);
/* close(fd): kfd_smi_ev_release when it was a listener (dup()s are not followed). */
void emu_smi_closed(EmuKernel *k, int fd);

/*
 * A GPU reset, as amdgpu_device_gpu_recover drives KFD: begin = kgd2kfd_pre_reset, end =
 * kgd2kfd_post_reset. cause: the text amdgpu_reset_get_desc() would give (NULL: "unknown").
 * drop_line: the pre-reset line finds every listener's FIFO full and is lost (add_event_to_kfifo).
 * -EBUSY: begin on a GPU already resetting; -EALREADY: end on one that is not.
 */
int emu_smi_reset_begin(EmuKernel *k, uint32_t gpu_id, const char *cause, bool drop_line);
int emu_smi_reset_end(EmuKernel *k, uint32_t gpu_id);
/* Any GPU between pre- and post-reset (kfd_is_locked()): opens of /dev/kfd fail with EINVAL. */
bool emu_smi_locked(EmuKernel *k);

/*
 * A VM fault of the process pid on gpu_id at addr (kfd_smi_event_update_vmfault). pid 0: the one
 * KFD process that maps addr on that GPU (-ENOENT: none, -ENOTUNIQ: several; give the pid).
 * *ret_pid: the process the fault was reported for.
 */
int emu_smi_vmfault(EmuKernel *k, uint32_t gpu_id, uint64_t addr, pid_t pid, pid_t *ret_pid);

/* Listeners and reset state as JSON, for dump. */
json_t *emu_smi_dump(EmuKernel *k);
