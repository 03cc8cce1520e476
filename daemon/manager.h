/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The Manager: owns the event loop, the bus connection and the direct socket,
 * the KFD context (kfd/), the SVM address space, the GPUs and the range table.
 * One per daemon; everything runs on its sd-event loop.
 */

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "fd-slots.h"
#include "conf.h"
#include "executor.h"
#include "id-index.h"
#include "id-table.h"
#include "kfd-device.h"
#include "macro.h"
#include "va-space.h"

typedef struct Gpu Gpu;
typedef struct Context Context;
typedef struct StrTable StrTable;
typedef struct QuotaTable QuotaTable;
typedef struct PolkitRegistry PolkitRegistry;
typedef struct Journal Journal;
typedef struct Metrics Metrics;

typedef struct LostRange {
        uint64_t id;
        char *reason;
} LostRange;
typedef struct Range Range;
typedef struct RequestCache RequestCache;
typedef struct DirectServer DirectServer;
typedef struct Client Client;
typedef struct Health Health;
typedef struct Slab Slab;

typedef enum BusKind {
        BUS_KIND_SYSTEM,
        BUS_KIND_SESSION,
        BUS_KIND_ADDRESS,       /* an explicit address (tests: a private dbus-daemon) */
        BUS_KIND_NONE,          /* direct socket only */
} BusKind;

typedef struct ManagerOptions {
        const char *config_path;        /* NULL: SVMD_CONFIG_FILE */
        BusKind bus_kind;
        const char *bus_address;        /* BUS_KIND_ADDRESS */
        const char *runtime_dir;        /* NULL: SVMD_RUNTIME_DIR */
} ManagerOptions;

typedef struct Manager {
        sd_event *event;
        sd_bus *bus;
        BusKind bus_kind;
        char *bus_address;
        DirectServer *direct;

        char *config_path;
        Config config;
        char *runtime_dir;

        KfdDevice *kfd;
        int kfd_fd;                     /* borrowed from kfd: the primary context's */
        Context **contexts;             /* [0]: the primary KFD context; secondary ones after it (context.h) */
        unsigned n_contexts;
        Executor *executor;             /* runs the KFD ioctls of requests (executor.h) */
        JobClaim alloc_claim;           /* a Commit with several allocations in flight (commit.c) */
        StrTable *requests_in_flight;   /* "uid\x1frequest-id" → its first call, in flight (method-util.c) */
        uint32_t kfd_major, kfd_minor;
        bool xnack;                     /* XNACK mode of our KFD process (SVM page faults) */
        Gpu **gpus;                     /* index = bit in range mapping masks */
        size_t n_gpus;

        VaSpace *va;
        IdIndex *ranges;                /* id → Range, in id order (ListRanges' cursor, repair slices) */
        Slab *range_slab;               /* Ranges other than batch ranges (range_create()) */
        uint64_t next_range_id;
        uint64_t ids_reserved;          /* journaled: ids below it may have been handed out */
        uint64_t bytes_allocated;
        size_t n_degraded;

        RequestCache *requests;
        StrTable *clients;              /* bus unique name / "direct:<peer>" → Client */
        Client *subscribers;            /* clients that called Subscribe (Client.subscriber_next) */
        StrTable *identities;           /* → Identity */
        StrTable *tokens;               /* share token → Token */
        StrTable *range_requests;       /* "uid\x1frequest-id" → persistent Range it created */
        QuotaTable *quotas;
        PolkitRegistry *polkit;
        Metrics *metrics;               /* calls, errors, latency, rollbacks, starts (metrics.h) */
        uint64_t n_persistent;
        uint64_t fdnames_bytes;         /* "<name>:" of every fd in the fd store (LISTEN_FDNAMES) */
        uint64_t n_stored_fds;          /* fds svmd keeps in the fd store */
        FdSlots fd_slots;               /* their names (fd-slots.h) */

        Journal *journal;               /* persistent ranges, for restarts */
        sd_event_source *compact_event; /* a compaction after the current request (persist.c) */
        unsigned n_transactions_open;   /* of persistent ranges: a snapshot waits until none is (persist_compact()) */
        bool compact_deferred;          /* and one is due then: compact_gate is held */
        JobClaim compact_gate;          /* new requests on persistent ranges wait for that compaction */
        uint64_t runtime_free, runtime_size;    /* bytes of the runtime directory's filesystem */
        bool runtime_low;               /* warned that it is running out */
        bool fdstore;                   /* a service manager keeps fds for us (NOTIFY_SOCKET) */
        bool recovering;                /* restoring at start: nothing to journal */
        struct Recovery *recovery;      /* the recovery at start, while it runs (persist.c) */
        bool started;                   /* READY=1 sent */
        LostRange *lost;                /* recorded ranges that could not be restored */
        size_t n_lost;

        Health *health;                 /* SMI listeners, resets, VM faults (health.h) */

        sd_event_source *repair_timer;
        uint64_t repair_cursor;         /* the next range id a sliced repair pass looks at; 0: none */
        size_t repair_failed;           /* ranges this pass could not repair yet */
        bool repair_running, repair_again;      /* a slice runs as a job; the timer fired meanwhile */
        Client *teardown_head, *teardown_tail;  /* gone clients with ranges left to free (client.h) */
        sd_event_source *teardown_event;
        bool teardown_running;          /* a slice is running as a job (client.c) */
        sd_event_source *publish_event;         /* coalesced PropertiesChanged (manager_properties_dirty()) */
        uint64_t published_usec;        /* when they last went out (CLOCK_MONOTONIC) */
        uint64_t dirty_gpus;
        bool dirty_manager;
        sd_event_source *status_timer;
        unsigned repair_attempt;
        sd_event_source *sigterm, *sigint, *sighup;
        sd_event_source *watchdog_timer;
        uint64_t watchdog_usec;
        bool exiting;
        struct Revocation *revocations; /* revocations waiting for their holders (revoke.h) */
        bool exit_when_idle;            /* SIGTERM came while jobs were in flight */
} Manager;

