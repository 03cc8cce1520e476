/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The path of every mutating request (docs/architecture.md, "The path of a request"). Commit:
 * several operations as one transaction; a single method (operation_run()): one. Every
 * operation is read and validated first, in order, against the planned state (refs to earlier
 * allocations, mappings changed by earlier operations, VRAM and quota already claimed); only
 * then does the transaction run. This is the only validator of Allocate, AllocateBatch, Map,
 * Unmap, Free and SetAttributes.
 */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "bus-util.h"
#include "client.h"
#include "commit.h"
#include "gpu.h"
#include "id-table.h"
#include "log.h"
#include "manager.h"
#include "method-util.h"
#include "polkit.h"
#include "ptr-index.h"
#include "range-svm.h"
#include "range.h"
#include "request-cache.h"
#include "size-util.h"
#include "svmd-protocol.h"
#include "transaction.h"

/* ---- Commit ---- */

static const char *const op_kind_table[_OP_KIND_MAX] = {
        [OP_ALLOCATE] = "Allocate",
        [OP_ALLOCATE_BATCH] = "AllocateBatch",
        [OP_MAP] = "Map",
        [OP_UNMAP] = "Unmap",
        [OP_FREE] = "Free",
        [OP_SET_ATTRIBUTES] = "SetAttributes",
};

static const BusOption *const op_kind_options[_OP_KIND_MAX] = {
        [OP_ALLOCATE] = commit_allocate_options,
        [OP_ALLOCATE_BATCH] = commit_batch_options,
        [OP_MAP] = commit_map_options,
        [OP_UNMAP] = commit_map_options,
        [OP_FREE] = commit_free_options,
        [OP_SET_ATTRIBUTES] = commit_set_attributes_options,
};

/* What validation knows about a range while walking the operations in order. */
typedef struct SimRange {
        Range *existing;        /* NULL for ranges created by this Commit */
        uint32_t home;
        RangeDomain domain;
        uint64_t mapped;
        uint32_t batch_users;   /* batch ranges using its pages, existing or created by this Commit */
        bool freed;
} SimRange;

typedef struct CommitOp {
        OpKind kind;
        OpArgs args;
        RangeSpec spec;
        RangeSpecPiece *pieces;
        KfdSvmAttrs *svm;       /* Allocate of an svm range: its initial attributes */
        SvmChange *change;      /* SetAttributes */
        uint64_t mask;
        SimRange *sim;          /* target (Map/Unmap/Free) or created range (Allocate*) */
        Range *target;          /* a single method's range, authorized by its handler */
        uint64_t request_digest;        /* a single Allocate's, for persistent ranges */
        bool noop;              /* a Map to where the range is mapped already */
        Range *range;           /* resolved at execution; gone after the commit for Free */
        uint64_t id, va;        /* the range's id and VA, for the results */
} CommitOp;

typedef struct Commit {
        Client *client;
        bool admin;             /* root, or org.svmd1.manage: may change every range */
        bool single;            /* one method's operation: its argument names, no "Operation N" prefix */
        CommitOp *ops;
        size_t n_ops;
        SimRange *sims;         /* one per range an operation names, creates or pins */
        size_t n_sims, max_sims;
        PtrIndex sims_index;    /* the existing ranges among them */
        /* A single method's operation and ranges need no heap (ops, sims point here). */
        CommitOp single_op;
        SimRange single_sims[2];
        SvmChange single_change;
} Commit;

static void commit_done(Commit *c) {
        for (size_t i = 0; i < c->n_ops; i++) {
                if (!c->single) /* a single method's arguments stay its handler's */
                        op_args_done(&c->ops[i].args);
                free(c->ops[i].pieces);
                free(c->ops[i].svm);
                if (c->ops[i].change != &c->single_change)
                        free(c->ops[i].change);
        }
        if (c->ops != &c->single_op)
                free(c->ops);
        if (c->sims != c->single_sims)
                free(c->sims);
        ptr_index_done(&c->sims_index);
        *c = (Commit) {};
}

static int prefix_error(const Commit *c, sd_bus_error *error, size_t idx, OpKind kind, int r) {
        _cleanup_free_ char *msg = NULL, *name = NULL;

        if (c->single || !sd_bus_error_is_set(error))
                return r;
        name = strdup(error->name);
        if (asprintf(&msg, "Operation %zu (%s): %s", idx, op_kind_table[kind], strempty(error->message)) < 0 || !name)
                return -ENOMEM;
        sd_bus_error_free(error);
        sd_bus_error_set(error, name, msg);
        return r;
}

