/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svmd-load: N client processes (uids 1, 2 and 65534 in turn, each with a
 * quota from load.conf) do random Allocate/Map/Unmap/Share/Attach/Release/
 * Free/Commit through libsvmd for a bounded time, while this controller
 * (root) kills clients with SIGKILL and starts new ones, arms KFD faults at a
 * low rate, and checks the daemon from outside:
 *
 *   continuously: the daemon answers and was never restarted; no two ranges
 *     overlap (ListRanges, and svmd's handles in the emulator's dump); every
 *     uid's usage stays within its quota (GetUsage); a killed client's ranges
 *     are gone once it is (unless another client still holds them);
 *   at the end of each round (clients paused): the daemon's ranges add up to
 *     the kernel's handles and mappings (bytes per domain, bytes × GPUs
 *     mapped), and each uid's usage to the ranges it owns; then every client
 *     frees everything: no range, the emulator's dump as at the start, usage
 *     zero, and svmd's VmRSS is sampled: it must not grow across rounds.
 *
 * Run under svmd-harness --config tests/load/load.conf. Prints ops/s and
 * p50/p99 latency per call (figures, not asserts); exits non-zero if an
 * invariant broke or a call failed in a way no client should ever see.
 *
 *   svmd-load [--clients N] [--duration SEC] [--rounds R] [--crash-interval-ms MS]
 *             [--fault-interval-ms MS] [--seed S] [--json FILE] [--only Call,…]
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <systemd/sd-bus.h>

#include "emu-kernel.h"
#include "svmd/svmd.h"

#define MAX_CLIENTS 64
#define MAX_OWN 12              /* ranges a client keeps (load.conf allows 16 per client) */
#define MAX_HELD 6
#define BOARD_SIZE 64
#define N_BUCKETS 160           /* quarter octaves of nanoseconds, from 1 ns */
#define MiB (UINT64_C(1) << 20)
#define KiB (UINT64_C(1) << 10)

static const uint32_t uids[] = { 1, 2, 65534 };

typedef enum OpKind {
        OP_ALLOCATE,
        OP_ALLOCATE_MAP,
        OP_MAP,
        OP_UNMAP,
        OP_FREE,
        OP_SHARE,
        OP_ATTACH,
        OP_RELEASE,
        OP_COMMIT,
        OP_USAGE,
        _OP_MAX,
} OpKind;

static const char *const op_names[_OP_MAX] = {
        "Allocate", "Allocate+map", "Map", "Unmap", "Free", "Share", "Attach", "Release", "Commit", "GetUsage",
};
static unsigned op_weights[_OP_MAX] = { 10, 14, 12, 10, 14, 6, 6, 5, 8, 2 };

typedef enum Phase {
        PHASE_RUN,
        PHASE_PAUSE,    /* finish the current call, then wait */
        PHASE_DRAIN,    /* free everything, then wait */
        PHASE_STOP,
} Phase;

typedef struct Hist {
        uint64_t n;
        uint64_t buckets[N_BUCKETS];
} Hist;

typedef struct Slot {
        pid_t pid;
        unsigned gen;
        uint32_t uid;
        volatile unsigned acked;        /* the round*4+phase the client has reached a stop in */
        volatile int in_call;           /* the OpKind of the call under way, or -1 */
        volatile uint64_t call_start_ns;
        uint64_t killed_ns;             /* when the controller sent SIGKILL, or 0 */
        uint64_t ok[_OP_MAX], refused[_OP_MAX];
        uint64_t unexpected, rollback_failed;
        Hist hist[_OP_MAX];
        char last_unexpected[256];
} Slot;

typedef struct Token {
        volatile unsigned seq;          /* odd while being written */
        char token[96];
} Token;

typedef struct Shared {
        volatile int phase;
        volatile unsigned round;
        Slot slots[MAX_CLIENTS];
        Token board[BOARD_SIZE];
        volatile unsigned board_next;
        /* retired clients' counters, added when a slot is reused */
        uint64_t ok[_OP_MAX], refused[_OP_MAX];
        Hist hist[_OP_MAX];
} Shared;

