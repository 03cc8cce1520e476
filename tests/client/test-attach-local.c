/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Sharing and svmd_attach_local() across processes over the emulated node
 * (svmd-harness --emulate-command): the owner allocates and attaches its range
 * locally, writes through its mapping and shares a token; an importer in
 * another process attaches the token into its own KFD context and reads the
 * bytes through its mapping (and the owner sees the importer's writes).
 * Failures (address in use, a MAP fault half-way, unknown GPU, bad token)
 * leave nothing behind in the importer's KFD context or address space.
 * An svm range is registered in the importer's context with the range's SVM
 * attributes (and dropped again at detach), also when SET_ATTR fails half-way.
 *
 *   test-attach-local KFDEMU-CTL
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <svmd/svmd.h>

#include "macro.h"
#include "svmd-assert.h"
#include "unit-assert.h"

#define MiB (UINT64_C(1) << 20)

static const char *kfdemu_ctl;
static uint32_t gpus[SVMD_MAX_GPUS];
static size_t n_gpus;

#define ASSERT_SVMD_ERROR(r, e, err)                                                            \
        do {                                                                                    \
                fprintf(stderr, "   expected failure: %d %s: %s\n", (int) (r),                  \
                        (e)->name ?: "-", (e)->message ?: "-");                                 \
                ASSERT_EQ((r), -(err));                                                         \
                ASSERT_TRUE((e)->name && (e)->message);                                         \
                svmd_error_free(e);                                                             \
        } while (0)

/* Run kfdemu-ctl (without the emulator preloaded, as its documentation asks); stdout into *ret. */
static int ctl(char **ret, const char *a1, const char *a2, const char *a3) {
        int pipefd[2], status;
        char *out = NULL;
        size_t size = 0;
        FILE *f;
        pid_t pid;

        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                dup2(pipefd[1], STDOUT_FILENO);
                unsetenv("LD_PRELOAD");
                execl(kfdemu_ctl, kfdemu_ctl, a1, a2, a3, (char *) NULL);
                _exit(127);
        }
        close(pipefd[1]);
        f = open_memstream(&out, &size);
        for (;;) {
                char buf[4096];
                ssize_t n = read(pipefd[0], buf, sizeof(buf));
                if (n <= 0)
                        break;
                fwrite(buf, 1, (size_t) n, f);
        }
        fclose(f);
        close(pipefd[0]);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        if (ret)
                *ret = out;
        else
                free(out);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* KFD handles the emulated kernel holds for process pid. */
static size_t kernel_handles(pid_t pid) {
        _cleanup_free_ char *out = NULL;
        json_t *dump, *p;
        size_t i, n = 0;

        ASSERT_EQ(ctl(&out, "dump", NULL, NULL), 0);
        dump = json_loads(out, 0, NULL);
        ASSERT_NOT_NULL(dump);
        json_array_foreach(json_object_get(dump, "processes"), i, p)
                if (json_integer_value(json_object_get(p, "pid")) == pid)
                        n += json_array_size(json_object_get(p, "handles"));
        json_decref(dump);
        return n;
}

/* The SVM ranges the emulated kernel holds for process pid (a new reference). */
static json_t *kernel_svm(pid_t pid) {
        _cleanup_free_ char *out = NULL;
        json_t *dump, *p, *ret = NULL;
        size_t i;

        ASSERT_EQ(ctl(&out, "dump", NULL, NULL), 0);
        dump = json_loads(out, 0, NULL);
        ASSERT_NOT_NULL(dump);
        json_array_foreach(json_object_get(dump, "processes"), i, p)
                if (json_integer_value(json_object_get(p, "pid")) == pid)
                        ret = json_incref(json_object_get(p, "svm"));
        json_decref(dump);
        return ret ?: json_array();
}

static size_t kernel_svm_ranges(pid_t pid) {
        json_t *a = kernel_svm(pid);
        size_t n = json_array_size(a);

        json_decref(a);
        return n;
}

static bool json_has_u32(json_t *a, uint32_t v) {
        size_t i;
        json_t *x;

        json_array_foreach(a, i, x)
                if ((uint32_t) json_integer_value(x) == v)
                        return true;
        return false;
}

static bool address_free(uint64_t va, uint64_t size) {
        void *p = mmap((void *) (uintptr_t) va, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                       -1, 0);

        if (p == MAP_FAILED)
                return false;
        munmap(p, size);
        return p == (void *) (uintptr_t) va;
}

static svmd_client *connect_client(void) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_client *c = NULL;
        int r;

        r = svmd_client_new(&c, NULL, NULL, 0, &e);
        ASSERT_SVMD_OK(r, &e);
        return c;
}