/*
 * "operation N (Kind)", for the messages of an operation's decoding errors. Built for every
 * operation read, so without printf: that alone cost about as much as the operation's ioctl
 * (docs/benchmarks.md, "Commit of K operations").
 */
#define OP_WHAT_MAX (sizeof("operation  ()") + 20 + sizeof("AllocateBatch"))
static const char *op_what(char buf[static OP_WHAT_MAX], size_t idx, const char *kind) {
        size_t o = strlen("operation "), k = strlen(kind);

        assert(k < sizeof("AllocateBatch"));
        memcpy(buf, "operation ", o);
        o += format_u64(buf + o, idx);
        buf[o++] = ' ';
        buf[o++] = '(';
        memcpy(buf + o, kind, k);
        o += k;
        buf[o++] = ')';
        buf[o] = '\0';
        return buf;
}

static int read_commit_ops(Manager *m, sd_bus_message *msg, Commit *c, sd_bus_error *error) {
        size_t allocated = 0, pinned = 0;
        const char *kind_s;
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "(sa{sv})");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'r', "sa{sv}")) > 0) {
                CommitOp *op;
                OpKind kind = _OP_KIND_INVALID;
                char what[OP_WHAT_MAX];

                if (c->n_ops >= SVMD_MAX_COMMIT_OPS)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "A Commit takes at most %u operations.", SVMD_MAX_COMMIT_OPS);
                r = sd_bus_message_read_basic(msg, 's', &kind_s);
                if (r < 0)
                        return r;
                for (int k = 0; k < _OP_KIND_MAX; k++)
                        if (streq(op_kind_table[k], kind_s))
                                kind = k;
                if (kind < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Operation %zu: unknown operation \"%.32s\"; use Allocate, "
                                                 "AllocateBatch, Map, Unmap or Free.", c->n_ops, kind_s);

                if (c->n_ops == allocated) {
                        size_t na = allocated ? allocated * 2 : 8;
                        CommitOp *no = reallocarray(c->ops, na, sizeof(CommitOp));
                        if (!no)
                                return -ENOMEM;
                        c->ops = no;
                        allocated = na;
                }
                op = &c->ops[c->n_ops++];
                *op = (CommitOp) { .kind = kind };

                r = bus_read_options(msg, op_kind_options[kind], &op->args,
                                     op_what(what, c->n_ops - 1, op_kind_table[kind]), error);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        if (c->n_ops == 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "A Commit needs at least one operation.");

        /* At most one per operation, plus one per existing range a batch pins (not more than exist). */
        for (size_t i = 0; i < c->n_ops; i++)
                pinned += c->ops[i].args.host_ranges.n;
        c->max_sims = c->n_ops + MIN(pinned, id_index_size(m->ranges));
        c->sims = calloc(c->max_sims, sizeof(SimRange));
        return c->sims ? 0 : -ENOMEM;
}

/* The simulated state of an existing range, created on first use. */
_Static_assert(offsetof(SimRange, existing) == 0, "SimRange.existing is the key of Commit.sims_index");

static SimRange *sim_existing(Commit *c, Range *range) {
        ssize_t i = ptr_index_find(&c->sims_index, c->sims, sizeof(SimRange), c->n_sims, range);

        if (i >= 0)
                return &c->sims[i];
        assert(c->n_sims < c->max_sims);
        c->sims[c->n_sims++] = (SimRange) {
                .existing = range,
                .home = range->home,
                .domain = range->domain,
                .mapped = range_mapped(range),
                .batch_users = range_n_batch_users(range),
        };
        ptr_index_added(&c->sims_index, c->sims, sizeof(SimRange), c->n_sims);
        return &c->sims[c->n_sims - 1];
}

/*
 * A batch range pins the host ranges under its pieces until it is gone (range.c,
 * batch_pin_sources): a host range freed earlier in this Commit cannot back it, and one
 * it uses cannot be freed later in this Commit. The pin holds for the rest of the Commit
 * even if the batch range itself is freed by a later operation, as in the execution,
 * where frees happen only at the end.
 */