static Shared *S;
#define MAX_ROUNDS 64
#if defined(__SANITIZE_ADDRESS__)
/* svmd is built with ASan too: its quarantine holds freed memory back, RssAnon says nothing. */
static const bool check_rss = false;
#else
static const bool check_rss = true;
#endif
static unsigned arg_clients = 16, arg_rounds = 4;
static double arg_duration = 20;
static unsigned arg_crash_ms = 700, arg_fault_ms = 150;
static unsigned arg_seed;
static const char *arg_json;
static uint32_t gpus[64];
static size_t n_gpus;
static unsigned n_violations;
#define MAX_RECAP 16
static char *recap[MAX_RECAP];  /* the first violations, repeated at the end: logs often keep only the tail */

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...) {
        va_list ap;
        char *text = NULL;

        va_start(ap, fmt);
        if (vasprintf(&text, fmt, ap) < 0)
                text = NULL;
        va_end(ap);
        fprintf(stderr, "VIOLATION: %s\n", text ?: fmt);
        if (n_violations < MAX_RECAP)
                recap[n_violations] = text;
        else
                free(text);
        n_violations++;
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

static unsigned bucket_of(uint64_t ns) {
        unsigned b = ns <= 1 ? 0 : (unsigned) (log2((double) ns) * 4.0);
        return b < N_BUCKETS ? b : N_BUCKETS - 1;
}

static double bucket_upper_us(unsigned b) {
        return pow(2.0, (double) (b + 1) / 4.0) / 1000.0;
}

static double hist_quantile(const Hist *h, double q) {
        uint64_t want = (uint64_t) ceil(q * (double) h->n), seen = 0;

        if (h->n == 0)
                return 0;
        for (unsigned b = 0; b < N_BUCKETS; b++) {
                seen += h->buckets[b];
                if (seen >= want)
                        return bucket_upper_us(b);
        }
        return bucket_upper_us(N_BUCKETS - 1);
}

static void hist_add(Hist *into, const Hist *h) {
        into->n += h->n;
        for (unsigned b = 0; b < N_BUCKETS; b++)
                into->buckets[b] += h->buckets[b];
}

/* ---- the clients ---- */

typedef struct Own {
        uint64_t id, size;
        uint64_t mapped;        /* bit i: gpus[i] */
        bool vram, unsure;      /* unsure: a rollback failed; leave it to the repair until freed */
} Own;

typedef struct ClientState {
        svmd_client *c;
        Slot *slot;
        unsigned rnd;
        Own own[MAX_OWN];
        size_t n_own;
        uint64_t held[MAX_HELD];
        size_t n_held;
        char label[64];
} ClientState;

static unsigned rnd(ClientState *cs, unsigned n) {
        return (unsigned) (rand_r(&cs->rnd) % n);
}

/* What a client may legitimately be told; anything else is a daemon bug. Kernel and
 * RollbackFailed come only from injected faults: without them they are bugs too. */
static bool expected_error(const svmd_error *e) {
        static const char *const ok[] = {
                "org.svmd1.Error.QuotaExceeded", "org.svmd1.Error.OutOfMemory",
                "org.svmd1.Error.Busy", "org.svmd1.Error.NoSuchToken", "org.svmd1.Error.NoSuchRange",
                "org.freedesktop.DBus.Error.AccessDenied",
        };
        static const char *const from_faults[] = {
                "org.svmd1.Error.Kernel", "org.svmd1.Error.RollbackFailed",
        };
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
                if (svmd_error_has_name(e, ok[i]))
                        return true;
        for (size_t i = 0; arg_fault_ms > 0 && i < sizeof(from_faults) / sizeof(from_faults[0]); i++)
                if (svmd_error_has_name(e, from_faults[i]))
                        return true;
        return false;
}

/* Marks the call under way, for the controller's report when a client does not stop. */
static uint64_t call_begin(ClientState *cs, OpKind k) {
        uint64_t t0 = now_ns();

        cs->slot->call_start_ns = t0;
        __atomic_store_n(&cs->slot->in_call, (int) k, __ATOMIC_RELEASE);
        return t0;
}

static void record(ClientState *cs, OpKind k, uint64_t t0, int r, svmd_error *e) {
        Slot *s = cs->slot;
        uint64_t ns = now_ns() - t0;

        __atomic_store_n(&s->in_call, -1, __ATOMIC_RELEASE);

        s->hist[k].n++;
        s->hist[k].buckets[bucket_of(ns)]++;
        if (r >= 0)
                s->ok[k]++;
        else {
                s->refused[k]++;
                if (svmd_error_has_name(e, "org.svmd1.Error.RollbackFailed"))
                        s->rollback_failed++;
                if (!expected_error(e)) {
                        s->unexpected++;
                        snprintf(s->last_unexpected, sizeof(s->last_unexpected), "%s: %s: %s", op_names[k],
                                 e->name ?: "?", e->message ?: "");
                        fprintf(stderr, "client %d (uid %u): unexpected %s\n", (int) getpid(), s->uid,
                                s->last_unexpected);
                        /* The daemon is gone: nothing more to learn from this client. */
                        if (r == -ENOTCONN || r == -ECONNRESET ||
                            svmd_error_has_name(e, "org.freedesktop.DBus.Error.Disconnected") ||
                            svmd_error_has_name(e, "org.freedesktop.DBus.Error.ServiceUnknown")) {
                                svmd_error_free(e);
                                _exit(3);
                        }
                }
        }
        svmd_error_free(e);
}

static size_t pick_gpus(ClientState *cs, uint32_t *out, uint64_t *ret_mask, uint64_t exclude) {
        size_t n = 0;
        uint64_t mask = 0;

        for (size_t i = 0; i < n_gpus; i++)
                if (!(exclude & (UINT64_C(1) << i)) && rnd(cs, 2)) {
                        out[n++] = gpus[i];
                        mask |= UINT64_C(1) << i;
                }
        *ret_mask = mask;
        return n;
}

static size_t mask_to_gpus(uint64_t mask, uint32_t *out) {
        size_t n = 0;
        for (size_t i = 0; i < n_gpus; i++)
                if (mask & (UINT64_C(1) << i))
                        out[n++] = gpus[i];
        return n;
}

static void own_add(ClientState *cs, uint64_t id, uint64_t size, uint64_t mapped, bool vram) {
        if (cs->n_own < MAX_OWN)
                cs->own[cs->n_own++] = (Own) { .id = id, .size = size, .mapped = mapped, .vram = vram };
}

static void own_remove(ClientState *cs, size_t i) {
        cs->own[i] = cs->own[--cs->n_own];
}

static void publish_token(const char *token) {
        unsigned i = __atomic_fetch_add(&S->board_next, 1, __ATOMIC_RELAXED) % BOARD_SIZE;
        Token *t = &S->board[i];

        __atomic_fetch_add(&t->seq, 1, __ATOMIC_ACQ_REL);
        snprintf(t->token, sizeof(t->token), "%s", token);
        __atomic_fetch_add(&t->seq, 1, __ATOMIC_ACQ_REL);
}

static bool read_token(unsigned i, char *out, size_t size) {
        Token *t = &S->board[i % BOARD_SIZE];
        unsigned a = __atomic_load_n(&t->seq, __ATOMIC_ACQUIRE);

        if (a == 0 || (a & 1))
                return false;
        snprintf(out, size, "%s", t->token);
        return __atomic_load_n(&t->seq, __ATOMIC_ACQUIRE) == a;
}

static const uint64_t sizes[] = { 4 * KiB, 64 * KiB, 2 * MiB, 8 * MiB };
static const char *const domains[] = { "vram", "gtt", "host" };

static void do_allocate(ClientState *cs, bool map) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_allocation a;
        uint32_t ids[64];
        uint64_t mask = 0, size = sizes[rnd(cs, 4)];
        const char *domain = domains[rnd(cs, 3)];
        svmd_allocate_options o = { .label = cs->label };
        uint64_t t0;
        int r;

        if (cs->n_own >= MAX_OWN)
                return;
        if (strcmp(domain, "host") == 0 && size > 2 * MiB)
                size = 64 * KiB;
        if (map) {
                o.n_map = pick_gpus(cs, ids, &mask, 0);
                o.map = ids;
        }
        t0 = call_begin(cs, map ? OP_ALLOCATE_MAP : OP_ALLOCATE);
        r = svmd_allocate(cs->c, size, gpus[rnd(cs, (unsigned) n_gpus)], domain, &o, &a, &e);
        if (r >= 0)
                own_add(cs, a.id, size, mask, strcmp(domain, "vram") == 0);
        record(cs, map ? OP_ALLOCATE_MAP : OP_ALLOCATE, t0, r, &e);
}

static Own *pick_own(ClientState *cs, size_t *ret_i) {
        size_t i;

        if (cs->n_own == 0)
                return NULL;
        i = rnd(cs, (unsigned) cs->n_own);
        if (ret_i)
                *ret_i = i;
        return cs->own[i].unsure ? NULL : &cs->own[i];
}

static void do_map(ClientState *cs) {
        svmd_error e = SVMD_ERROR_NULL;
        uint32_t ids[64];
        uint64_t mask, t0;
        Own *o = pick_own(cs, NULL);
        size_t n;
        int r;

        if (!o)
                return;
        n = pick_gpus(cs, ids, &mask, 0);
        if (n == 0)
                return;
        t0 = call_begin(cs, OP_MAP);
        r = svmd_map(cs->c, o->id, ids, n, NULL, &e);
        if (r >= 0)
                o->mapped |= mask;
        else if (svmd_error_has_name(&e, "org.svmd1.Error.RollbackFailed"))
                o->unsure = true;
        record(cs, OP_MAP, t0, r, &e);
}

static void do_unmap(ClientState *cs) {
        svmd_error e = SVMD_ERROR_NULL;
        uint32_t ids[64];
        uint64_t mask = 0, t0;
        Own *o = pick_own(cs, NULL);
        size_t n;
        int r;

        if (!o || o->mapped == 0)
                return;
        for (size_t i = 0; i < n_gpus; i++)
                if ((o->mapped & (UINT64_C(1) << i)) && rnd(cs, 2))
                        mask |= UINT64_C(1) << i;
        if (mask == 0)
                mask = o->mapped;
        n = mask_to_gpus(mask, ids);
        t0 = call_begin(cs, OP_UNMAP);
        r = svmd_unmap(cs->c, o->id, ids, n, &e);
        if (r >= 0)
                o->mapped &= ~mask;
        else if (svmd_error_has_name(&e, "org.svmd1.Error.RollbackFailed"))
                o->unsure = true;
        record(cs, OP_UNMAP, t0, r, &e);
}

static int free_one(ClientState *cs, size_t i) {
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t t0 = call_begin(cs, OP_FREE);
        int r = svmd_free(cs->c, cs->own[i].id, &e);

        /* Freed, or freed past the point of no return (RollbackFailed is not possible for Free). */
        if (r >= 0 || svmd_error_has_name(&e, "org.svmd1.Error.NoSuchRange"))
                own_remove(cs, i);
        record(cs, OP_FREE, t0, r, &e);
        return r;
}

