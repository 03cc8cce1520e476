/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup-util.h"
#include "gpu.h"
#include "str-table.h"
#include "macro.h"
#include "manager.h"
#include "quota.h"
#include "size-util.h"
#include "svmd-protocol.h"

struct QuotaTable {
        StrTable *scopes;       /* key → Scope */
};

int quota_table_new(QuotaTable **ret) {
        _cleanup_free_ QuotaTable *t = calloc(1, sizeof(QuotaTable));
        int r;

        if (!t)
                return -ENOMEM;
        r = str_table_new(&t->scopes);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

QuotaTable *quota_table_free(QuotaTable *t) {
        StrTableIter i = {};
        void *v;

        if (!t)
                return NULL;
        while (str_table_iterate(t->scopes, &i, NULL, &v)) {
                free(((Scope *) v)->key);
                free(v);
        }
        str_table_free(t->scopes);
        free(t);
        return NULL;
}

bool quota_iterate(QuotaTable *t, StrTableIter *i, Scope **ret) {
        void *v;

        if (!str_table_iterate(t->scopes, i, NULL, &v))
                return false;
        *ret = v;
        return true;
}

Scope *quota_find_scope(QuotaTable *t, const char *key) {
        return str_table_get(t->scopes, key);
}

static bool rule_matches(const QuotaRule *r, uid_t uid, const char *unit, const char *cgroup) {
        switch (r->match) {
        case QUOTA_MATCH_UID:
                return r->uid == uid;
        case QUOTA_MATCH_UNIT:
                return unit && unit[0] && fnmatch(r->pattern, unit, 0) == 0;
        case QUOTA_MATCH_CGROUP:
                return cgroup_is_prefix(r->pattern, cgroup);
        default:
                return false;
        }
}

int quota_scope_for(QuotaTable *t, const Config *c, uid_t uid, const char *unit, const char *cgroup,
                    Scope **ret) {
        const QuotaRule *rule = NULL;
        _cleanup_free_ char *key = NULL;
        Scope *s;
        int r;

        /* Root is limited only by a rule naming uid 0, not by the unit or cgroup it runs in. */
        for (size_t i = 0; i < c->n_quotas && !rule; i++)
                if ((uid != 0 || c->quotas[i].match == QUOTA_MATCH_UID) &&
                    rule_matches(&c->quotas[i], uid, unit, cgroup))
                        rule = &c->quotas[i];

        if (rule && rule->match == QUOTA_MATCH_UNIT)
                r = asprintf(&key, "unit:%s", unit);
        else if (rule && rule->match == QUOTA_MATCH_CGROUP)
                r = asprintf(&key, "cgroup:%s", cgroup);
        else
                r = asprintf(&key, "uid:%u", (unsigned) uid);
        if (r < 0)
                return -ENOMEM;

        s = str_table_get(t->scopes, key);
        if (!s) {
                s = calloc(1, sizeof(Scope));
                if (!s)
                        return -ENOMEM;
                s->key = TAKE_PTR(key);
                s->table = t;
                r = str_table_put(t->scopes, s->key, s);
                if (r < 0) {
                        free(s->key);
                        free(s);
                        return r;
                }
        }

        /* The limits follow the configuration in force: a reload re-resolves every scope. */
        if (rule) {
                s->limited = true;
                s->limits = rule->limits;
        } else if (uid != 0 && c->has_default_quota) {
                s->limited = true;
                s->limits = c->default_quota;
        } else
                s->limited = false;

        s->n_ref++;
        *ret = s;
        return 0;
}

int quota_limits_for_key(const Config *c, const char *key, bool *ret_limited, QuotaLimits *ret) {
        const QuotaRule *rule = NULL;
        unsigned long uid = 0;
        char *end;

        if (strncmp(key, "uid:", 4) == 0) {
                errno = 0;
                uid = strtoul(key + 4, &end, 10);
                if (errno != 0 || end == key + 4 || *end != '\0' || uid >= UINT32_MAX)
                        return -EINVAL;
                for (size_t i = 0; i < c->n_quotas && !rule; i++)
                        if (c->quotas[i].match == QUOTA_MATCH_UID && c->quotas[i].uid == (uid_t) uid)
                                rule = &c->quotas[i];
        } else if (strncmp(key, "unit:", 5) == 0 && key[5]) {
                for (size_t i = 0; i < c->n_quotas && !rule; i++)
                        if (rule_matches(&c->quotas[i], (uid_t) -1, key + 5, NULL) &&
                            c->quotas[i].match == QUOTA_MATCH_UNIT)
                                rule = &c->quotas[i];
                if (!rule)
                        return -EINVAL; /* no unit scope exists without a rule naming it */
        } else if (strncmp(key, "cgroup:", 7) == 0 && key[7] == '/') {
                for (size_t i = 0; i < c->n_quotas && !rule; i++)
                        if (c->quotas[i].match == QUOTA_MATCH_CGROUP && rule_matches(&c->quotas[i], (uid_t) -1, NULL, key + 7))
                                rule = &c->quotas[i];
                if (!rule)
                        return -EINVAL;
        } else
                return -EINVAL;

        if (rule) {
                *ret_limited = true;
                *ret = rule->limits;
        } else if (uid != 0 && c->has_default_quota) {
                *ret_limited = true;
                *ret = c->default_quota;
        } else
                *ret_limited = false;
        return 0;
}

Scope *scope_ref(Scope *s) {
        if (s)
                s->n_ref++;
        return s;
}

void scope_unref(QuotaTable *t, Scope *s) {
        if (!s || --s->n_ref > 0)
                return;
        (void) str_table_remove(t->scopes, s->key);
        job_claim_drop(&s->alloc_claim);
        free(s->key);
        free(s);
}

void quota_reset_usage(QuotaTable *t) {
        StrTableIter i = {};
        void *v;

        while (str_table_iterate(t->scopes, &i, NULL, &v)) {
                Scope *s = v;

                s->usage = (Usage) {};
                s->context = 0;
                s->context_ranges = 0;
        }
}

void usage_add(Usage *u, bool vram, unsigned gpu, uint64_t size, int sign) {
        uint64_t *bytes = vram ? &u->vram : &u->host;

        if (sign > 0) {
                u->ranges++;
                *bytes += size;
                if (vram && gpu < QUOTA_MAX_GPUS)
                        u->vram_per_gpu[gpu] += size;
        } else {
                u->ranges--;
                *bytes -= size;
                if (vram && gpu < QUOTA_MAX_GPUS)
                        u->vram_per_gpu[gpu] -= size;
        }
}

static bool over(uint64_t used, uint64_t more, uint64_t limit) {
        return limit != QUOTA_UNLIMITED && (more > limit || used > limit - more);
}

int quota_check(Manager *m, const Scope *s, const QuotaRequest *req, const char **ret_resource,
                sd_bus_error *error) {
        const QuotaLimits *l = &s->limits;
        const Usage *u = &s->usage;

        if (!s->limited)
                return 0;

        if (req->ranges > 0 && over(u->ranges, req->ranges, l->ranges)) {
                *ret_resource = "ranges";
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "%s owns %" PRIu64 " ranges; its quota is %" PRIu64 ".", s->key, u->ranges,
                                         l->ranges);
        }
        if (req->vram > 0 && over(u->vram, req->vram, l->vram)) {
                *ret_resource = "vram";
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "%s has %s of VRAM allocated and asks for %s more; its quota is %s.", s->key,
                                         FORMAT_BYTES(u->vram), FORMAT_BYTES(req->vram), FORMAT_BYTES(l->vram));
        }
        for (size_t i = 0; i < m->n_gpus && i < QUOTA_MAX_GPUS; i++)
                if (req->vram_per_gpu[i] > 0 && over(u->vram_per_gpu[i], req->vram_per_gpu[i], l->vram_per_gpu)) {
                        *ret_resource = "vram-per-gpu";
                        return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                                 "%s has %s of VRAM on GPU 0x%x and asks for %s more; its quota is %s per GPU.",
                                                 s->key, FORMAT_BYTES(u->vram_per_gpu[i]), m->gpus[i]->gpu_id,
                                                 FORMAT_BYTES(req->vram_per_gpu[i]), FORMAT_BYTES(l->vram_per_gpu));
                }
        if (req->host > 0 && over(u->host, req->host, l->host)) {
                *ret_resource = "host";
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "%s has %s of host and GTT memory allocated and asks for %s more; its quota is %s.",
                                         s->key, FORMAT_BYTES(u->host), FORMAT_BYTES(req->host), FORMAT_BYTES(l->host));
        }
        return 0;
}