static int sim_pin_sources(Commit *c, CommitOp *op, sd_bus_error *error) {
        for (uint32_t p = 0; p < op->spec.n_pieces; p++) {
                SimRange *s = sim_existing(c, op->pieces[p].source);

                if (s->freed)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Host range %" PRIu32 " lies in range %" PRIu64 ", which an earlier "
                                                 "operation of this Commit frees.",
                                                 p, s->existing->id);
        }
        for (uint32_t p = 0; p < op->spec.n_pieces; p++)
                sim_existing(c, op->pieces[p].source)->batch_users++;
        return 0;
}

static int sim_target(Manager *m, Commit *c, size_t idx, SimRange **ret, sd_bus_error *error) {
        OpArgs *a = &c->ops[idx].args;
        SimRange *s;
        Range *range;
        int r;

        if (c->ops[idx].target) {
                *ret = sim_existing(c, c->ops[idx].target);
                return 0;
        }
        if (a->has_id == a->has_ref)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "Give exactly one of \"id\" (an existing range) and \"ref\" (an earlier Allocate).");
        if (a->has_ref) {
                if (a->ref >= idx || (c->ops[a->ref].kind != OP_ALLOCATE && c->ops[a->ref].kind != OP_ALLOCATE_BATCH))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "\"ref\" %" PRIu32 " does not name an earlier Allocate of this Commit.",
                                                 a->ref);
                s = c->ops[a->ref].sim;
        } else {
                /* As in authorize_range(): a range the caller may not see answers like a missing id. */
                range = manager_find_range(m, a->id);
                if (!range || (!c->admin && !client_may(c->client, range, true)))
                        return range_not_found(a->id, error);
                if (!c->admin && !client_may(c->client, range, false))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                                 "Changing range %" PRIu64 " needs ownership of the range or the %s "
                                                 "authorization.", a->id, SVMD_POLKIT_ACTION_MANAGE);
                r = range_check_busy(range, error);
                if (r < 0)
                        return r;
                s = sim_existing(c, range);
        }
        if (s->freed)
                return sd_bus_error_set(error, SVMD_ERROR_NO_SUCH_RANGE,
                                        "The range is freed by an earlier operation of this Commit.");
        *ret = s;
        return 0;
}

/* The same check and words as Unmap's, against the mapping simulated so far. */
static int validate_unmap(Manager *m, const CommitOp *op, sd_bus_error *error) {
        uint64_t missing = op->mask & ~op->sim->mapped;
        char buf[256];

        if (op->sim->existing)
                return range_validate_unmap(op->sim->existing, op->sim->mapped, op->mask, error);
        if (missing != 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The range of operation %" PRIu32 " is not mapped to GPU %s.", op->args.ref,
                                         gpu_mask_to_string(m, missing, buf, sizeof(buf)));
        return 0;
}

static int validate_set_attributes(Manager *m, Commit *c, size_t idx, sd_bus_error *error) {
        CommitOp *op = &c->ops[idx];
        int r;

        if (!op_args_has_svm(&op->args))
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "No attribute is given; give at least one svm-* key.");
        r = sim_target(m, c, idx, &op->sim, error);
        if (r < 0)
                return r;
        if (op->sim->existing)
                r = range_validate_set_attributes(op->sim->existing, error);
        else if (op->sim->domain != RANGE_DOMAIN_SVM)
                r = sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                      "The range of operation %" PRIu32 " is a %s range; SVM attributes apply to svm "
                                      "ranges only.", op->args.ref, range_domain_to_string(op->sim->domain));
        if (r < 0)
                return r;
        op->change = c->single ? &c->single_change : malloc(sizeof(SvmChange));
        if (!op->change)
                return -ENOMEM;
        r = parse_svm_change(m, &op->args, op->change, error);
        if (r < 0)
                return r;
        op->sim->mapped = (op->sim->mapped | op->change->access) & ~op->change->no_access;
        return 0;
}

/*
 * Whether the caller is an administrator, asked before validation when an
 * operation names a range it does not own, or an id that does not exist (so
 * that the time to answer does not tell those apart either). 1: known (in
 * c->admin); 0: polkit answers later; < 0: failed.
 */
