/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * libkfdemu.so: the LD_PRELOAD face of the emulated kernel.
 *
 * It does as little as possible itself: opens of /dev/kfd and
 * /dev/dri/renderD<n> become memfds registered with the emulated kernel,
 * KFD/DRM ioctls and device mmaps are handed to it, sysfs paths of the KFD
 * topology and the render nodes are redirected to the generated tree under
 * $KFDEMU_DIR, and stat of a device fd reports a character device. Anything
 * else passes through untouched. Without $KFDEMU_DIR the library is inert.
 *
 * munmap(), mremap() and MAP_FIXED mmap() are passed through and then
 * reported to the emulated kernel, which drops SVM ranges where the CPU
 * mapping went away (the MMU notifier's job in the real kernel). Only calls
 * through the dynamic symbols are seen: libc's internal ones (malloc's own
 * munmap) and raw system calls are not.
 *
 * dup(), dup2(), fcntl(F_DUPFD) and SCM_RIGHTS need no interposition: the
 * emulated kernel identifies a file by the (st_dev, st_ino) of its memfd, so
 * every fd sharing the description (or passed to another process) is found.
 *
 * Built without _FILE_OFFSET_BITS/_FORTIFY_SOURCE so that the names defined
 * here are the plain libc symbols, not their redirected 64-bit or checked
 * variants.
 */

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

#include "emu-kernel.h"
#include "emu-smi.h"
#include "macro.h"

/* libc declares paths nonnull, but callers pass NULL anyway and expect the syscall's EFAULT, not a crash here. */
#pragma GCC diagnostic ignored "-Wnonnull-compare"

/* glibc's stat64 family is the same layout on the 64-bit targets we support. */
_Static_assert(sizeof(struct stat) == sizeof(struct stat64), "struct stat64 layout");

#define EMU_KFD_MAJOR 235
#define EMU_DRM_MAJOR 226

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

/* ------------------------------------------------------------------------ */
/* The real functions, resolved once */

#define REAL(name) ((__typeof__(&name)) real_symbol(&real_##name, #name))
#define DECLARE_REAL(name) static void *real_##name

static void *real_symbol(void **slot, const char *name) {
        void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

        if (_likely_(p))
                return p;
        /* Racing threads resolve the same pointer: storing it twice is harmless. */
        p = dlsym(RTLD_NEXT, name);
        if (!p) {
                fprintf(stderr, "libkfdemu: cannot resolve %s: %s\n", name, dlerror());
                abort();
        }
        __atomic_store_n(slot, p, __ATOMIC_RELEASE);
        return p;
}

DECLARE_REAL(open);
DECLARE_REAL(open64);
DECLARE_REAL(openat);
DECLARE_REAL(openat64);
DECLARE_REAL(__open_2);
DECLARE_REAL(__open64_2);
DECLARE_REAL(__openat_2);
DECLARE_REAL(__openat64_2);
DECLARE_REAL(fopen);
DECLARE_REAL(fopen64);
DECLARE_REAL(opendir);
DECLARE_REAL(stat);
DECLARE_REAL(stat64);
DECLARE_REAL(lstat);
DECLARE_REAL(lstat64);
DECLARE_REAL(fstat);
DECLARE_REAL(fstat64);
DECLARE_REAL(fstatat);
DECLARE_REAL(fstatat64);
DECLARE_REAL(statx);
DECLARE_REAL(access);
DECLARE_REAL(faccessat);
DECLARE_REAL(readlink);
DECLARE_REAL(ioctl);
DECLARE_REAL(mmap);
DECLARE_REAL(mmap64);
DECLARE_REAL(munmap);
DECLARE_REAL(mremap);
DECLARE_REAL(close);
DECLARE_REAL(write);

/* Pre-2.33 glibc entry points that old binaries still call. */
extern int __xstat(int ver, const char *path, struct stat *st);
extern int __xstat64(int ver, const char *path, struct stat64 *st);
extern int __lxstat(int ver, const char *path, struct stat *st);
extern int __lxstat64(int ver, const char *path, struct stat64 *st);
extern int __fxstat(int ver, int fd, struct stat *st);
extern int __fxstat64(int ver, int fd, struct stat64 *st);
extern int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags);
extern int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags);
extern int __open_2(const char *path, int flags);
extern int __open64_2(const char *path, int flags);
extern int __openat_2(int dirfd, const char *path, int flags);
extern int __openat64_2(int dirfd, const char *path, int flags);
DECLARE_REAL(__xstat);
DECLARE_REAL(__xstat64);
DECLARE_REAL(__lxstat);
DECLARE_REAL(__lxstat64);
DECLARE_REAL(__fxstat);
DECLARE_REAL(__fxstat64);
DECLARE_REAL(__fxstatat);
DECLARE_REAL(__fxstatat64);