static void do_free(ClientState *cs) {
        size_t i;

        if (cs->n_own == 0)
                return;
        i = rnd(cs, (unsigned) cs->n_own);
        (void) free_one(cs, i);
}

static void do_share(ClientState *cs) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_grant g = { .has_uid = true, .uid = uids[rnd(cs, 3)] };
        char *token = NULL;
        Own *o = pick_own(cs, NULL);
        uint64_t t0;
        int r;

        if (!o)
                return;
        if (rnd(cs, 4) == 0) {
                /* Expires in 0.5 s: later Attach calls of it must be refused. */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                g.expires_usec = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000 + 500000;
        }
        t0 = call_begin(cs, OP_SHARE);
        r = svmd_share(cs->c, o->id, &g, &token, &e);
        if (r >= 0) {
                publish_token(token);
                free(token);
        }
        record(cs, OP_SHARE, t0, r, &e);
}

static void do_attach(ClientState *cs) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_attachment a;
        char token[96];
        uint64_t t0;
        int r;

        if (cs->n_held >= MAX_HELD || !read_token(rnd(cs, BOARD_SIZE), token, sizeof(token)))
                return;
        t0 = call_begin(cs, OP_ATTACH);
        r = svmd_attach(cs->c, token, &a, &e);
        if (r >= 0) {
                close(a.fd);
                cs->held[cs->n_held++] = a.id;
        }
        record(cs, OP_ATTACH, t0, r, &e);
}

static int release_one(ClientState *cs, size_t i) {
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t t0 = call_begin(cs, OP_RELEASE);
        int r = svmd_release(cs->c, cs->held[i], &e);

        if (r >= 0 || svmd_error_has_name(&e, "org.svmd1.Error.NoSuchRange"))
                cs->held[i] = cs->held[--cs->n_held];
        record(cs, OP_RELEASE, t0, r, &e);
        return r;
}

static void do_release(ClientState *cs) {
        if (cs->n_held > 0)
                (void) release_one(cs, rnd(cs, (unsigned) cs->n_held));
}

/* Allocate (mapped), map it further, and free one of ours: all or nothing. */
static void do_commit(ClientState *cs) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_op ops[3];
        svmd_op_result res[3];
        uint32_t map1[64], map2[64];
        uint64_t m1 = 0, m2 = 0, t0;
        size_t n = 0, victim = SIZE_MAX;
        const char *domain = rnd(cs, 2) ? "gtt" : "vram";
        int r;

        if (cs->n_own >= MAX_OWN)
                return;
        ops[n++] = (svmd_op) { .kind = SVMD_OP_ALLOCATE, .size = 64 * KiB, .gpu_id = gpus[rnd(cs, (unsigned) n_gpus)],
                               .domain = domain, .label = cs->label, .gpus = map1,
                               .n_gpus = pick_gpus(cs, map1, &m1, 0) };
        ops[n] = (svmd_op) { .kind = SVMD_OP_MAP, .by_ref = true, .ref = 0, .gpus = map2,
                             .n_gpus = pick_gpus(cs, map2, &m2, m1) };
        if (ops[n].n_gpus > 0)
                n++;
        else
                m2 = 0;
        if (cs->n_own > 0 && rnd(cs, 2)) {
                victim = rnd(cs, (unsigned) cs->n_own);
                if (cs->own[victim].unsure)
                        victim = SIZE_MAX;
                else
                        ops[n++] = (svmd_op) { .kind = SVMD_OP_FREE, .id = cs->own[victim].id };
        }
        t0 = call_begin(cs, OP_COMMIT);
        r = svmd_commit(cs->c, ops, n, NULL, res, &e);
        if (r >= 0) {
                if (victim != SIZE_MAX)
                        own_remove(cs, victim);
                own_add(cs, res[0].id, 64 * KiB, m1 | m2, strcmp(domain, "vram") == 0);
        }
        record(cs, OP_COMMIT, t0, r, &e);
}

static void do_usage(ClientState *cs) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_usage u;
        uint64_t t0 = call_begin(cs, OP_USAGE);
        int r = svmd_get_usage(cs->c, NULL, &u, &e);

        /* The client's own view of its quota: never above the limits. */
        if (r >= 0 && ((u.quota_ranges != SVMD_NO_LIMIT && u.ranges > u.quota_ranges) ||
                       (u.quota_vram != SVMD_NO_LIMIT && u.vram > u.quota_vram) ||
                       (u.quota_host != SVMD_NO_LIMIT && u.host > u.quota_host))) {
                cs->slot->unexpected++;
                snprintf(cs->slot->last_unexpected, sizeof(cs->slot->last_unexpected),
                         "usage above quota: %" PRIu64 " ranges, %" PRIu64 " vram, %" PRIu64 " host", u.ranges, u.vram,
                         u.host);
        }
        record(cs, OP_USAGE, t0, r, &e);
}

/* Free everything: Busy (degraded, batch users) is retried until it clears. */
static void drain(ClientState *cs) {
        for (int attempt = 0; attempt < 200 && (cs->n_own > 0 || cs->n_held > 0); attempt++) {
                while (cs->n_held > 0 && release_one(cs, cs->n_held - 1) >= 0)
                        ;
                for (size_t i = cs->n_own; i > 0; i--)
                        (void) free_one(cs, i - 1);
                if (cs->n_own > 0 || cs->n_held > 0)
                        sleep_ms(50);
        }
}

static unsigned stop_key(void) {
        return S->round * 4 + (unsigned) S->phase;
}

static _Noreturn void client_main(unsigned slot_index) {
        Slot *slot = &S->slots[slot_index];
        ClientState cs = { .slot = slot };
        svmd_error e = SVMD_ERROR_NULL;
        unsigned total = 0;

        cs.rnd = arg_seed * 7919u + slot_index * 131u + slot->gen;
        snprintf(cs.label, sizeof(cs.label), "load-%u-%u", slot_index, slot->gen);
        if (setresgid(slot->uid, slot->uid, slot->uid) < 0 || setresuid(slot->uid, slot->uid, slot->uid) < 0) {
                perror("setresuid");
                _exit(2);
        }
        /* Die with the controller (set after the uid change, which clears it). */
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
                _exit(2);
        if (svmd_client_new(&cs.c, NULL, NULL, 0, &e) < 0) {
                fprintf(stderr, "client %u: connecting failed: %s\n", slot_index, e.message ?: "?");
                _exit(2);
        }
        for (unsigned i = 0; i < _OP_MAX; i++)
                total += op_weights[i];

        for (;;) {
                int phase = S->phase;

                if (phase == PHASE_STOP)
                        break;
                if (phase == PHASE_PAUSE || phase == PHASE_DRAIN) {
                        unsigned key = stop_key();
                        if (phase == PHASE_DRAIN)
                                drain(&cs);
                        slot->acked = key;
                        while (S->phase == phase && stop_key() == key)
                                sleep_ms(5);
                        continue;
                }

                unsigned w = rnd(&cs, total), k = 0;
                while (w >= op_weights[k])
                        w -= op_weights[k++];
                switch ((OpKind) k) {
                case OP_ALLOCATE:     do_allocate(&cs, false); break;
                case OP_ALLOCATE_MAP: do_allocate(&cs, true); break;
                case OP_MAP:          do_map(&cs); break;
                case OP_UNMAP:        do_unmap(&cs); break;
                case OP_FREE:         do_free(&cs); break;
                case OP_SHARE:        do_share(&cs); break;
                case OP_ATTACH:       do_attach(&cs); break;
                case OP_RELEASE:      do_release(&cs); break;
                case OP_COMMIT:       do_commit(&cs); break;
                case OP_USAGE:        do_usage(&cs); break;
                default: break;
                }
        }
        drain(&cs);
        svmd_client_free(cs.c);
        _exit(0);
}