static int commit_authorize(Manager *m, sd_bus_message *msg, Commit *c) {
        sd_bus_error denied = SD_BUS_ERROR_NULL;
        bool ask = false;
        int r;

        for (size_t i = 0; i < c->n_ops && !ask; i++) {
                const OpArgs *a = &c->ops[i].args;
                Range *range;

                if (!a->has_id)
                        continue;
                range = manager_find_range(m, a->id);
                ask = !range || !client_may(c->client, range, false);
        }
        if (!ask)
                return 1;
        r = authorize_admin(m, msg, c->client, "Changing ranges of other users", &denied);
        if (r == 0)
                return 0;
        if (r < 0 && !sd_bus_error_is_set(&denied))
                return r;
        sd_bus_error_free(&denied);
        c->admin = r > 0;
        return 1;
}

static void scope_unref_job(void *userdata) {
        Scope *s = userdata;

        scope_unref(s->table, s);
}

/* The scope's allocation claim, for the job; the scope stays while the job runs (a reload may rescope). */
static int claim_scope(Manager *m, Scope *s) {
        int r;

        if (s->alloc_claim.job && !job_claim_held(&s->alloc_claim))
                return 0; /* ours already */
        r = job_claim(&s->alloc_claim);
        if (r < 0)
                return r;
        r = job_on_end(scope_unref_job, s);
        if (r < 0)
                return r;
        scope_ref(s);
        return 0;
}

/* Validate every operation in order against simulated state; nothing changes. */
static int commit_validate(Manager *m, Commit *c, sd_bus_error *error) {
        QuotaRequest pending = {};
        size_t n_allocs = 0;
        bool persistent = false;
        int r = 0;

        /*
         * Quota, VRAM and persistent slots are charged by an allocation before its first ioctl
         * (range_create()), so a request validated while another one's ioctl runs sees that one's
         * charge. A Commit with more than its allocation has ioctls between its validation and
         * its charges: while it is in flight no other allocation of its quota scope passes
         * validation (Scope.alloc_claim), nor, if it makes persistent ranges, any other persistent
         * allocation (Manager.alloc_claim: their slots are node-wide). Other tenants go on.
         */
        for (size_t i = 0; i < c->n_ops; i++)
                if (c->ops[i].kind == OP_ALLOCATE || c->ops[i].kind == OP_ALLOCATE_BATCH) {
                        n_allocs++;
                        persistent = persistent || c->ops[i].args.persistent;
                }
        if (n_allocs > 0 && c->n_ops > 1) {
                r = claim_scope(m, c->client->identity->scope);
                if (r >= 0 && persistent)
                        r = job_claim(&m->alloc_claim);
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < c->n_ops; i++) {
                CommitOp *op = &c->ops[i];
                OpArgs *a = &op->args;

                /* 1024 operations are more than one dispatch: what they rely on is claimed. */
                job_maybe_yield();
                switch (op->kind) {
                case OP_ALLOCATE:
                case OP_ALLOCATE_BATCH: {
                        RangeDomain domain = RANGE_DOMAIN_HOST;

                        if (op->kind == OP_ALLOCATE) {
                                if (!a->has_size) {
                                        r = sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "\"size\" is missing.");
                                        break;
                                }
                                r = parse_domain(a->domain ?: SVMD_DOMAIN_VRAM, &domain, error);
                                if (r < 0)
                                        break;
                        } else if (!a->has_host_ranges) {
                                r = sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "\"host-ranges\" is missing.");
                                break;
                        }
                        r = prepare_allocation(m, a, domain, c->client, &pending, &op->spec, &op->pieces, &op->svm, &op->mask,
                                               error);
                        if (r < 0)
                                break;
                        op->spec.request_digest = op->request_digest;
                        r = sim_pin_sources(c, op, error);
                        if (r < 0)
                                break;
                        assert(c->n_sims < c->max_sims);
                        op->sim = &c->sims[c->n_sims++];
                        *op->sim = (SimRange) { .home = op->spec.home, .domain = domain, .mapped = op->mask };
                        break;
                }
                case OP_MAP:
                case OP_UNMAP: {
                        const char *gpus = c->single ? "gpu_ids" : "\"gpus\"";

                        if (!a->has_gpus || a->gpus.n == 0) {
                                r = sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "%s must name at least one GPU.",
                                                      gpus);
                                break;
                        }
                        r = sim_target(m, c, i, &op->sim, error);
                        if (r < 0)
                                break;
                        r = gpus_to_mask(m, a->gpus.items, a->gpus.n, gpus, &op->mask, error);
                        if (r < 0)
                                break;
                        if (op->kind == OP_MAP) {
                                r = range_validate_map(m, op->sim->home, op->sim->domain, op->mask, error);
                                op->noop = (op->mask & ~op->sim->mapped) == 0;
                                op->sim->mapped |= op->mask;
                        } else {
                                r = validate_unmap(m, op, error);
                                op->sim->mapped &= ~op->mask;
                        }
                        break;
                }
                case OP_SET_ATTRIBUTES:
                        r = validate_set_attributes(m, c, i, error);
                        break;
                case OP_FREE:
                        r = sim_target(m, c, i, &op->sim, error);
                        if (r < 0)
                                break;
                        if (op->sim->batch_users > 0)
                                /* Only existing host ranges back batch pieces: the same words as Free's. */
                                r = sd_bus_error_setf(error, SVMD_ERROR_BUSY,
                                                      "Range %" PRIu64 " backs pieces of batch ranges; free those first.",
                                                      op->sim->existing->id);
                        else if (op->sim->existing && range_holds(op->sim->existing))
                                r = sd_bus_error_set(error, SVMD_ERROR_BUSY,
                                                     "Other clients hold the range; Free it outside a Commit, "
                                                     "it then lives until they release it.");
                        op->sim->freed = true;
                        op->sim->mapped = 0;
                        break;
                default:
                        r = -EINVAL;
                }
                if (r < 0)
                        return prefix_error(c, error, i, op->kind, r);
        }
        /* After the free VRAM query (an ioctl that may wait), right before the charge. */
        if (n_allocs > 0 && c->n_ops == 1) {
                r = job_claim_check(&c->client->identity->scope->alloc_claim);
                if (r >= 0 && persistent)
                        r = job_claim_check(&m->alloc_claim);
                return r;
        }
        return 0;
}