/* ------------------------------------------------------------------------ */
/* Attachment */

static pthread_once_t attach_once = PTHREAD_ONCE_INIT;
static EmuKernel *emu;

static void at_exit(void) {
        /* The mm goes away: the kernel tears the KFD process down now, not when someone notices. */
        if (emu)
                emu_kernel_process_exit(emu);
}

static void attach(void) {
        const char *dir = getenv("KFDEMU_DIR");
        EmuKernel *k;
        int r;

        if (!dir || !*dir)
                return;
        r = emu_kernel_attach(dir, &k);
        if (r < 0) {
                fprintf(stderr, "libkfdemu: cannot attach to %s: %s; passing everything through\n", dir,
                        strerror(-r));
                return;
        }
        __atomic_store_n(&emu, k, __ATOMIC_RELEASE);
        atexit(at_exit);
}

static EmuKernel *get_emu(void) {
        EmuKernel *k = __atomic_load_n(&emu, __ATOMIC_ACQUIRE);

        if (_likely_(k))
                return k;
        pthread_once(&attach_once, attach);
        return __atomic_load_n(&emu, __ATOMIC_ACQUIRE);
}

/* fds this process opened as devices: their close may end a file's life. */
#define TRACKED_FDS 65536
static uint8_t tracked[TRACKED_FDS];

