/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The one path of every mutating request (docs/architecture.md, "The path of a request"):
 *
 *   decode → authorize → plan: validate against the planned state → execute in one
 *   transaction → commit or roll back → publish and reply
 *
 * Commit runs N operations through it; Allocate, AllocateBatch, Map, Unmap, Free and
 * SetAttributes run one: their handlers decode and authorize, then hand the operation to
 * operation_run(), whose validator is the same as Commit's (one per operation kind).
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>

#include "method-util.h"

typedef struct Client Client;
typedef struct Manager Manager;
typedef struct Range Range;

typedef enum OpKind {
        OP_ALLOCATE,
        OP_ALLOCATE_BATCH,
        OP_MAP,
        OP_UNMAP,
        OP_FREE,
        OP_SET_ATTRIBUTES,
        _OP_KIND_MAX,
        _OP_KIND_INVALID = -EINVAL,
} OpKind;

/* One decoded, authorized operation of a single method. */
typedef struct Operation {
        OpKind kind;
        const OpArgs *args;     /* Allocate: size or host ranges, gpu, domain, options; else gpus, svm-* */
        Range *target;          /* Map, Unmap, Free, SetAttributes: the range, authorized */
        uint64_t request_digest;        /* Allocate with a request id: remembered by persistent ranges */
        bool dry_run;           /* validate only */
} Operation;

/*
 * Validate op against the state, then (unless dry-run) execute it as one transaction. Errors
 * are those of the same operation in a Commit, without the "Operation N" prefix.
 * 1: done; *ret_range is the range created or changed. 0: nothing to do (dry-run, or a Map
 * to where the range is mapped already). < 0: refused or failed (error set), nothing changed.
 */
int operation_run(Manager *m, Client *client, const Operation *op, Range **ret_range, sd_bus_error *error);

int method_commit(sd_bus_message *msg, void *userdata, sd_bus_error *error);
