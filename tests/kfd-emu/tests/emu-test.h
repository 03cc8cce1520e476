/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Helpers for the emulator checklist tests. The tests run under kfdemu-run and
 * talk to the emulated kernel only the way a real program talks to the real
 * one: open/ioctl/mmap on /dev/kfd and /dev/dri/renderD*, sysfs reads. The
 * one side channel is kfdemu-ctl (path in $KFDEMU_CTL), spawned without the
 * preload, for dumps and faults.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kfd-uapi.h"
#include "macro.h"

#define TEST_MAX_GPUS 32
#define TEST_MAX_NODES 64

/* ---- assertions: print the expression and both values, then abort ---- */

#define ASSERT_TRUE(expr)                                                                  \
        do {                                                                               \
                if (!(expr)) {                                                             \
                        fprintf(stderr, "%s:%d: %s: assertion failed: %s\n", __FILE__,    \
                                __LINE__, __func__, #expr);                                \
                        abort();                                                           \
                }                                                                          \
        } while (0)

#define ASSERT_EQ(a, b)                                                                    \
        do {                                                                               \
                unsigned long long _a = (unsigned long long) (a);                          \
                unsigned long long _b = (unsigned long long) (b);                          \
                if (_a != _b) {                                                            \
                        fprintf(stderr,                                                    \
                                "%s:%d: %s: assertion failed: %s == %s (0x%llx != 0x%llx, %lld != %lld)\n", \
                                __FILE__, __LINE__, __func__, #a, #b, _a, _b, (long long) _a, \
                                (long long) _b);                                           \
                        abort();                                                           \
                }                                                                          \
        } while (0)

#define ASSERT_NE(a, b)                                                                    \
        do {                                                                               \
                unsigned long long _a = (unsigned long long) (a);                          \
                unsigned long long _b = (unsigned long long) (b);                          \
                if (_a == _b) {                                                            \
                        fprintf(stderr, "%s:%d: %s: assertion failed: %s != %s (both 0x%llx)\n", \
                                __FILE__, __LINE__, __func__, #a, #b, _a);                 \
                        abort();                                                           \
                }                                                                          \
        } while (0)

/* expr returns 0/-errno (or -1 with errno for raw syscalls through test_sys). */
#define ASSERT_OK(expr)                                                                    \
        do {                                                                               \
                int _r = (expr);                                                           \
                if (_r < 0) {                                                              \
                        fprintf(stderr, "%s:%d: %s: %s failed: %s (%s)\n", __FILE__, __LINE__, \
                                __func__, #expr, test_errno_name(-_r), strerror(-_r));      \
                        abort();                                                           \
                }                                                                          \
        } while (0)

#define ASSERT_ERRNO(expr, err)                                                            \
        do {                                                                               \
                int _r = (expr);                                                           \
                if (_r != -(err)) {                                                        \
                        fprintf(stderr, "%s:%d: %s: %s returned %s, expected %s\n", __FILE__, \
                                __LINE__, __func__, #expr,                                 \
                                _r >= 0 ? "success" : test_errno_name(-_r), test_errno_name(err)); \
                        abort();                                                           \
                }                                                                          \
        } while (0)

const char *test_errno_name(int e);

/* ---- topology, as a program sees it in sysfs ---- */

typedef struct TestGpu {
        unsigned node;                  /* sysfs node index */
        uint32_t gpu_id;
        unsigned render_minor;
        uint32_t gfx_target_version;
        uint64_t vram_size;
        bool large_bar;                 /* mem_banks/0 heap_type 1 */
        uint64_t hive_id;
        uint32_t capability;
} TestGpu;

typedef struct TestTopo {
        unsigned n_nodes;
        unsigned n_gpus;
        TestGpu gpus[TEST_MAX_GPUS];
} TestTopo;

int test_topo_read(TestTopo *ret);
/* VRAM of gpu a can be mapped into the VM of gpu b: same GPU, XGMI io_link or a p2p_link. */
bool test_topo_peer_accessible(const TestTopo *t, unsigned a, unsigned b);

/* ---- a KFD process ---- */

typedef struct TestKfd {
        int fd;
        int render[TEST_MAX_GPUS];      /* by index into topo.gpus */
        TestTopo topo;
        uint64_t next_va;
} TestKfd;

/* Open /dev/kfd and every render node; acquire the VM of every GPU when asked. */
void test_kfd_open(TestKfd *k, bool acquire);
void test_kfd_close(TestKfd *k);

int test_ioctl(int fd, unsigned long cmd, void *arg);

/* A fresh GPU VA, 2 MiB aligned, never reused within one process. */
uint64_t test_va(TestKfd *k, uint64_t size);

int test_alloc(TestKfd *k, uint32_t gpu_id, uint64_t va, uint64_t size, uint32_t flags,
               uint64_t *ret_handle, uint64_t *ret_mmap_offset);
int test_alloc_vram(TestKfd *k, unsigned gpu, uint64_t size, uint64_t *ret_handle);
int test_map(TestKfd *k, uint64_t handle, const uint32_t *ids, uint32_t n, uint32_t *io_n_success);
int test_unmap(TestKfd *k, uint64_t handle, const uint32_t *ids, uint32_t n, uint32_t *io_n_success);
int test_free(TestKfd *k, uint64_t handle);
int test_available(TestKfd *k, uint32_t gpu_id, uint64_t *ret);

/* The 1.11 header spells WRITABLE (1 << 31), an int overflow UBSan reports; the same bit, unsigned. */
#define ALLOC_FLAG_WRITABLE (1U << 31)

#define VRAM_FLAGS (KFD_IOC_ALLOC_MEM_FLAGS_VRAM | ALLOC_FLAG_WRITABLE | \
                    KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE)
#define VRAM_PUBLIC_FLAGS (VRAM_FLAGS | KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC)
#define GTT_FLAGS (KFD_IOC_ALLOC_MEM_FLAGS_GTT | ALLOC_FLAG_WRITABLE)
#define USERPTR_FLAGS (KFD_IOC_ALLOC_MEM_FLAGS_USERPTR | ALLOC_FLAG_WRITABLE)

/* ---- kfdemu-ctl ---- */

/* Run kfdemu-ctl with the arguments (NULL-terminated) and without the preload; returns its exit status. */
int test_ctl(const char *arg, ...) __attribute__((sentinel));
/* kfdemu-ctl dump, parsed. */
json_t *test_dump(void);
/* The same without call statistics and fault counters: what must not leak. */
json_t *test_dump_state(void);
/* Arm a fault; aborts if kfdemu-ctl refuses it. */
void test_fault(const char *spec);

/* ---- SCM_RIGHTS ---- */

int test_send_fd(int sock, int fd);
int test_recv_fd(int sock);

/* ---- running a table of tests ---- */

typedef struct TestCase {
        const char *name;
        void (*run)(void);
} TestCase;

/* argv[1] names one test (or "--list"); without it every test runs in order. */
int test_main(const TestCase *tests, size_t n, int argc, char *argv[]);

#define TEST(fn) { #fn + 5, fn }       /* "test_foo" → "foo" */