int manager_new(Manager **ret, const ManagerOptions *options);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Open the KFD context, reserve the window, connect and publish; then READY=1. */
int manager_start(Manager *m);
int manager_run(Manager *m);

/* Re-read the configuration; a bad file keeps the old one. */
int manager_reload(Manager *m, char **ret_error);

Gpu *manager_find_gpu(Manager *m, uint32_t gpu_id);
Range *manager_find_range(Manager *m, uint64_t id);
/* The range with the smallest id ≥ id, or NULL; then the next in id order. Walking on is O(1). */
Range *manager_ranges_from(Manager *m, uint64_t id);
Range *manager_ranges_next(Manager *m, const Range *range);
/* The persistent range an owner created with this request id (also before a restart). */
Range *manager_find_range_by_request(Manager *m, uid_t uid, const char *request_id);

/* Register the objects (manager, GPUs, ranges) on a connection: the bus or a direct peer. */
int manager_add_bus_objects(Manager *m, sd_bus *bus);

/* To the subscribed clients that may see the range (client_sees_range()), and no one else. */
void manager_emit_range_created(Manager *m, Range *range);
void manager_emit_range_freed(Manager *m, Range *range);
void manager_emit_range_properties_changed(Manager *m, Range *range, const char *path, const char *const *properties);
/* Node-wide properties: broadcast on the bus and sent to every subscribed direct peer. */
void manager_emit_properties_changed(Manager *m, const char *path, const char *interface,
                                     const char *const *properties);

/* CLOCK_MONOTONIC in µs, for the time budget of a slice of long work. */
uint64_t manager_now_usec(void);

/* Background repair of degraded ranges: start the timer if it is not running. */
void manager_schedule_repair(Manager *m);

void manager_update_status(Manager *m);

/* To the subscribed clients charged to the scope, and administrators. */
void manager_emit_quota_exceeded(Manager *m, const char *scope, const char *resource);

/* GPU (bit = Gpu.index) and manager counters changed: announced once, before the loop waits again. */
void manager_properties_dirty(Manager *m, uint64_t gpus, bool manager);
void manager_emit_gpu_lost(Manager *m, uint32_t gpu_id);

/* A signal to one client (unicast on the bus, or on its direct connection). */
typedef int (*ManagerAppendFunc)(sd_bus_message *msg, void *userdata);
void manager_send_to_client(Manager *m, Client *c, const char *path, const char *interface, const char *member,
                            ManagerAppendFunc append, void *userdata);
/* A signal to the subscribed clients that may see the range (client_sees_range()), and no one else. */
void manager_send_about_range(Manager *m, Range *range, const char *path, const char *interface,
                              const char *member, ManagerAppendFunc append, void *userdata);

/* Run fn on the bus and each subscribed direct peer; used to broadcast node-wide signals. */
void manager_foreach_bus(Manager *m, void (*fn)(sd_bus *bus, void *userdata), void *userdata);