static void spawn(unsigned i) {
        Slot *s = &S->slots[i];
        pid_t pid;

        s->gen++;
        s->uid = uids[i % 3];
        s->in_call = -1;
        s->killed_ns = 0;
        pid = fork();
        if (pid < 0) {
                perror("fork");
                exit(1);
        }
        if (pid == 0)
                client_main(i);
        s->pid = pid;
}

/* A killed client's counters go to the retired totals; the slot starts over. */
static void retire(unsigned i) {
        Slot *s = &S->slots[i];

        for (unsigned k = 0; k < _OP_MAX; k++) {
                S->ok[k] += s->ok[k];
                S->refused[k] += s->refused[k];
                hist_add(&S->hist[k], &s->hist[k]);
                s->ok[k] = s->refused[k] = 0;
                s->hist[k] = (Hist) {};
        }
}

/* ---- the controller's view of the daemon ---- */

static unsigned faults_fired(EmuKernel *k);

static sd_bus *bus;
static EmuKernel *emu;

typedef struct RangeInfo {
        uint64_t id, va, size;
        char domain[8], label[64], state[16];
        uint32_t owner, n_mapped;
} RangeInfo;

static int list_ranges(RangeInfo **ret, size_t *ret_n) {
        RangeInfo *v = NULL;
        size_t n = 0;
        uint64_t offset = 0;

        for (;;) {
                sd_bus_message *reply = NULL;
                sd_bus_error error = SD_BUS_ERROR_NULL;
                size_t got = 0;
                int r;

                r = sd_bus_call_method(bus, "org.svmd1", "/org/svmd1", "org.svmd1.Manager", "ListRanges", &error,
                                       &reply, "a{sv}", 3, "all", "b", 1, "offset", "t", offset, "limit", "t",
                                       (uint64_t) 4096);
                if (r < 0) {
                        violation("ListRanges failed: %s", error.message ?: strerror(-r));
                        sd_bus_error_free(&error);
                        free(v);
                        return r;
                }
                r = sd_bus_message_enter_container(reply, 'a', "(ttttsuausus)");
                while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "ttttsuausus")) > 0) {
                        const char *domain, *label, *state;
                        const void *mapped;
                        size_t msize;
                        uint64_t flags;
                        uint32_t home;
                        RangeInfo *ri;

                        v = realloc(v, (n + 1) * sizeof(RangeInfo));
                        if (!v)
                                abort();
                        ri = &v[n++];
                        *ri = (RangeInfo) {};
                        r = sd_bus_message_read(reply, "ttttsu", &ri->id, &ri->va, &ri->size, &flags, &domain, &home);
                        if (r >= 0)
                                r = sd_bus_message_read_array(reply, 'u', &mapped, &msize);
                        if (r >= 0)
                                r = sd_bus_message_read(reply, "sus", &label, &ri->owner, &state);
                        if (r < 0)
                                break;
                        ri->n_mapped = (uint32_t) (msize / sizeof(uint32_t));
                        snprintf(ri->domain, sizeof(ri->domain), "%s", domain);
                        snprintf(ri->label, sizeof(ri->label), "%s", label);
                        snprintf(ri->state, sizeof(ri->state), "%s", state);
                        r = sd_bus_message_exit_container(reply);
                        got++;
                }
                sd_bus_message_unref(reply);
                if (r < 0) {
                        violation("ListRanges reply unreadable: %s", strerror(-r));
                        free(v);
                        return r;
                }
                if (got < 4096)
                        break;
                offset += got;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static int cmp_va(const void *a, const void *b) {
        const RangeInfo *x = a, *y = b;
        return x->va < y->va ? -1 : x->va > y->va;
}

typedef struct Usage {
        uint64_t ranges, vram, host, quota_ranges, quota_vram, quota_host, quota_vram_per_gpu;
        uint64_t max_vram_per_gpu;
} Usage;

static int get_usage(uint32_t uid, Usage *u) {
        sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char scope[32];
        int r;

        *u = (Usage) { .quota_ranges = UINT64_MAX, .quota_vram = UINT64_MAX, .quota_host = UINT64_MAX,
                       .quota_vram_per_gpu = UINT64_MAX };
        snprintf(scope, sizeof(scope), "uid:%u", uid);
        r = sd_bus_call_method(bus, "org.svmd1", "/org/svmd1", "org.svmd1.Manager", "GetUsage", &error, &reply, "s",
                               scope);
        if (r < 0) {
                violation("GetUsage(%s) failed: %s", scope, error.message ?: strerror(-r));
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key, *contents;
                char type;
                uint64_t v;

                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0)
                        r = sd_bus_message_peek_type(reply, &type, &contents);
                if (r < 0)
                        break;
                if (strcmp(contents, "t") == 0) {
                        r = sd_bus_message_read(reply, "v", "t", &v);
                        if (strcmp(key, "ranges") == 0) u->ranges = v;
                        else if (strcmp(key, "vram") == 0) u->vram = v;
                        else if (strcmp(key, "host") == 0) u->host = v;
                        else if (strcmp(key, "quota-ranges") == 0) u->quota_ranges = v;
                        else if (strcmp(key, "quota-vram") == 0) u->quota_vram = v;
                        else if (strcmp(key, "quota-host") == 0) u->quota_host = v;
                        else if (strcmp(key, "quota-vram-per-gpu") == 0) u->quota_vram_per_gpu = v;
                } else if (strcmp(contents, "a(ut)") == 0) {
                        uint32_t g;
                        r = sd_bus_message_enter_container(reply, 'v', "a(ut)");
                        if (r >= 0)
                                r = sd_bus_message_enter_container(reply, 'a', "(ut)");
                        while (r >= 0 && (r = sd_bus_message_read(reply, "(ut)", &g, &v)) > 0)
                                if (v > u->max_vram_per_gpu)
                                        u->max_vram_per_gpu = v;
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                } else
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        sd_bus_message_unref(reply);
        return r < 0 ? r : 0;
}

/* svmd's pid, and how often the harness started it (it restarts it after a crash). */
static int svmd_state(pid_t *ret_pid, unsigned *ret_starts) {
        char path[4096];
        int pid = 0, ready = 0, n;
        unsigned starts = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/svmd.state", getenv("KFDEMU_DIR"));
        f = fopen(path, "re");
        if (!f)
                return -errno;
        n = fscanf(f, "%d %d %u", &pid, &ready, &starts);
        fclose(f);
        if (n != 3)
                return -EBADMSG;
        *ret_pid = pid;
        *ret_starts = starts;
        return 0;
}

/*
 * svmd's VmRSS and RssAnon. VmRSS also counts the emulator's shared arena and
 * buffer files, which the preloaded emulator maps into svmd and touches as
 * buffer ids grow; RssAnon is svmd's own heap and stacks: that must not grow.
 */
static void svmd_rss_kib(uint64_t *ret_rss, uint64_t *ret_anon) {
        char path[64], line[256];
        pid_t pid;
        unsigned starts;
        FILE *f;

        *ret_rss = *ret_anon = 0;
        if (svmd_state(&pid, &starts) < 0)
                return;
        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return;
        while (fgets(line, sizeof(line), f)) {
                (void) sscanf(line, "VmRSS: %" SCNu64, ret_rss);
                (void) sscanf(line, "RssAnon: %" SCNu64, ret_anon);
        }
        fclose(f);
}

/* Lines of /proc/PID/maps: svmd's CPU mappings (docs/architecture.md: none per range but host ranges'). */
static unsigned svmd_maps(void) {
        char path[64], line[512];
        pid_t pid;
        unsigned starts, n = 0;
        FILE *f;

        if (svmd_state(&pid, &starts) < 0)
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/maps", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (strchr(line, '\n'))
                        n++;
        fclose(f);
        return n;
}