static void track(int fd) {
        if (fd >= 0 && fd < TRACKED_FDS)
                __atomic_store_n(&tracked[fd], 1, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------------ */
/* Paths */

static bool has_prefix(const char *path, const char *prefix, const char **ret_rest) {
        size_t n = strlen(prefix);

        if (strncmp(path, prefix, n) != 0)
                return false;
        *ret_rest = path + n;
        return true;
}

/* /dev/dri/renderD<n> → n, else -1. */
static int render_minor(const char *path) {
        const char *rest;
        char *end;
        long v;

        if (!has_prefix(path, "/dev/dri/renderD", &rest) || !*rest)
                return -1;
        errno = 0;
        v = strtol(rest, &end, 10);
        if (*end || v < 0 || v > 1048575 || rest[0] == '-' || rest[0] == '+')
                return -1;
        return (int) v;
}

/*
 * The KFD topology and the render nodes' sysfs live in $KFDEMU_DIR/sys. Returns
 * the path to use: the original, or buf with the redirected one.
 */
static const char *redirect(EmuKernel *k, const char *path, char *buf, size_t n) {
        const char *rest;
        int r;

        if (!k || !path || path[0] != '/' || strncmp(path, "/sys/", 5) != 0)
                return path;
        if ((has_prefix(path, "/sys/devices/virtual/kfd/kfd", &rest) && (*rest == '/' || !*rest)) ||
            (has_prefix(path, "/sys/class/drm/renderD", &rest)) ||
            (has_prefix(path, "/sys/dev/char/226:", &rest)))
                r = snprintf(buf, n, "%s%s", emu_kernel_dir(k), path);
        else if (has_prefix(path, "/sys/class/kfd/kfd", &rest) && (*rest == '/' || !*rest))
                /* The class link and the device directory are one tree. */
                r = snprintf(buf, n, "%s/sys/devices/virtual/kfd/kfd%s", emu_kernel_dir(k), rest);
        else
                return path;
        if (r < 0 || (size_t) r >= n)
                return path;
        return buf;
}

static bool known_minor(EmuKernel *k, int minor) {
        const EmuTopology *t = emu_kernel_topology(k);

        for (unsigned i = 0; i < t->n_nodes; i++)
                if (t->nodes[i].is_gpu && (int) t->nodes[i].drm_render_minor == minor)
                        return true;
        return false;
}

/* stat() of the device nodes themselves: a character device with our constant numbers. */
static bool device_path_stat(EmuKernel *k, const char *path, struct stat *st) {
        char state[PATH_MAX];
        int minor;
        dev_t rdev;

        if (!k || !path)
                return false;
        if (streq(path, "/dev/kfd"))
                rdev = makedev(EMU_KFD_MAJOR, 0);
        else if ((minor = render_minor(path)) >= 0 && known_minor(k, minor))
                rdev = makedev(EMU_DRM_MAJOR, (unsigned) minor);
        else
                return false;

        snprintf(state, sizeof(state), "%s/state", emu_kernel_dir(k));
        if (syscall(SYS_newfstatat, AT_FDCWD, state, st, 0) < 0)
                memset(st, 0, sizeof(*st));
        st->st_mode = S_IFCHR | 0666;
        st->st_rdev = rdev;
        st->st_size = 0;
        st->st_blocks = 0;
        st->st_nlink = 1;
        return true;
}

static int fail_errno(int r) {
        errno = -r;
        return -1;
}

/* ------------------------------------------------------------------------ */
/* open family */

static int open_device(EmuKernel *k, const char *path, int flags, bool *ret_handled) {
        int minor = -1, fd, r;
        bool kfd = streq(path, "/dev/kfd");

        *ret_handled = false;
        if (!kfd && (minor = render_minor(path)) < 0)
                return -1;
        *ret_handled = true;

        /* kfd_open/drm_open create a new open file description: a new memfd each time. */
        fd = memfd_create(kfd ? "kfd" : "renderD", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
        if (fd < 0)
                return -1;
        r = kfd ? emu_kernel_open_kfd(k, fd) : emu_kernel_open_render(k, fd, (unsigned) minor);
        if (r < 0) {
                REAL(close)(fd);
                return fail_errno(r);
        }
        track(fd);
        return fd;
}

static mode_t open_mode(int flags, va_list ap) {
        return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t) va_arg(ap, int) : 0;
}

#define OPEN_BODY(realcall)                                                             \
        EmuKernel *k = get_emu();                                                       \
        char buf[PATH_MAX];                                                             \
        if (k && path && path[0] == '/') {                                              \
                bool handled;                                                           \
                int fd = open_device(k, path, flags, &handled);                         \
                if (handled)                                                            \
                        return fd;                                                      \
                path = redirect(k, path, buf, sizeof(buf));                             \
        }                                                                               \
        return realcall;

_public_ int open(const char *path, int flags, ...) {
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = open_mode(flags, ap);
        va_end(ap);
        OPEN_BODY(REAL(open)(path, flags, mode));
}

_public_ int open64(const char *path, int flags, ...) {
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = open_mode(flags, ap);
        va_end(ap);
        OPEN_BODY(REAL(open64)(path, flags, mode));
}

_public_ int openat(int dirfd, const char *path, int flags, ...) {
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = open_mode(flags, ap);
        va_end(ap);
        OPEN_BODY(REAL(openat)(dirfd, path, flags, mode));
}

_public_ int openat64(int dirfd, const char *path, int flags, ...) {
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = open_mode(flags, ap);
        va_end(ap);
        OPEN_BODY(REAL(openat64)(dirfd, path, flags, mode));
}

_public_ int __open_2(const char *path, int flags) {
        OPEN_BODY(REAL(__open_2)(path, flags));
}

_public_ int __open64_2(const char *path, int flags) {
        OPEN_BODY(REAL(__open64_2)(path, flags));
}

_public_ int __openat_2(int dirfd, const char *path, int flags) {
        OPEN_BODY(REAL(__openat_2)(dirfd, path, flags));
}

_public_ int __openat64_2(int dirfd, const char *path, int flags) {
        OPEN_BODY(REAL(__openat64_2)(dirfd, path, flags));
}

_public_ FILE *fopen(const char *path, const char *mode) {
        char buf[PATH_MAX];

        return REAL(fopen)(redirect(get_emu(), path, buf, sizeof(buf)), mode);
}

_public_ FILE *fopen64(const char *path, const char *mode) {
        char buf[PATH_MAX];

        return REAL(fopen64)(redirect(get_emu(), path, buf, sizeof(buf)), mode);
}

_public_ DIR *opendir(const char *path) {
        char buf[PATH_MAX];

        return REAL(opendir)(redirect(get_emu(), path, buf, sizeof(buf)));
}

_public_ int access(const char *path, int mode) {
        EmuKernel *k = get_emu();
        char buf[PATH_MAX];
        struct stat st;

        if (device_path_stat(k, path, &st))
                return 0;
        return REAL(access)(redirect(k, path, buf, sizeof(buf)), mode);
}

_public_ int faccessat(int dirfd, const char *path, int mode, int flags) {
        EmuKernel *k = get_emu();
        char buf[PATH_MAX];
        struct stat st;

        if (device_path_stat(k, path, &st))
                return 0;
        return REAL(faccessat)(dirfd, redirect(k, path, buf, sizeof(buf)), mode, flags);
}

_public_ ssize_t readlink(const char *path, char *out, size_t n) {
        char buf[PATH_MAX];

        return REAL(readlink)(redirect(get_emu(), path, buf, sizeof(buf)), out, n);
}

/* ------------------------------------------------------------------------ */
/* stat family */

static void fake_fd_stat(EmuKernel *k, struct stat *st) {
        if (k)
                (void) emu_kernel_fake_stat(k, st);
}

#define PATH_STAT_BODY(realcall, st)                                                    \
        EmuKernel *k = get_emu();                                                       \
        char buf[PATH_MAX];                                                             \
        int r;                                                                          \
        if (device_path_stat(k, path, (struct stat *) (st)))                            \
                return 0;                                                               \
        path = redirect(k, path, buf, sizeof(buf));                                     \
        r = realcall;                                                                   \
        return r;

_public_ int stat(const char *path, struct stat *st) {
        PATH_STAT_BODY(REAL(stat)(path, st), st);
}

_public_ int stat64(const char *path, struct stat64 *st) {
        PATH_STAT_BODY(REAL(stat64)(path, st), st);
}

_public_ int lstat(const char *path, struct stat *st) {
        PATH_STAT_BODY(REAL(lstat)(path, st), st);
}

_public_ int lstat64(const char *path, struct stat64 *st) {
        PATH_STAT_BODY(REAL(lstat64)(path, st), st);
}

_public_ int __xstat(int ver, const char *path, struct stat *st) {
        PATH_STAT_BODY(REAL(__xstat)(ver, path, st), st);
}

_public_ int __xstat64(int ver, const char *path, struct stat64 *st) {
        PATH_STAT_BODY(REAL(__xstat64)(ver, path, st), st);
}

_public_ int __lxstat(int ver, const char *path, struct stat *st) {
        PATH_STAT_BODY(REAL(__lxstat)(ver, path, st), st);
}

_public_ int __lxstat64(int ver, const char *path, struct stat64 *st) {
        PATH_STAT_BODY(REAL(__lxstat64)(ver, path, st), st);
}

_public_ int fstat(int fd, struct stat *st) {
        int r = REAL(fstat)(fd, st);

        if (r == 0)
                fake_fd_stat(get_emu(), st);
        return r;
}

_public_ int fstat64(int fd, struct stat64 *st) {
        int r = REAL(fstat64)(fd, st);

        if (r == 0)
                fake_fd_stat(get_emu(), (struct stat *) st);
        return r;
}

_public_ int __fxstat(int ver, int fd, struct stat *st) {
        int r = REAL(__fxstat)(ver, fd, st);

        if (r == 0)
                fake_fd_stat(get_emu(), st);
        return r;
}

_public_ int __fxstat64(int ver, int fd, struct stat64 *st) {
        int r = REAL(__fxstat64)(ver, fd, st);

        if (r == 0)
                fake_fd_stat(get_emu(), (struct stat *) st);
        return r;
}

#define FSTATAT_BODY(realcall, st)                                                      \
        EmuKernel *k = get_emu();                                                       \
        char buf[PATH_MAX];                                                             \
        int r;                                                                          \
        if (path && path[0] == '/' && device_path_stat(k, path, (struct stat *) (st)))  \
                return 0;                                                               \
        if (path)                                                                       \
                path = redirect(k, path, buf, sizeof(buf));                             \
        r = realcall;                                                                   \
        if (r == 0 && path && !*path && (flags & AT_EMPTY_PATH))                        \
                fake_fd_stat(k, (struct stat *) (st));                                  \
        return r;

_public_ int fstatat(int dirfd, const char *path, struct stat *st, int flags) {
        FSTATAT_BODY(REAL(fstatat)(dirfd, path, st, flags), st);
}

_public_ int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags) {
        FSTATAT_BODY(REAL(fstatat64)(dirfd, path, st, flags), st);
}

_public_ int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags) {
        FSTATAT_BODY(REAL(__fxstatat)(ver, dirfd, path, st, flags), st);
}