static Range *op_range(Commit *c, CommitOp *op) {
        if (op->args.has_ref)
                return c->ops[op->args.ref].range;
        return op->sim->existing;
}

static int commit_execute(Transaction *t, Commit *c, sd_bus_error *error) {
        for (size_t i = 0; i < c->n_ops; i++) {
                CommitOp *op = &c->ops[i];
                int r;

                switch (op->kind) {
                case OP_ALLOCATE:
                case OP_ALLOCATE_BATCH:
                        op->spec.pieces = op->pieces;
                        r = range_create(t, &op->spec, &op->range, error);
                        if (r >= 0)
                                r = range_map(t, op->range, op->mask, error);
                        break;
                case OP_MAP:
                        op->range = op_range(c, op);
                        r = range_map(t, op->range, op->mask, error);
                        break;
                case OP_UNMAP:
                        op->range = op_range(c, op);
                        r = range_unmap(t, op->range, op->mask, error);
                        break;
                case OP_FREE:
                        op->range = op_range(c, op);
                        r = range_free(t, op->range, error);
                        break;
                case OP_SET_ATTRIBUTES:
                        op->range = op_range(c, op);
                        r = range_svm_change(t, op->range, op->change->list, op->change->n, error);
                        break;
                default:
                        r = -EINVAL;
                }
                if (r < 0)
                        return prefix_error(c, error, i, op->kind, r);
                op->id = op->range->id;
                op->va = range_va(op->range);
        }
        return 0;
}

/* The largest range the operations create or touch (executor.h, job_set_small()). */
static uint64_t commit_max_size(Commit *c) {
        uint64_t max = 0;

        for (size_t i = 0; i < c->n_ops; i++) {
                CommitOp *op = &c->ops[i];
                uint64_t size;

                if (op->kind == OP_ALLOCATE || op->kind == OP_ALLOCATE_BATCH)
                        size = op->spec.size;
                else if (op->sim && op->sim->existing)
                        size = range_size(op->sim->existing);
                else
                        size = 0; /* a range an earlier operation allocates: counted there */
                max = MAX(max, size);
        }
        return max;
}