static void check_daemon_alive(void) {
        pid_t pid;
        unsigned starts;

        if (svmd_state(&pid, &starts) < 0 || starts != 1 || pid <= 0 || kill(pid, 0) < 0)
                violation("svmd died or was restarted (starts=%u)", starts);
}

/* No two ranges overlap, in the daemon's table and in the kernel. */
static void check_overlap(void) {
        RangeInfo *v = NULL;
        size_t n = 0;
        json_t *dump = NULL, *p, *h;
        size_t i, j;

        if (list_ranges(&v, &n) < 0)
                return;
        if (n > 1)
                qsort(v, n, sizeof(RangeInfo), cmp_va);
        for (i = 1; i < n; i++)
                if (v[i - 1].va + v[i - 1].size > v[i].va)
                        violation("ranges %" PRIu64 " and %" PRIu64 " overlap", v[i - 1].id, v[i].id);
        free(v);

        /* The kernel's handles of every process: MAP refuses overlaps, ALLOC does not. */
        if (emu_kernel_dump(emu, &dump) < 0)
                return;
        json_array_foreach(json_object_get(dump, "processes"), i, p) {
                size_t nh = json_array_size(json_object_get(p, "handles"));
                uint64_t (*iv)[2] = calloc(nh ? nh : 1, sizeof(*iv));

                json_array_foreach(json_object_get(p, "handles"), j, h) {
                        iv[j][0] = (uint64_t) json_integer_value(json_object_get(h, "va"));
                        iv[j][1] = (uint64_t) json_integer_value(json_object_get(h, "size"));
                }
                for (size_t a = 0; a < nh; a++)
                        for (size_t b = a + 1; b < nh; b++)
                                if (iv[a][0] < iv[b][0] + iv[b][1] && iv[b][0] < iv[a][0] + iv[a][1])
                                        violation("kernel handles at 0x%" PRIx64 " and 0x%" PRIx64 " overlap",
                                                  iv[a][0], iv[b][0]);
                free(iv);
        }
        json_decref(dump);
}

static void check_quotas(void) {
        for (size_t i = 0; i < 3; i++) {
                Usage u;

                if (get_usage(uids[i], &u) < 0)
                        continue;
                if (u.ranges > u.quota_ranges || u.vram > u.quota_vram || u.host > u.quota_host ||
                    u.max_vram_per_gpu > u.quota_vram_per_gpu)
                        violation("uid %u is above its quota: %" PRIu64 "/%" PRIu64 " ranges, %" PRIu64 "/%" PRIu64
                                  " vram, %" PRIu64 "/%" PRIu64 " host", uids[i], u.ranges, u.quota_ranges, u.vram,
                                  u.quota_vram, u.host, u.quota_host);
        }
}

/* Killed clients whose ranges must go. */
typedef struct Dead {
        char label[64];
        uint64_t deadline_ns;
} Dead;
static Dead dead[256];
static size_t n_dead;
static unsigned n_crash_checked;

static bool range_is_held(uint64_t id) {
        sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64];
        int r;

        snprintf(path, sizeof(path), "/org/svmd1/range/%" PRIu64, id);
        r = sd_bus_get_property(bus, "org.svmd1", path, "org.svmd1.Range", "Holders", &error, &reply, "a(us)");
        sd_bus_error_free(&error);
        if (r < 0)
                return true; /* gone meanwhile */
        r = sd_bus_message_enter_container(reply, 'a', "(us)");
        r = r >= 0 ? sd_bus_message_at_end(reply, false) : 1;
        sd_bus_message_unref(reply);
        return r == 0;
}

static void check_dead(bool final) {
        RangeInfo *v = NULL;
        size_t n = 0;
        uint64_t now = now_ns();

        if (n_dead == 0 || list_ranges(&v, &n) < 0)
                return;
        for (size_t d = 0; d < n_dead;) {
                bool left = false;

                for (size_t i = 0; i < n; i++)
                        if (strcmp(v[i].label, dead[d].label) == 0 && !range_is_held(v[i].id))
                                left = true;
                if (!left) {
                        dead[d] = dead[--n_dead];
                        n_crash_checked++;
                        continue;
                }
                if (final || now > dead[d].deadline_ns) {
                        violation("ranges of the killed client %s are still there", dead[d].label);
                        dead[d] = dead[--n_dead];
                        continue;
                }
                d++;
        }
        free(v);
}

/* The daemon's ranges against the kernel's handles (svmd's own process). */
static void check_accounting(void) {
        RangeInfo *v = NULL;
        size_t n = 0, i, j;
        uint64_t d_bytes[3] = {}, d_mapped = 0, k_bytes[3] = {}, k_mapped = 0;
        json_t *dump = NULL, *p, *h;
        pid_t pid;
        unsigned starts;

        if (list_ranges(&v, &n) < 0 || emu_kernel_dump(emu, &dump) < 0 || svmd_state(&pid, &starts) < 0)
                goto finish;
        for (i = 0; i < n; i++) {
                int d = strcmp(v[i].domain, "vram") == 0 ? 0 : strcmp(v[i].domain, "gtt") == 0 ? 1 : 2;
                d_bytes[d] += v[i].size;
                d_mapped += v[i].size * v[i].n_mapped;
                if (strcmp(v[i].state, "active") != 0)
                        violation("range %" PRIu64 " is %s with no fault armed", v[i].id, v[i].state);
        }
        json_array_foreach(json_object_get(dump, "processes"), i, p) {
                if (json_integer_value(json_object_get(p, "pid")) != pid)
                        continue;
                json_array_foreach(json_object_get(p, "handles"), j, h) {
                        const char *dom = json_string_value(json_object_get(h, "domain")) ?: "";
                        uint64_t size = (uint64_t) json_integer_value(json_object_get(h, "size"));
                        int d = strcmp(dom, "vram") == 0 ? 0 : strcmp(dom, "gtt") == 0 ? 1 : 2;

                        k_bytes[d] += size;
                        k_mapped += size * json_array_size(json_object_get(h, "mapped"));
                }
        }
        if (memcmp(d_bytes, k_bytes, sizeof(d_bytes)) != 0 || d_mapped != k_mapped)
                violation("accounting: daemon vram/gtt/host %" PRIu64 "/%" PRIu64 "/%" PRIu64 " mapped %" PRIu64
                          ", kernel %" PRIu64 "/%" PRIu64 "/%" PRIu64 " mapped %" PRIu64,
                          d_bytes[0], d_bytes[1], d_bytes[2], d_mapped, k_bytes[0], k_bytes[1], k_bytes[2], k_mapped);

        /* Each uid's usage is what it owns. */
        for (size_t u = 0; u < 3; u++) {
                uint64_t ranges = 0, vram = 0, host = 0;
                Usage us;

                for (i = 0; i < n; i++)
                        if (v[i].owner == uids[u]) {
                                ranges++;
                                if (strcmp(v[i].domain, "vram") == 0)
                                        vram += v[i].size;
                                else
                                        host += v[i].size;
                        }
                if (get_usage(uids[u], &us) >= 0 && (us.ranges != ranges || us.vram != vram || us.host != host))
                        violation("uid %u: usage says %" PRIu64 " ranges, %" PRIu64 " vram, %" PRIu64
                                  " host; it owns %" PRIu64 ", %" PRIu64 ", %" PRIu64,
                                  uids[u], us.ranges, us.vram, us.host, ranges, vram, host);
        }
finish:
        free(v);
        json_decref(dump);
}