/* ---- the importer, in its own process ---- */

typedef struct Job {
        char token[256];
        uint64_t va;
        uint64_t size;
        bool cpu;               /* host-visible: compare bytes */
        bool svm;               /* an svm range: registered, not imported */
} Job;

/* The svm ranges the owner shares: preferred on gpus[0], gpus[2] accesses in place, these flags. */
#define SVM_TEST_FLAGS (SVMD_SVM_FLAG_COHERENT | SVMD_SVM_FLAG_GPU_EXEC)
#define SVM_TEST_GRANULARITY 5

static void importer_failures(svmd_client *c, const Job *j) {
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t va = 0;
        char spec[256];
        void *p;
        int r;

        /* Something already lives at the range's address. */
        p = mmap((void *) (uintptr_t) j->va, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        ASSERT_TRUE(p == (void *) (uintptr_t) j->va);
        r = svmd_attach_local(c, j->token, gpus, 2, &va, &e);
        ASSERT_TRUE(e.message && strstr(e.message, "already has a mapping"));
        ASSERT_SVMD_ERROR(r, &e, EEXIST);
        munmap(p, 4096);
        ASSERT_UEQ(kernel_handles(getpid()), 0);

        /* MAP fails on the third GPU after two were mapped: those two are unmapped, the import freed. */
        snprintf(spec, sizeof(spec), "ioctl=MAP_MEMORY_TO_GPU errno=ENOMEM after=2 pid=%d", (int) getpid());
        ASSERT_EQ(ctl(NULL, "fault", "add", spec), 0);
        r = svmd_attach_local(c, j->token, gpus, 4, &va, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOMEM);
        ASSERT_EQ(ctl(NULL, "fault", "clear", NULL), 0);
        ASSERT_UEQ(kernel_handles(getpid()), 0);
        ASSERT_TRUE(address_free(j->va, j->size));

        r = svmd_attach_local(c, j->token, (uint32_t[]) { 0x1 }, 1, &va, &e);
        ASSERT_SVMD_ERROR(r, &e, ENXIO);
        ASSERT_TRUE(address_free(j->va, j->size));

        r = svmd_attach_local(c, "no-such-token", gpus, 1, &va, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOKEY);

        r = svmd_attach_local(c, j->token, (uint32_t[]) { gpus[0], gpus[0] }, 2, &va, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL);

        r = svmd_detach_local(c, j->va, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOENT);
}

static void fault(const char *format, ...) _printf_(1, 2);
static void fault(const char *format, ...) {
        char spec[256];
        va_list ap;

        va_start(ap, format);
        vsnprintf(spec, sizeof(spec), format, ap);
        va_end(ap);
        ASSERT_EQ(ctl(NULL, "fault", "add", spec), 0);
}

static void importer_svm_failures(svmd_client *c, const Job *j) {
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t va = 0;
        void *p;
        int r;

        /* Something already lives at the range's address. */
        p = mmap((void *) (uintptr_t) j->va, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        ASSERT_TRUE(p == (void *) (uintptr_t) j->va);
        r = svmd_attach_local(c, j->token, gpus, 2, &va, &e);
        ASSERT_SVMD_ERROR(r, &e, EEXIST);
        munmap(p, 4096);

        /* SET_ATTR applies two attributes, then fails: the prior ones are set back, the address released. */
        fault("ioctl=SVM op=set after=2 errno=EIO pid=%d", (int) getpid());
        r = svmd_attach_local(c, j->token, &gpus[1], 2, &va, &e);
        ASSERT_TRUE(e.message && strstr(e.message, "nothing was changed"));
        ASSERT_SVMD_ERROR(r, &e, EIO);
        ASSERT_EQ(ctl(NULL, "fault", "clear", NULL), 0);
        ASSERT_UEQ(kernel_svm_ranges(getpid()), 0);
        ASSERT_TRUE(address_free(j->va, j->size));

        /* Setting them back fails too: dropping the mapping drops the kernel's range anyway. */
        fault("ioctl=SVM op=set after=1 errno=EIO count=2 pid=%d", (int) getpid());
        r = svmd_attach_local(c, j->token, &gpus[1], 2, &va, &e);
        ASSERT_SVMD_ERROR(r, &e, EIO);
        ASSERT_EQ(ctl(NULL, "fault", "clear", NULL), 0);
        ASSERT_UEQ(kernel_svm_ranges(getpid()), 0);
        ASSERT_TRUE(address_free(j->va, j->size));

        /* The prior attributes cannot be read: nothing is set. */
        fault("ioctl=SVM op=get errno=EIO pid=%d", (int) getpid());
        r = svmd_attach_local(c, j->token, &gpus[1], 2, &va, &e);
        ASSERT_SVMD_ERROR(r, &e, EIO);
        ASSERT_EQ(ctl(NULL, "fault", "clear", NULL), 0);
        ASSERT_UEQ(kernel_svm_ranges(getpid()), 0);
        ASSERT_TRUE(address_free(j->va, j->size));

        r = svmd_attach_local(c, j->token, (uint32_t[]) { 0x1 }, 1, &va, &e);
        ASSERT_SVMD_ERROR(r, &e, ENXIO);
        ASSERT_TRUE(address_free(j->va, j->size));

        /* CPU access only: mapped, not registered. */
        r = svmd_attach_local(c, j->token, NULL, 0, &va, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(va, j->va);
        ASSERT_UEQ(kernel_svm_ranges(getpid()), 0);
        ASSERT_UEQ(((const uint8_t *) (uintptr_t) va)[1], (uint8_t) 8);
        r = svmd_detach_local(c, va, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(address_free(j->va, j->size));
}

/* The importer's registration of the svm range: its attributes, access for gpus[1] and (in place) gpus[2]. */
static void check_svm_registered(const Job *j) {
        json_t *a = kernel_svm(getpid()), *r;

        ASSERT_UEQ(json_array_size(a), 1);
        r = json_array_get(a, 0);
        ASSERT_UEQ(json_integer_value(json_object_get(r, "start")), j->va);
        ASSERT_UEQ(json_integer_value(json_object_get(r, "size")), j->size);
        ASSERT_UEQ(json_integer_value(json_object_get(r, "preferred_loc")), gpus[0]);
        ASSERT_UEQ(json_integer_value(json_object_get(r, "flags")), SVM_TEST_FLAGS);
        ASSERT_UEQ(json_integer_value(json_object_get(r, "granularity")), SVM_TEST_GRANULARITY);
        ASSERT_TRUE(json_has_u32(json_object_get(r, "access"), gpus[1]));
        ASSERT_FALSE(json_has_u32(json_object_get(r, "access"), gpus[2]));
        ASSERT_TRUE(json_has_u32(json_object_get(r, "access_in_place"), gpus[2]));
        ASSERT_FALSE(json_has_u32(json_object_get(r, "access"), gpus[0]));
        json_decref(a);
}

static int importer(int in_fd, int out_fd) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_client *c;
        Job j;
        int r;

        c = connect_client();
        while (read(in_fd, &j, sizeof(j)) == (ssize_t) sizeof(j)) {
                uint64_t va = 0;
                char ok = 1;

                fprintf(stderr, "   importer %d: token for 0x%" PRIx64 "+0x%" PRIx64 "\n", (int) getpid(), j.va, j.size);
                if (j.svm)
                        importer_svm_failures(c, &j);
                else
                        importer_failures(c, &j);

                r = svmd_attach_local(c, j.token, &gpus[1], 2, &va, &e);
                ASSERT_SVMD_OK(r, &e);
                ASSERT_UEQ(va, j.va);
                if (j.svm) {
                        ASSERT_UEQ(kernel_handles(getpid()), 0);
                        check_svm_registered(&j);
                } else
                        ASSERT_UEQ(kernel_handles(getpid()), 1);
                if (j.cpu) {
                        const uint8_t *b = (const uint8_t *) (uintptr_t) va;

                        /* The owner's bytes, read through our own mapping. */
                        for (uint64_t i = 0; i < j.size; i += 4093)
                                ASSERT_UEQ(b[i], (uint8_t) (i * 7 + 1));
                        ASSERT_UEQ(b[j.size - 1], (uint8_t) ((j.size - 1) * 7 + 1));
                        memset((void *) (uintptr_t) (va + j.size / 2), 0xa5, 4096);
                }
                r = svmd_detach_local(c, va, &e);
                ASSERT_SVMD_OK(r, &e);
                ASSERT_UEQ(kernel_handles(getpid()), 0);
                ASSERT_UEQ(kernel_svm_ranges(getpid()), 0);
                ASSERT_TRUE(address_free(j.va, j.size));
                ASSERT_EQ(write(out_fd, &ok, 1), 1);
        }
        svmd_client_free(c);
        return 0;
}

/* ---- the owner ---- */

static void share_one(svmd_client *c, int to_importer, int from_importer, uint64_t size, const char *domain,
                      const char *const *flags, bool cpu) {
        static const char *const svm_flags[] = { "coherent", "gpu-exec", NULL };
        svmd_svm_attributes svm = {
                .set = SVMD_SVM_SET_FLAGS | SVMD_SVM_SET_GRANULARITY,
                .flags = svm_flags,
                .granularity = SVM_TEST_GRANULARITY,
                .access_in_place = &gpus[2],
                .n_access_in_place = 1,
        };
        bool is_svm = streq(domain, "svm");
        svmd_error e = SVMD_ERROR_NULL;
        _cleanup_free_ char *token = NULL;
        char id_s[32], ok = 0;
        svmd_allocation a;
        uint64_t va;
        Job j = {};
        int r;

        fprintf(stderr, "== %s%s\n", domain, flags && flags[1] ? " public" : "");
        r = svmd_allocate(c, size, gpus[0], domain,
                          &(svmd_allocate_options) { .flags = flags, .svm = is_svm ? &svm : NULL }, &a, &e);
        ASSERT_SVMD_OK(r, &e);
        snprintf(id_s, sizeof(id_s), "%" PRIu64, a.id);

        /* The owner uses its range in its own process too (Export). */
        r = svmd_attach_local(c, id_s, gpus, 1, &va, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(va, a.va);
        if (is_svm)
                ASSERT_UEQ(kernel_svm_ranges(getpid()), 1);
        if (cpu)
                for (uint64_t i = 0; i < size; i++)
                        ((uint8_t *) (uintptr_t) va)[i] = (uint8_t) (i * 7 + 1);

        r = svmd_share(c, a.id, &(svmd_grant) { .has_uid = true, .uid = getuid() }, &token, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(strlen(token) < sizeof(j.token));
        snprintf(j.token, sizeof(j.token), "%s", token);
        j.va = a.va;
        j.size = size;
        j.cpu = cpu;
        j.svm = is_svm;
        ASSERT_EQ(write(to_importer, &j, sizeof(j)), (ssize_t) sizeof(j));
        ASSERT_EQ(read(from_importer, &ok, 1), 1);
        ASSERT_EQ(ok, 1);
        if (cpu)
                /* And the importer's write, through ours. */
                ASSERT_UEQ(((uint8_t *) (uintptr_t) (va + size / 2))[100], 0xa5);

        r = svmd_detach_local(c, va, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(kernel_svm_ranges(getpid()), 0);
        r = svmd_free(c, a.id, &e);
        ASSERT_SVMD_OK(r, &e);
}

static void test_sharing_calls(svmd_client *c) {
        svmd_error e = SVMD_ERROR_NULL;
        _cleanup_free_ char *token = NULL;
        svmd_attachment at;
        svmd_allocation a;
        svmd_usage u0, u1;
        uint64_t va, size;
        int r, fd;

        fprintf(stderr, "== sharing calls\n");
        r = svmd_get_usage(c, NULL, &u0, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(strncmp(u0.scope, "uid:", 4) == 0);

        r = svmd_allocate(c, 2 * MiB, gpus[1], "vram", NULL, &a, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_get_usage(c, "", &u1, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(u1.ranges, u0.ranges + 1);
        ASSERT_UEQ(u1.vram, u0.vram + 2 * MiB);

        r = svmd_export(c, a.id, &fd, &va, &size, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(fd >= 0);
        ASSERT_UEQ(va, a.va);
        ASSERT_UEQ(size, 2 * MiB);
        close(fd);

        r = svmd_share(c, a.id, NULL, &token, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_attach(c, token, &at, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(at.id, a.id);
        ASSERT_UEQ(at.va, a.va);
        ASSERT_UEQ(at.size, 2 * MiB);
        close(at.fd);
        r = svmd_release(c, a.id, &e);
        ASSERT_SVMD_OK(r, &e);

        r = svmd_export(c, UINT64_C(999999), &fd, NULL, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOENT);
        r = svmd_attach(c, "0123456789abcdef", &at, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOKEY);
        r = svmd_get_usage(c, "nonsense", &u1, &e);
        ASSERT_TRUE(r < 0);
        svmd_error_free(&e);

        r = svmd_reload(c, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_free(c, a.id, &e);
        ASSERT_SVMD_OK(r, &e);
}

int main(int argc, char *argv[]) {
        static const char *const public_flags[] = { "writable", "public", NULL };
        static const char *const private_flags[] = { "writable", NULL };
        _cleanup_free_ svmd_gpu *g = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        int to_child[2], from_child[2], status, r;
        svmd_client *c;
        pid_t pid;

        if (argc != 2 || !getenv("KFDEMU_DIR")) {
                fprintf(stderr, "usage: svmd-harness --emulate-command … -- test-attach-local KFDEMU-CTL\n");
                return 2;
        }
        kfdemu_ctl = argv[1];

        /* The importer forks before the owner opens its KFD context: each has its own. */
        ASSERT_OK(pipe2(to_child, O_CLOEXEC));
        ASSERT_OK(pipe2(from_child, O_CLOEXEC));

        c = connect_client();
        r = svmd_list_gpus(c, &g, &n_gpus, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(n_gpus >= 4);
        for (size_t i = 0; i < n_gpus; i++)
                gpus[i] = g[i].gpu_id;
        svmd_client_free(c);

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                close(to_child[1]);
                close(from_child[0]);
                _exit(importer(to_child[0], from_child[1]));
        }
        close(to_child[0]);
        close(from_child[1]);

        c = connect_client();
        test_sharing_calls(c);
        share_one(c, to_child[1], from_child[0], 4 * MiB + 8192, "vram", public_flags, true);
        share_one(c, to_child[1], from_child[0], 2 * MiB, "vram", private_flags, false);
        share_one(c, to_child[1], from_child[0], 3 * MiB, "gtt", private_flags, true);
        share_one(c, to_child[1], from_child[0], 1 * MiB, "host", private_flags, true);
        share_one(c, to_child[1], from_child[0], 2 * MiB + 4096, "svm", NULL, true);
        close(to_child[1]);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        /* Detaching everything the owner attached happens at free, too. */
        {
                svmd_allocation a;
                char id_s[32];
                uint64_t va;

                r = svmd_allocate(c, MiB, gpus[0], "gtt", NULL, &a, &e);
                ASSERT_SVMD_OK(r, &e);
                snprintf(id_s, sizeof(id_s), "%" PRIu64, a.id);
                r = svmd_attach_local(c, id_s, gpus, 2, &va, &e);
                ASSERT_SVMD_OK(r, &e);
                ASSERT_UEQ(kernel_handles(getpid()), 1);
                svmd_client_free(c);
                ASSERT_UEQ(kernel_handles(getpid()), 0);
                ASSERT_TRUE(address_free(a.va, MiB));
        }
        return 0;
}