_public_ int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags) {
        FSTATAT_BODY(REAL(__fxstatat64)(ver, dirfd, path, st, flags), st);
}

static void stat_to_statx(const struct stat *st, struct statx *stx) {
        *stx = (struct statx) {
                .stx_mask = STATX_BASIC_STATS,
                .stx_blksize = (uint32_t) st->st_blksize,
                .stx_nlink = (uint32_t) st->st_nlink,
                .stx_uid = st->st_uid,
                .stx_gid = st->st_gid,
                .stx_mode = (uint16_t) st->st_mode,
                .stx_ino = st->st_ino,
                .stx_atime = { .tv_sec = st->st_atim.tv_sec, .tv_nsec = (uint32_t) st->st_atim.tv_nsec },
                .stx_mtime = { .tv_sec = st->st_mtim.tv_sec, .tv_nsec = (uint32_t) st->st_mtim.tv_nsec },
                .stx_ctime = { .tv_sec = st->st_ctim.tv_sec, .tv_nsec = (uint32_t) st->st_ctim.tv_nsec },
                .stx_rdev_major = major(st->st_rdev),
                .stx_rdev_minor = minor(st->st_rdev),
                .stx_dev_major = major(st->st_dev),
                .stx_dev_minor = minor(st->st_dev),
        };
}