static unsigned faults_fired(EmuKernel *k) {
        json_t *v = NULL, *f;
        unsigned n = 0;
        size_t i;

        if (emu_kernel_dump(k, &v) < 0)
                return 0;
        json_array_foreach(json_object_get(v, "faults"), i, f)
                n += (unsigned) json_integer_value(json_object_get(f, "fired"));
        json_decref(v);
        return n;
}

static char *dump_state(void) {
        json_t *v = NULL;
        char *s;

        if (emu_kernel_dump(emu, &v) < 0)
                return strdup("(no dump)");
        json_object_del(v, "ioctls");
        json_object_del(v, "ioctls_unknown");
        json_object_del(v, "faults");
        s = json_dumps(v, JSON_SORT_KEYS | JSON_INDENT(1));
        json_decref(v);
        return s;
}

/* A line of /proc/PID/FILE (the first n lines), for the report below. */
static void print_proc(const char *what, pid_t pid, const char *file, unsigned n) {
        char path[64], line[256];
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, file);
        f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "    %s %s: %s\n", what, file, strerror(errno));
                return;
        }
        for (unsigned i = 0; i < n && fgets(line, sizeof(line), f); i++)
                fprintf(stderr, "    %s %s: %s%s", what, file, line, strchr(line, '\n') ? "" : "\n");
        fclose(f);
}

/* Who did not reach the stop, and where each of them is: the call it is in, its kernel state. */
static void report_stragglers(unsigned key) {
        uint64_t now = now_ns();
        pid_t daemon_pid = 0;
        unsigned starts;

        for (unsigned i = 0; i < arg_clients; i++) {
                Slot *s = &S->slots[i];
                int k = __atomic_load_n(&s->in_call, __ATOMIC_ACQUIRE);
                uint64_t start = s->call_start_ns;

                if (s->acked == key)
                        continue;
                fprintf(stderr, "  client %u (pid %d, uid %u, gen %u): ", i, (int) s->pid, s->uid, s->gen);
                if (k >= 0 && k < _OP_MAX)
                        fprintf(stderr, "in %s for %" PRIu64 " ms", op_names[k], now > start ? (now - start) / 1000000 : 0);
                else
                        fprintf(stderr, "between calls");
                if (s->killed_ns)
                        fprintf(stderr, ", SIGKILL sent %" PRIu64 " ms ago", (now - s->killed_ns) / 1000000);
                fputc('\n', stderr);
                if (s->pid > 0) {
                        print_proc("client", s->pid, "stat", 1);
                        print_proc("client", s->pid, "wchan", 1);
                        print_proc("client", s->pid, "stack", 8);
                }
        }
        if (svmd_state(&daemon_pid, &starts) >= 0 && daemon_pid > 0) {
                print_proc("svmd", daemon_pid, "stat", 1);
                print_proc("svmd", daemon_pid, "wchan", 1);
        }
}

static bool wait_acked(int phase, unsigned timeout_ms) {
        unsigned key = S->round * 4 + (unsigned) phase;

        for (unsigned t = 0; t < timeout_ms; t += 10) {
                bool all = true;
                for (unsigned i = 0; i < arg_clients; i++)
                        if (S->slots[i].acked != key)
                                all = false;
                if (all)
                        return true;
                sleep_ms(10);
        }
        report_stragglers(key);
        return false;
}

static unsigned reap_and_respawn(void) {
        unsigned died = 0;
        int status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
                for (unsigned i = 0; i < arg_clients; i++)
                        if (S->slots[i].pid == pid) {
                                if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
                                        violation("client %u exited on its own (status 0x%x)", i, status);
                                        died++;
                                }
                                S->slots[i].pid = 0;
                        }
        return died;
}

/*
 * A client the controller killed may not have died yet: SIGKILL takes effect when the
 * victim next runs, and on a loaded node that can be after the pause began. Wait for
 * each of them, so that its slot is taken over by a new client instead of counted as
 * one that never stops.
 */
static void reap_killed(void) {
        for (unsigned i = 0; i < arg_clients; i++) {
                Slot *s = &S->slots[i];
                int status = 0;
                pid_t p = 0;

                if (s->pid <= 0 || s->killed_ns == 0)
                        continue;
                /* Bounded: a victim stuck in the kernel is reported, not waited for forever. */
                for (unsigned ms = 0; ms < 30000 && (p = waitpid(s->pid, &status, WNOHANG)) == 0; ms += 5)
                        sleep_ms(5);
                if (p == 0) {
                        violation("client %u (pid %d) is not dead 30 s after its SIGKILL", i, (int) s->pid);
                        print_proc("client", s->pid, "stat", 1);
                        print_proc("client", s->pid, "stack", 8);
                        continue;
                }
                if (p < 0)
                        violation("client %u (pid %d): waiting for it failed: %m", i, (int) s->pid);
                else if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
                        violation("client %u exited on its own (status 0x%x)", i, status);
                s->pid = 0;
        }
}

/*
 * svmd remembers the answer of every Free in its request cache (a retried Free
 * of a freed range answers like the first), up to limits.request-ids-per-scope
 * entries per quota scope, the oldest going first. Filling those caches makes
 * RssAnon grow until they are full, in whichever round the run gets there:
 * bounded memory, not a leak. Fill the cache of every scope the run uses
 * (root's and each client uid's) before the first sample, so that the rounds
 * compare like with like. load.conf keeps 64 per scope: with the default 4096,
 * the caches are most of svmd's heap (about 17 MB here), and each cached reply
 * keeps its connection's sd-bus object alive until it is evicted, so the heap
 * churns with the clients the run kills, by more than the check's 1 MiB.
 */
#define REQUEST_CACHE_FILL 5000U

static int fill_request_cache(svmd_client *c) {
        svmd_op ops[16];       /* load.conf allows 16 ranges per connection */
        svmd_op_result res[16];
        svmd_error e = SVMD_ERROR_NULL;
        unsigned done = 0;
        int r;

        if (n_gpus == 0)
                return -ENODEV;
        while (done < REQUEST_CACHE_FILL) {
                for (size_t i = 0; i < 16; i++)
                        ops[i] = (svmd_op) { .kind = SVMD_OP_ALLOCATE, .size = 4 * KiB, .gpu_id = gpus[i % n_gpus],
                                             .domain = "gtt", .label = "load-warmup" };
                r = svmd_commit(c, ops, 16, NULL, res, &e);
                if (r < 0)
                        goto fail;
                for (size_t i = 0; i < 16; i++, done++) {
                        r = svmd_free(c, res[i].id, &e);
                        if (r < 0)
                                goto fail;
                }
        }
        return 0;
fail:
        fprintf(stderr, "filling svmd's request cache failed: %s\n", e.message ?: strerror(-r));
        svmd_error_free(&e);
        return r;
}

