/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The inside of svmd_client: the bus connection, the direct connection to
 * io.socket, one epoll fd over both for callers' event loops, the signal
 * subscription and what svmd_attach_local() attached. sd-bus types stay here
 * and in the .c files; the public header has none.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>

#include "macro.h"
#include "svmd/svmd.h"

typedef struct LocalImport LocalImport;

/*
 * Symbol versions (libsvmd.sym). A call whose public struct grew is defined
 * as NAME_v0_2 and exported as the default NAME@@LIBSVMD_0.2; compat.c
 * defines NAME_v0_1, exported as NAME@LIBSVMD_0.1, for binaries built against
 * the smaller struct. Put SYMVER() right before the definition.
 */
#ifdef __has_attribute
#  if __has_attribute(__symver__)
#    define HAVE_SYMVER_ATTRIBUTE 1
#  endif
#endif
#ifdef HAVE_SYMVER_ATTRIBUTE
#  define SYMVER(impl, sym) __attribute__((__symver__(sym)))
#else
#  define SYMVER(impl, sym) __asm__(".symver " #impl "," sym);
#endif
/* The implementation has exactly the type the header declares. */
#define ASSERT_SAME_TYPE(a, b) \
        _Static_assert(__builtin_types_compatible_p(__typeof__(a), __typeof__(b)), #b " does not match " #a)

int svmd_allocate_v0_2(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain,
                       const svmd_allocate_options *options, svmd_allocation *ret, svmd_error *error);
int svmd_allocate_async_v0_2(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain,
                             const svmd_allocate_options *options, svmd_allocate_callback callback, void *userdata,
                             svmd_error *error);
int svmd_commit_v0_2(svmd_client *c, const svmd_op *ops, size_t n_ops, const svmd_change_options *options,
                     svmd_op_result *results, svmd_error *error);
int svmd_commit_async_v0_2(svmd_client *c, const svmd_op *ops, size_t n_ops, const svmd_change_options *options,
                           svmd_commit_callback callback, void *userdata, svmd_error *error);
int svmd_get_status_v0_2(svmd_client *c, svmd_status *ret, svmd_error *error);
int svmd_list_ranges_v0_2(svmd_client *c, const svmd_range_filter *filter, svmd_range **ret, size_t *ret_n,
                          svmd_error *error);

struct svmd_client {
        sd_bus *bus;            /* NULL with SVMD_CLIENT_DIRECT_ONLY */
        sd_bus *direct;         /* NULL while io.socket is not reachable */
        char *direct_path;
        uint64_t direct_retry_usec;     /* CLOCK_MONOTONIC of the last connection attempt */
        uint32_t flags;
        int epoll_fd;
        size_t n_pending;

        sd_bus_slot *signal_slots[8];   /* one per entry of signal.c's signal_table */
        svmd_signal_callback signal_callback;
        void *signal_userdata;

        LocalImport *imports;   /* attach-local.c */
};

/*
 * The connection a call travels on. hot: a per-allocation call, which prefers
 * the direct socket (reconnecting once if it went away) and falls back to the bus.
 */
sd_bus *client_pick(svmd_client *c, bool hot);

/* A method call on the manager, on the connection client_pick() chose. */
int client_new_call(svmd_client *c, bool hot, const char *member, sd_bus_message **ret, svmd_error *error);
/* Send and wait; the reply in *ret_reply (may be NULL); D-Bus errors land in *error. */
int client_call(svmd_client *c, sd_bus_message *m, sd_bus_message **ret_reply, svmd_error *error);
/* Drop a direct connection that broke, delivering what its pending calls are owed. */
void client_drop_direct(svmd_client *c);
/* Bring the epoll registration up to date with what each connection waits for. */
int client_update_epoll(svmd_client *c);

/* ---- environment.c (docs/containers.md) ---- */

/* $SVMD_DIRECT_ONLY is set to 1: no bus, everything over io.socket. */
bool environment_direct_only(void);
/* The GPU ids the SVMD_VISIBLE_GPU* variables name: 1 and a malloc()ed array (maybe empty: only
 * invalid ids named), 0 if no such variable is set (every GPU is visible), or -ENOMEM. */
int environment_visible_gpus(uint32_t **ret, size_t *ret_n);

/* ---- error.c ---- */

/* Fill e (may be NULL) from a D-Bus error; returns the negative errno it stands for. */
int error_from_bus(svmd_error *e, const sd_bus_error *be, int r);
/* Fill e (may be NULL) with name (NULL: "System.Error.E…" of r) and a message; returns r (negative). */
int error_setf(svmd_error *e, int r, const char *name, const char *format, ...) _printf_(4, 5);
/* Make sd_bus_error_get_errno() know svmd's error names (once per process). */
void error_register_map(void);

/* ---- request.c: building requests and reading replies, shared by sync and async calls ---- */

/* svm: the svm-* keys to add (o->svm for Allocate; never read from o, which may be a 0.1 struct). */
int request_append_allocate_options(sd_bus_message *m, const svmd_allocate_options *o,
                                    const svmd_svm_attributes *svm);
int request_append_change_options(sd_bus_message *m, const svmd_change_options *o);
int request_append_u32_array(sd_bus_message *m, const uint32_t *ids, size_t n);
int request_append_host_ranges(sd_bus_message *m, const svmd_host_range *ranges, size_t n);
/* Checks what the daemon would refuse anyway, before anything travels. */
int request_check_gpus(const uint32_t *ids, size_t n, bool need_one, svmd_error *error);
/* The same for SVM attributes; context ("Operation 3: " or "") starts each message. */
int request_check_svm(const svmd_svm_attributes *a, const char *context, svmd_error *error);
int request_build_commit(svmd_client *c, const svmd_op *ops, size_t n_ops, const svmd_change_options *o,
                         sd_bus_message **ret, svmd_error *error);
int request_build_allocate(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain,
                           const svmd_allocate_options *o, sd_bus_message **ret, svmd_error *error);
int request_build_map(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n, const svmd_change_options *o,
                      sd_bus_message **ret, svmd_error *error);
int request_build_unmap(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n, sd_bus_message **ret,
                        svmd_error *error);
/* A call whose one argument is a range id (Free, Release). */
int request_build_id(svmd_client *c, const char *member, uint64_t id, sd_bus_message **ret, svmd_error *error);
int request_build_set_attributes(svmd_client *c, uint64_t id, const svmd_svm_attributes *attrs,
                                 const svmd_change_options *o, sd_bus_message **ret, svmd_error *error);
int reply_read_allocation(sd_bus_message *reply, svmd_allocation *ret);
/* *ret is malloc()ed, *ret_n entries. */
int reply_read_commit_results(sd_bus_message *reply, svmd_op_result **ret, size_t *ret_n);

/* ---- call.c ---- */

/* One range object's Domain (into domain[size]) and, for svm ranges (*ret_is_svm), its SvmAttributes. */
int range_get_svm(svmd_client *c, uint64_t id, char *domain, size_t size, bool *ret_is_svm, svmd_svm_state *ret,
                  svmd_error *error);

/* ---- attach-local.c ---- */

void attach_local_detach_all(svmd_client *c);