_public_ int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *stx) {
        EmuKernel *k = get_emu();
        char buf[PATH_MAX];
        struct stat st;
        int r;

        if (k && path && path[0] == '/' && device_path_stat(k, path, &st)) {
                stat_to_statx(&st, stx);
                return 0;
        }
        if (k && path && !*path && (flags & AT_EMPTY_PATH)) {
                r = REAL(statx)(dirfd, path, flags, mask, stx);
                if (r == 0 && syscall(SYS_newfstatat, dirfd, "", &st, AT_EMPTY_PATH) == 0 &&
                    emu_kernel_fake_stat(k, &st))
                        stat_to_statx(&st, stx);
                return r;
        }
        return REAL(statx)(dirfd, redirect(k, path, buf, sizeof(buf)), flags, mask, stx);
}

/* ------------------------------------------------------------------------ */
/* ioctl, mmap, close */

_public_ int ioctl(int fd, unsigned long request, ...) {
        EmuKernel *k;
        va_list ap;
        void *arg;
        int r;

        va_start(ap, request);
        arg = va_arg(ap, void *);
        va_end(ap);

        /* Fast path: only KFD ('K') and DRM ('d') requests can be ours. */
        if (_IOC_TYPE(request) != 'K' && _IOC_TYPE(request) != 'd')
                return REAL(ioctl)(fd, request, arg);
        k = get_emu();
        if (!k)
                return REAL(ioctl)(fd, request, arg);
        r = emu_kernel_ioctl(k, fd, request, arg);
        if (r == EMU_KERNEL_NOT_OURS)
                return REAL(ioctl)(fd, request, arg);
        if (r < 0)
                return fail_errno(r);
        return r;
}

/* Set while this thread reports an unmap: the report must never come back here. */
static _Thread_local bool in_cpu_unmapped __attribute__((tls_model("initial-exec")));

/*
 * The CPU mapping of [addr, addr+len) was removed or replaced (called after
 * the call succeeded): MMU_NOTIFY_UNMAP for the emulated kernel's SVM ranges.
 */
static void cpu_unmapped(void *addr, size_t len) {
        /* Not get_emu(): an unmap never attaches; a process that never opened /dev/kfd has no ranges. */
        EmuKernel *k = __atomic_load_n(&emu, __ATOMIC_ACQUIRE);
        int saved;

        if (!k || len == 0 || in_cpu_unmapped)
                return;
        saved = errno;
        in_cpu_unmapped = true;
        /* The unmap happened whatever the emulator answers: nothing to report to the caller. */
        (void) emu_kernel_cpu_unmap(k, (uint64_t) (uintptr_t) addr, (uint64_t) len);
        in_cpu_unmapped = false;
        errno = saved;
}