/* fill_request_cache() in a child that is uid: that uid's quota scope. */
static int fill_request_cache_as(uid_t uid) {
        int status;
        pid_t pid;

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                svmd_error e = SVMD_ERROR_NULL;
                svmd_client *c = NULL;

                if (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                        _exit(2);
                if (svmd_client_new(&c, NULL, NULL, 0, &e) < 0) {
                        fprintf(stderr, "uid %u: connecting failed: %s\n", (unsigned) uid, e.message ?: "?");
                        _exit(2);
                }
                _exit(fill_request_cache(c) < 0 ? 1 : 0);
        }
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static const char *const fault_specs[] = {
        "ioctl=ALLOC_MEMORY_OF_GPU errno=ENOMEM",
        "ioctl=MAP_MEMORY_TO_GPU errno=ENOMEM after=1",
        "ioctl=MAP_MEMORY_TO_GPU errno=EINTR after=1",
        "ioctl=MAP_MEMORY_TO_GPU errno=EINTR at=fence",
        "ioctl=UNMAP_MEMORY_FROM_GPU errno=EIO",
        "ioctl=UNMAP_MEMORY_FROM_GPU errno=EINTR",
        "ioctl=ALLOC_MEMORY_OF_GPU errno=EINTR",
};

static int parse_argv(int argc, char *argv[]) {
        static const struct option options[] = {
                { "clients", required_argument, NULL, 'n' },
                { "duration", required_argument, NULL, 'd' },
                { "rounds", required_argument, NULL, 'r' },
                { "crash-interval-ms", required_argument, NULL, 'c' },
                { "fault-interval-ms", required_argument, NULL, 'f' },
                { "seed", required_argument, NULL, 's' },
                { "json", required_argument, NULL, 'j' },
                { "only", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'n': arg_clients = (unsigned) atoi(optarg); break;
                case 'd': arg_duration = atof(optarg); break;
                case 'r': arg_rounds = (unsigned) atoi(optarg); break;
                case 'c': arg_crash_ms = (unsigned) atoi(optarg); break;
                case 'f': arg_fault_ms = (unsigned) atoi(optarg); break;
                case 's': arg_seed = (unsigned) atoi(optarg); break;
                case 'j': arg_json = optarg; break;
                case 'o': { /* only these calls (and Free, to stay within the quotas): "Map,Unmap" */
                        for (unsigned k = 0; k < _OP_MAX; k++) {
                                char pat[32];
                                snprintf(pat, sizeof(pat), ",%s,", op_names[k]);
                                char *list = NULL;
                                if (asprintf(&list, ",%s,", optarg) < 0)
                                        return -ENOMEM;
                                if (!strstr(list, pat) && k != OP_FREE)
                                        op_weights[k] = 0;
                                free(list);
                        }
                        break;
                }
                case 'h':
                        printf("svmd-load [--clients N] [--duration SEC] [--rounds R] [--crash-interval-ms MS]\n"
                               "          [--fault-interval-ms MS] [--seed S] [--json FILE] [--only Call,Call…]\n"
                               "Run under svmd-harness --config tests/load/load.conf. 0 disables crashes/faults.\n");
                        exit(0);
                default:
                        return -EINVAL;
                }
        if (arg_clients < 1 || arg_clients > MAX_CLIENTS || arg_rounds < 1 || arg_rounds > MAX_ROUNDS || arg_duration <= 0)
                return -EINVAL;
        return 0;
}

int main(int argc, char *argv[]) {
        svmd_client *admin = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_gpu *g = NULL;
        char *base = NULL;
        uint64_t rss[MAX_ROUNDS] = {}, anon[MAX_ROUNDS] = {}, t_run_ns = 0;
        unsigned maps[MAX_ROUNDS] = {};
        unsigned n_kills = 0, n_faults = 0, n_faults_fired = 0;
        Hist total = {};
        uint64_t ok = 0, refused = 0, unexpected = 0, rollback = 0;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (parse_argv(argc, argv) < 0)
                return 2;
        if (!getenv("SVMD_BUS_ADDRESS") || !getenv("KFDEMU_DIR")) {
                fprintf(stderr, "run svmd-load under svmd-harness\n");
                return 2;
        }
        if (arg_seed == 0)
                arg_seed = (unsigned) time(NULL);
        srand(arg_seed);

        S = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (S == MAP_FAILED)
                return 1;
        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, getenv("SVMD_BUS_ADDRESS"));
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, 1);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0 || emu_kernel_attach(getenv("KFDEMU_DIR"), &emu) < 0) {
                fprintf(stderr, "connecting failed: %s\n", strerror(-r));
                return 1;
        }
        if (svmd_client_new(&admin, NULL, NULL, 0, &e) < 0 || svmd_list_gpus(admin, &g, &n_gpus, &e) < 0) {
                fprintf(stderr, "ListGpus failed: %s\n", e.message ?: "?");
                return 1;
        }
        for (size_t i = 0; i < n_gpus && i < 64; i++)
                gpus[i] = g[i].gpu_id;
        free(g);
        /* Only the RSS check needs it. */
        if (check_rss && arg_rounds >= 3) {
                if (fill_request_cache(admin) < 0)
                        return 1;
                for (size_t i = 0; i < sizeof(uids) / sizeof(uids[0]); i++)
                        if (fill_request_cache_as(uids[i]) < 0)
                                return 1;
        }
        svmd_client_free(admin);
        base = dump_state();

        printf("svmd-load: %u clients (uids 1, 2, 65534), %.0f s in %u rounds, %zu GPUs, a client killed every %u ms, "
               "a fault armed every %u ms, seed %u\n",
               arg_clients, arg_duration, arg_rounds, n_gpus, arg_crash_ms, arg_fault_ms, arg_seed);

        S->phase = PHASE_RUN;
        for (unsigned i = 0; i < arg_clients; i++)
                spawn(i);

        for (unsigned round = 0; round < arg_rounds; round++) {
                uint64_t round_ns = (uint64_t) (arg_duration / arg_rounds * 1e9), t0 = now_ns();
                uint64_t next_kill = arg_crash_ms ? t0 + (uint64_t) arg_crash_ms * 1000000ULL : UINT64_MAX;
                uint64_t next_fault = arg_fault_ms ? t0 + (uint64_t) arg_fault_ms * 1000000ULL : UINT64_MAX;
                uint64_t next_check = t0;
                char *now_state;

                while (now_ns() - t0 < round_ns) {
                        uint64_t t = now_ns();

                        if (reap_and_respawn() > 0)
                                break;
                        for (unsigned i = 0; i < arg_clients; i++)
                                if (S->slots[i].pid == 0) {
                                        retire(i);
                                        spawn(i);
                                }
                        if (t >= next_kill) {
                                unsigned i = (unsigned) rand() % arg_clients;
                                /* Only a kill it can follow up: check_dead() and reap_killed() need the record. */
                                if (S->slots[i].pid > 0 && n_dead < 256 && kill(S->slots[i].pid, SIGKILL) == 0) {
                                        S->slots[i].killed_ns = t;
                                        snprintf(dead[n_dead].label, sizeof(dead[0].label), "load-%u-%u", i,
                                                 S->slots[i].gen);
                                        dead[n_dead++].deadline_ns = t + 5000000000ULL;
                                        n_kills++;
                                }
                                next_kill = t + (uint64_t) (arg_crash_ms / 2 + (unsigned) rand() % (arg_crash_ms + 1)) *
                                                        1000000ULL;
                        }
                        if (t >= next_fault) {
                                char spec[160];
                                snprintf(spec, sizeof(spec), "%s nth=%u",
                                         fault_specs[(unsigned) rand() % (sizeof(fault_specs) / sizeof(fault_specs[0]))],
                                         1 + (unsigned) rand() % 5);
                                n_faults_fired += faults_fired(emu);
                                if (emu_kernel_fault_clear(emu) >= 0 && emu_kernel_fault_add(emu, spec, NULL) >= 0)
                                        n_faults++;
                                next_fault = t + (uint64_t) arg_fault_ms * 1000000ULL;
                        }
                        if (t >= next_check) {
                                check_daemon_alive();
                                check_overlap();
                                check_quotas();
                                check_dead(false);
                                next_check = t + 250000000ULL;
                        }
                        sleep_ms(10);
                }
                t_run_ns += now_ns() - t0;

                /* Quiesce: no faults, every client between calls, nothing degraded. */
                n_faults_fired += faults_fired(emu);
                emu_kernel_fault_clear(emu);
                S->phase = PHASE_PAUSE;
                (void) reap_and_respawn();
                reap_killed();
                for (unsigned i = 0; i < arg_clients; i++)
                        if (S->slots[i].pid == 0) {
                                retire(i);
                                spawn(i);
                        }
                if (!wait_acked(PHASE_PAUSE, 30000))
                        violation("round %u: clients did not pause", round);
                for (int i = 0; i < 200; i++) {
                        RangeInfo *v = NULL;
                        size_t n = 0, degraded = 0;
                        if (list_ranges(&v, &n) < 0)
                                break;
                        for (size_t j = 0; j < n; j++)
                                degraded += strcmp(v[j].state, "active") != 0;
                        free(v);
                        if (degraded == 0)
                                break;
                        sleep_ms(50);
                }
                check_dead(false);
                check_accounting();
                check_overlap();

                /* Drain: every client frees everything; the node is as at the start. */
                S->phase = PHASE_DRAIN;
                if (!wait_acked(PHASE_DRAIN, 60000))
                        violation("round %u: clients did not drain", round);
                for (int i = 0; i < 100; i++) {
                        RangeInfo *v = NULL;
                        size_t n = 0;
                        if (list_ranges(&v, &n) < 0)
                                break;
                        free(v);
                        if (n == 0)
                                break;
                        sleep_ms(50);
                }
                check_dead(true);
                {
                        RangeInfo *v = NULL;
                        size_t n = 0;
                        if (list_ranges(&v, &n) >= 0 && n > 0)
                                violation("round %u: %zu ranges left after every client freed everything "
                                          "(first: %" PRIu64 " '%s' %s)", round, n, v[0].id, v[0].label, v[0].state);
                        free(v);
                }
                now_state = dump_state();
                if (strcmp(now_state, base) != 0)
                        violation("round %u: the emulator's state differs from the start:\n--- start\n%s\n+++ now\n%s",
                                  round, base, now_state);
                free(now_state);
                for (size_t u = 0; u < 3; u++) {
                        Usage us;
                        if (get_usage(uids[u], &us) >= 0 && (us.ranges || us.vram || us.host))
                                violation("round %u: uid %u still uses %" PRIu64 " ranges, %" PRIu64 " vram, %" PRIu64
                                          " host", round, uids[u], us.ranges, us.vram, us.host);
                }
                svmd_rss_kib(&rss[round], &anon[round]);
                maps[round] = svmd_maps();
                printf("round %u: %u kills, %u faults armed so far; drained clean; svmd VmRSS %" PRIu64
                       " KiB, RssAnon %" PRIu64 " KiB, %u CPU mappings\n", round + 1, n_kills, n_faults, rss[round],
                       anon[round], maps[round]);
                if (round > 0 && maps[round] > maps[0] + 8)
                        violation("round %u: svmd has %u CPU mappings with no range left (%u after round 1)",
                                  round + 1, maps[round], maps[0]);

                S->round = round + 1;
                S->phase = round + 1 < arg_rounds ? PHASE_RUN : PHASE_STOP;
        }

        /* The clients exit on STOP. */
        for (unsigned i = 0; i < arg_clients; i++)
                if (S->slots[i].pid > 0) {
                        int status;
                        if (waitpid(S->slots[i].pid, &status, 0) == S->slots[i].pid &&
                            (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
                                violation("client %u ended with status 0x%x", i, status);
                        retire(i);
                }
        check_daemon_alive();

        /* RSS: the first round warms up (the request cache was filled before it); after that, no growth
         * beyond 1 MiB or 5%. */
        if (arg_rounds >= 3 && !check_rss)
                printf("svmd RssAnon not checked: ASan's quarantine keeps freed memory\n");
        if (arg_rounds >= 3 && check_rss) {
                uint64_t first = anon[1], last = anon[arg_rounds - 1], slack = first / 20 > 1024 ? first / 20 : 1024;
                if (last > first + slack)
                        violation("svmd RssAnon grew from %" PRIu64 " KiB (round 2) to %" PRIu64 " KiB (round %u)",
                                  first, last, arg_rounds);
        }

        for (unsigned k = 0; k < _OP_MAX; k++) {
                ok += S->ok[k];
                refused += S->refused[k];
                hist_add(&total, &S->hist[k]);
        }
        for (unsigned i = 0; i < arg_clients; i++) {
                unexpected += S->slots[i].unexpected;
                rollback += S->slots[i].rollback_failed;
        }
        double secs = (double) t_run_ns / 1e9;
        printf("\n%-14s %10s %10s %10s %10s %10s\n", "call", "ok", "refused", "ops/s", "p50 µs", "p99 µs");
        for (unsigned k = 0; k < _OP_MAX; k++)
                printf("%-14s %10" PRIu64 " %10" PRIu64 " %10.0f %10.1f %10.1f\n", op_names[k], S->ok[k],
                       S->refused[k], (double) S->hist[k].n / secs, hist_quantile(&S->hist[k], 0.5),
                       hist_quantile(&S->hist[k], 0.99));
        printf("%-14s %10" PRIu64 " %10" PRIu64 " %10.0f %10.1f %10.1f\n", "all", ok, refused, (double) total.n / secs,
               hist_quantile(&total, 0.5), hist_quantile(&total, 0.99));
        printf("\nsvmd-load: %u clients, %.1f s of load, %" PRIu64 " calls (%.0f ops/s, p50 %.1f µs, p99 %.1f µs), "
               "%u clients killed (%u checked freed), %u faults armed (%u fired), %" PRIu64 " rollbacks failed, "
               "%" PRIu64 " unexpected errors, %u invariant violations, leaks found: %s; svmd VmRSS per round:",
               arg_clients, secs, total.n, (double) total.n / secs, hist_quantile(&total, 0.5),
               hist_quantile(&total, 0.99), n_kills, n_crash_checked, n_faults, n_faults_fired, rollback, unexpected,
               n_violations, n_violations ? "see above" : "0");
        for (unsigned i = 0; i < arg_rounds; i++)
                printf(" %" PRIu64, rss[i]);
        printf(" KiB, RssAnon:");
        for (unsigned i = 0; i < arg_rounds; i++)
                printf(" %" PRIu64, anon[i]);
        printf(" KiB\n");
        if (n_violations > 0) {
                unsigned shown = n_violations < MAX_RECAP ? n_violations : MAX_RECAP;

                fprintf(stderr, "svmd-load: seed %u; the first %u of %u violations again:\n", arg_seed, shown,
                        n_violations);
                for (unsigned i = 0; i < shown; i++) {
                        fprintf(stderr, "  %s\n", recap[i] ?: "(no memory for the text)");
                        free(recap[i]);
                }
        }

        if (arg_json) {
                json_t *j = json_pack("{sIsfsIsfsfsfsIsIsIsIsI}", "clients", (json_int_t) arg_clients, "seconds", secs,
                                      "calls", (json_int_t) total.n, "ops_per_sec", (double) total.n / secs,
                                      "p50_us", hist_quantile(&total, 0.5), "p99_us", hist_quantile(&total, 0.99),
                                      "killed", (json_int_t) n_kills, "faults", (json_int_t) n_faults,
                                      "unexpected", (json_int_t) unexpected, "violations", (json_int_t) n_violations,
                                      "rss_last_kib", (json_int_t) rss[arg_rounds - 1]);
                if (j)
                        json_object_set_new(j, "rss_anon_last_kib", json_integer((json_int_t) anon[arg_rounds - 1]));
                if (j)
                        json_dump_file(j, arg_json, JSON_INDENT(2));
                json_decref(j);
        }

        free(base);
        emu_kernel_detach(emu);
        sd_bus_flush_close_unref(bus);
        return n_violations == 0 && unexpected == 0 ? 0 : 1;
}