/* Execute the validated operations as one transaction, then commit it or roll it back. */
static int commit_apply(Manager *m, Commit *c, sd_bus_error *error) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        int r;

        bool offload, small;

        r = transaction_new(&t, m);
        if (r < 0)
                return r;
        /* From here the kernel's part runs on the executor; everything was validated and claimed
         * (docs/architecture.md, "The kernel executor"). */
        offload = job_set_offload(true);
        small = job_set_small(commit_max_size(c) <= EXECUTOR_SMALL_BYTES);
        r = commit_execute(t, c, error);
        r = transaction_finish(t, r, error);
        (void) job_set_small(small);
        (void) job_set_offload(offload);
        return r;
}

/* {"key": <value of type>}, with the basic calls: sd_bus_message_append() parses its format each time. */
static int append_entry(sd_bus_message *reply, const char *key, char type, const char *contents, const void *value) {
        int r;

        r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 's', key);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', contents);
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, type, value);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int append_results(sd_bus_message *reply, Commit *c, bool dry_run) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(a{sv})");
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_ops; i++) {
                CommitOp *op = &c->ops[i];

                r = sd_bus_message_open_container(reply, 'r', "a{sv}");
                if (r < 0)
                        return r;
                r = sd_bus_message_open_container(reply, 'a', "{sv}");
                if (r < 0)
                        return r;
                if (!dry_run)
                        r = append_entry(reply, "id", 't', "t", &op->id);
                if (r >= 0 && !dry_run && (op->kind == OP_ALLOCATE || op->kind == OP_ALLOCATE_BATCH)) {
                        char path[sizeof(SVMD_RANGE_PATH_PREFIX "/") - 1 + U64_DECIMAL_MAX];
                        size_t l = strlen(SVMD_RANGE_PATH_PREFIX "/");

                        /* range_path(), without printf or the heap */
                        memcpy(path, SVMD_RANGE_PATH_PREFIX "/", l);
                        (void) format_u64(path + l, op->id);
                        r = append_entry(reply, "va", 't', "t", &op->va);
                        if (r >= 0)
                                r = append_entry(reply, "path", 'o', "o", path);
                }
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int run_commit(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(commit_done) Commit c = {};
        _cleanup_(op_args_done) OpArgs o = {};
        Manager *m = userdata;
        int r;

        r = read_commit_ops(m, msg, &c, error);
        if (r < 0)
                return r;
        r = bus_read_options(msg, change_options, &o, "options", error);
        if (r < 0)
                return r;
        r = manager_get_client(m, msg, &c.client, error);
        if (r < 0)
                return r;
        r = request_replay(m, msg, c.client, o.request_id, error);
        if (r != 0)
                return r;

        r = commit_authorize(m, msg, &c);
        if (r <= 0)
                return r == 0 ? 1 : r;
        r = commit_validate(m, &c, error);
        if (r < 0)
                return r;

        if (!o.dry_run) {
                r = commit_apply(m, &c, error);
                if (r < 0)
                        return r;
        }

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = append_results(reply, &c, o.dry_run);
        if (r < 0)
                return r;
        return reply_and_remember(m, msg, reply, c.client, o.dry_run ? NULL : o.request_id);
}

int method_commit(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_run_job(userdata, msg, run_commit, error);
}

int operation_run(Manager *m, Client *client, const Operation *o, Range **ret_range, sd_bus_error *error) {
        _cleanup_(commit_done) Commit c = { .client = client, .single = true };
        CommitOp *op;
        int r;

        assert(o->args);
        assert(o->target || o->kind == OP_ALLOCATE || o->kind == OP_ALLOCATE_BATCH);

        /* Plan: one operation, validated as in a Commit; its SimRanges are all it may touch. */
        c.max_sims = 1 + MIN(o->args->host_ranges.n, id_index_size(m->ranges));
        c.ops = &c.single_op;
        c.sims = c.max_sims <= ELEMENTSOF(c.single_sims) ? c.single_sims : new0(SimRange, c.max_sims);
        if (!c.sims)
                return -ENOMEM;
        c.n_ops = 1;
        op = &c.ops[0];
        *op = (CommitOp) {
                .kind = o->kind,
                .args = *o->args,
                .target = o->target,
                .request_digest = o->request_digest,
        };
        r = commit_validate(m, &c, error);
        if (r < 0)
                return r;
        if (o->dry_run || op->noop)
                return 0;

        r = commit_apply(m, &c, error);
        if (r < 0)
                return r;
        if (ret_range)
                *ret_range = op->kind == OP_FREE ? NULL : op->range; /* a freed range is gone */
        return 1;
}