static size_t page_align(size_t len) {
        size_t page = (size_t) getpagesize();

        return len > SIZE_MAX - (page - 1) ? SIZE_MAX & ~(page - 1) : (len + page - 1) & ~(page - 1);
}

static void *do_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, bool is64) {
        EmuKernel *k;
        struct stat st;
        void *p;

        if ((flags & MAP_ANONYMOUS) || fd < 0 || !(k = get_emu()))
                goto real;
        if (syscall(SYS_newfstatat, fd, "", &st, AT_EMPTY_PATH) < 0)
                goto real;
        switch (emu_kernel_classify(k, &st, NULL)) {
        case EMU_FILE_KFD:
        case EMU_FILE_RENDER:
                p = emu_kernel_mmap(k, addr, len, prot, flags, fd, off);
                goto done;
        default:
                /* Everything else, dma-bufs included (they are the shmem file itself). */
                break;
        }
real:
        p = is64 ? REAL(mmap64)(addr, len, prot, flags, fd, off) : REAL(mmap)(addr, len, prot, flags, fd, off);
done:
        /* MAP_FIXED replaced whatever was mapped there; MAP_FIXED_NOREPLACE succeeds only where nothing was. */
        if (p != MAP_FAILED && (flags & MAP_FIXED) && !(flags & MAP_FIXED_NOREPLACE))
                cpu_unmapped(p, len);
        return p;
}

_public_ void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
        return do_mmap(addr, len, prot, flags, fd, off, false);
}

_public_ void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off) {
        return do_mmap(addr, len, prot, flags, fd, (off_t) off, true);
}

_public_ int munmap(void *addr, size_t len) {
        int r = REAL(munmap)(addr, len);

        if (r == 0)
                cpu_unmapped(addr, len);
        return r;
}

_public_ void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...) {
        void *new_addr = NULL, *p;
        va_list ap;

        /* Where glibc reads the fifth argument: the kernel uses it for these two flags. */
        if (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) {
                va_start(ap, flags);
                new_addr = va_arg(ap, void *);
                va_end(ap);
        }
        p = REAL(mremap)(old, old_len, new_len, flags, new_addr);
        if (p == MAP_FAILED)
                return p;

        old_len = page_align(old_len);
        new_len = page_align(new_len);
        if (p != old) {
                /*
                 * Moved: move_page_tables notifies MMU_NOTIFY_UNMAP for the
                 * whole source, MREMAP_DONTUNMAP or not (old_len 0 only makes
                 * a second mapping of shared pages); whatever was at the
                 * destination (MREMAP_FIXED) was unmapped first.
                 */
                if (old_len > 0)
                        cpu_unmapped(old, old_len);
                cpu_unmapped(p, new_len);
        } else if (new_len < old_len)
                /* Shrunk in place: the tail is unmapped. */
                cpu_unmapped((uint8_t *) old + new_len, old_len - new_len);
        return p;
}

/* write() on an SMI listener sets its event mask (kfd_smi_ev_write); everything else passes. */
_public_ ssize_t write(int fd, const void *buf, size_t n) {
        EmuKernel *k;
        ssize_t r;

        if (_likely_(__atomic_load_n(&emu_smi_n_fds, __ATOMIC_ACQUIRE) == 0) ||
            !(k = __atomic_load_n(&emu, __ATOMIC_ACQUIRE)) || !emu_smi_write(k, fd, buf, n, &r))
                return REAL(write)(fd, buf, n);
        if (r < 0) {
                errno = (int) -r;
                return -1;
        }
        return r;
}

_public_ int close(int fd) {
        bool notify = fd >= TRACKED_FDS ||
                (fd >= 0 && __atomic_exchange_n(&tracked[fd], 0, __ATOMIC_RELAXED));
        EmuKernel *k;
        int r;

        if (_unlikely_(__atomic_load_n(&emu_smi_n_fds, __ATOMIC_ACQUIRE) > 0) &&
            (k = __atomic_load_n(&emu, __ATOMIC_ACQUIRE))) {
                int saved = errno;
                emu_smi_closed(k, fd);
                errno = saved;
        }
        r = REAL(close)(fd);

        /* After the real close: if that was the description's last fd, its file is gone. */
        if (notify && (k = __atomic_load_n(&emu, __ATOMIC_ACQUIRE))) {
                int saved = errno;
                emu_kernel_file_closed(k);
                errno = saved;
        }
        return r;
}
