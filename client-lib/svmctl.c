/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svmctl: the command-line client of svmd. Human tables by default, one JSON
 * document with --json (schema in svmctl(1)), exit codes by error class.
 * Everything goes through libsvmd's public API.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "macro.h"
#include "size-util.h"
#include "svmctl-cdi.h"
#include "svmctl-format.h"
#include "svmctl-table.h"
#include "svmd/svmd.h"

static bool arg_json;
static bool arg_direct;
static const char *arg_address;

typedef struct Verb {
        const char *name;
        const char *synopsis;
        const char *help;
        int (*run)(int argc, char *argv[]);
        bool needs_client;
} Verb;

static svmd_client *client;

static const Verb *find_verb(const char *name);
static int read_id_arg(const char *verb, int argc, char *argv[], int index, uint64_t *ret);

/* ---- shared helpers ---- */

/*
 * With --json a failure is also one JSON document on stdout, {"error": {"name", "message",
 * "exit_code"}}, so scripts need not read stderr; stderr keeps the sentence for people.
 */
static void json_error(const char *name, const char *message, int exit_code) {
        if (arg_json)
                (void) json_print(json_pack("{s:{s:s?,s:s,s:i}}", "error", "name", name, "message", message,
                                            "exit_code", exit_code));
}

static int usage_error(const char *verb, const char *format, ...) _printf_(2, 3);
static int usage_error(const char *verb, const char *format, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&message, format, ap) < 0)
                message = NULL;
        va_end(ap);
        fprintf(stderr, "svmctl: %s\nTry 'svmctl %s%s--help'.\n", strna(message), strempty(verb),
                verb ? " " : "");
        json_error(SVMCTL_ERROR_USAGE, strna(message), EXIT_USAGE);
        return -EINVAL;
}

/* Report a failed call once, as exit code; what says what failed. */
static int report_code(int r, svmd_error *e, const char *what, int exit_code) {
        _cleanup_free_ char *message = NULL;

        if (asprintf(&message, "%s: %s", what, e->message && *e->message ? e->message : strerror(-r)) < 0)
                message = NULL;
        fprintf(stderr, "svmctl: %s\n", strna(message));
        if (e->name && arg_json)
                fprintf(stderr, "svmctl: error name: %s\n", e->name);
        json_error(e->name, strna(message), exit_code);
        svmd_error_free(e);
        return r;
}

/* Report a failed call once; the exit code follows from r. */
static int report(int r, svmd_error *e, const char *what) {
        return report_code(r, e, what, exit_code_from_errno(r));
}

static int connect_client(void) {
        svmd_error e = SVMD_ERROR_NULL;
        int r;

        r = svmd_client_new(&client, arg_address, NULL, arg_direct ? SVMD_CLIENT_DIRECT_ONLY : 0, &e);
        if (r < 0) {
                report_code(r, &e, "cannot connect to svmd", EXIT_UNREACHABLE);
                return -ECONNREFUSED;
        }
        return 0;
}

static int parse_id(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s || !*s || *s == '-')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno != 0 || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

static bool want_help(int argc, char *argv[]) {
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--"))
                        break;
                if (streq(argv[i], "--help") || streq(argv[i], "-h"))
                        return true;
        }
        return false;
}

/* Keep the connection, and with it what it holds, until this process ends (a signal, or a crash):
 * what a client's lifetime means to svmd. */
static _noreturn_ void hold_until_terminated(void) {
        printf("Holding it until svmctl is terminated.\n");
        fflush(stdout);
        for (;;)
                pause();
}

enum {
        OPT_OWNER = 0x100,
        OPT_GPU,
        OPT_LABEL,
        OPT_DOMAIN,
        OPT_MAP,
        OPT_PERSISTENT,
        OPT_DRY_RUN,
        OPT_FLAGS,
        OPT_ALIGNMENT,
        OPT_REQUEST_ID,
        OPT_HOLD,
        OPT_UID,
        OPT_UNIT,
        OPT_CGROUP,
        OPT_READ_ONLY,
        OPT_EXPIRES,
        OPT_RANGE,
        OPT_COUNT,
        OPT_ALL,
        OPT_SVM_PREFERRED,
        OPT_SVM_PREFETCH,
        OPT_SVM_ACCESS,
        OPT_SVM_ACCESS_IN_PLACE,
        OPT_SVM_NO_ACCESS,
        OPT_SVM_FLAGS,
        OPT_SVM_GRANULARITY,
        OPT_FORMAT,
        OPT_OUTPUT,
        OPT_DEADLINE,
        OPT_WAIT,
};

/* --dry-run and --request-id, of every command that changes ranges: 1 if c is one of them. */
static int change_options_parse(svmd_change_options *o, int c, const char *arg) {
        switch (c) {
        case OPT_DRY_RUN:
                o->dry_run = true;
                return 1;
        case OPT_REQUEST_ID:
                o->request_id = arg;
                return 1;
        default:
                return 0;
        }
}

/* The SVM attribute options of alloc --domain svm and set-attr. */
#define SVM_OPTIONS                                                                     \
        { "svm-preferred",       required_argument, NULL, OPT_SVM_PREFERRED },         \
        { "svm-prefetch",        required_argument, NULL, OPT_SVM_PREFETCH },          \
        { "svm-access",          required_argument, NULL, OPT_SVM_ACCESS },            \
        { "svm-access-in-place", required_argument, NULL, OPT_SVM_ACCESS_IN_PLACE },   \
        { "svm-no-access",       required_argument, NULL, OPT_SVM_NO_ACCESS },         \
        { "svm-flags",           required_argument, NULL, OPT_SVM_FLAGS },             \
        { "svm-granularity",     required_argument, NULL, OPT_SVM_GRANULARITY }

typedef struct SvmArgs {
        svmd_svm_attributes attrs;      /* points into the fields below */
        uint32_t *access;
        uint32_t *access_in_place;
        uint32_t *no_access;
        char **flags;
        bool any;                       /* an --svm-* option was given */
} SvmArgs;

static void svm_args_done(SvmArgs *a) {
        free(a->access);
        free(a->access_in_place);
        free(a->no_access);
        strv_free(a->flags);
        *a = (SvmArgs) {};
}

static int svm_gpu_list(const char *verb, const char *option, const char *arg, uint32_t **list, size_t *n) {
        free(*list);
        *list = NULL;
        *n = 0;
        if (parse_gpu_list(arg, list, n) < 0)
                return usage_error(verb, "invalid GPU list '%s' for --%s", arg, option);
        return 0;
}

/* One --svm-* option: 1 if c is one (taken), 0 if it is not, < 0 on a usage error. */
static int svm_args_parse(SvmArgs *a, const char *verb, int c, const char *arg) {
        svmd_svm_attributes *s = &a->attrs;
        int r;

        switch (c) {
        case OPT_SVM_PREFERRED:
                if (parse_svm_location(arg, true, &s->preferred) < 0)
                        return usage_error(verb, "invalid preferred location '%s' (a GPU id, system or none)", arg);
                s->set |= SVMD_SVM_SET_PREFERRED;
                break;
        case OPT_SVM_PREFETCH:
                if (parse_svm_location(arg, false, &s->prefetch) < 0)
                        return usage_error(verb, "invalid prefetch location '%s' (a GPU id or system)", arg);
                s->set |= SVMD_SVM_SET_PREFETCH;
                break;
        case OPT_SVM_ACCESS:
                r = svm_gpu_list(verb, "svm-access", arg, &a->access, &s->n_access);
                if (r < 0)
                        return r;
                s->access = a->access;
                break;
        case OPT_SVM_ACCESS_IN_PLACE:
                r = svm_gpu_list(verb, "svm-access-in-place", arg, &a->access_in_place, &s->n_access_in_place);
                if (r < 0)
                        return r;
                s->access_in_place = a->access_in_place;
                break;
        case OPT_SVM_NO_ACCESS:
                r = svm_gpu_list(verb, "svm-no-access", arg, &a->no_access, &s->n_no_access);
                if (r < 0)
                        return r;
                s->no_access = a->no_access;
                break;
        case OPT_SVM_FLAGS:
                strv_free(a->flags);
                a->flags = NULL;
                /* The exact set: "none" (or "") clears every flag. */
                if (!streq(arg, "none") && !streq(arg, "") && split_list(arg, &a->flags) < 0)
                        return usage_error(verb, "invalid SVM flag list '%s'", arg);
                s->flags = (const char *const *) a->flags;
                s->set |= SVMD_SVM_SET_FLAGS;
                break;
        case OPT_SVM_GRANULARITY:
                if (parse_u32(arg, &s->granularity) < 0 || s->granularity > SVMD_SVM_GRANULARITY_MAX)
                        return usage_error(verb, "invalid SVM granularity '%s' (log2 of pages, 0–%u)", arg,
                                           SVMD_SVM_GRANULARITY_MAX);
                s->set |= SVMD_SVM_SET_GRANULARITY;
                break;
        default:
                return 0;
        }
        a->any = true;
        return 1;
}

/* getopt over a verb's own options; argv[0] is the verb. */
static int verb_getopt(int argc, char *argv[], const struct option *options) {
        /* Options and arguments may come in any order ("alloc 4G --gpu 0x3a1f"). */
        return getopt_long(argc, argv, "", options, NULL);
}

static json_t *json_gpu_object(const svmd_gpu *g) {
        return json_pack("{s:I,s:o,s:I,s:s,s:s,s:I,s:I,s:I,s:I}", "gpu_id", (json_int_t) g->gpu_id, "gpu_id_hex",
                         json_hex(g->gpu_id), "node_id", (json_int_t) g->node_id, "target", g->target, "name",
                         g->name, "vram_total", (json_int_t) g->vram_total, "vram_used", (json_int_t) g->vram_used,
                         "vram_free", (json_int_t) g->vram_free, "render_minor", (json_int_t) g->render_minor);
}

/* ---- status ---- */

static int verb_status(int argc, char *argv[]) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_durability d = {};
        svmd_status s;
        int r;

        if (argc > 1)
                return usage_error("status", "unexpected argument '%s'", argv[1]);
        r = svmd_get_status(client, &s, &e);
        if (r < 0)
                return report(r, &e, "reading svmd's status failed");

        /* Older svmds have no such properties: zeros, left out below. */
        (void) svmd_get_durability(client, &d, NULL);

        if (arg_json) {
                json_t *lost = json_array();

                for (uint32_t i = 0; lost && i < s.n_lost && i < SVMD_MAX_LOST_REPORTED; i++)
                        json_array_append_new(lost, json_pack("{s:I,s:s}", "id", (json_int_t) s.lost[i].id,
                                                              "reason", s.lost[i].reason));
                return json_print(json_pack("{s:s,s:s,s:I,s:I,s:I,s:o,s:b,s:b,s:I,s:o,s:I,s:I,s:I,s:I}", "version",
                                            s.version, "kfd_version", s.kfd_version, "gpus", (json_int_t) s.n_gpus,
                                            "ranges", (json_int_t) s.n_ranges, "bytes_allocated",
                                            (json_int_t) s.bytes_allocated, "clients",
                                            s.n_clients == UINT32_MAX ? json_null()
                                                                      : json_integer(s.n_clients),
                                            "direct", svmd_client_is_direct(client), "xnack", s.xnack, "n_lost",
                                            (json_int_t) s.n_lost, "lost", lost, "runtime_free",
                                            (json_int_t) d.runtime_free, "runtime_size", (json_int_t) d.runtime_size,
                                            "stored_fds", (json_int_t) d.stored_fds, "fd_store_max",
                                            (json_int_t) d.fd_store_max));
        }

        printf("svmd %s (KFD interface %s)\n", s.version, s.kfd_version);
        printf("      GPUs: %" PRIu32 "\n", s.n_gpus);
        printf("    Ranges: %" PRIu64 "\n", s.n_ranges);
        printf(" Allocated: %s\n", FORMAT_BYTES(s.bytes_allocated));
        if (s.n_clients != UINT32_MAX)
                printf("   Clients: %" PRIu32 "\n", s.n_clients);
        printf("   Hot path: %s\n", svmd_client_is_direct(client) ? "direct socket" : "bus");
        printf("     XNACK: %s\n", s.xnack ? "on" : "off");
        if (d.runtime_size > 0)
                printf("   Journal: %s free of %s in the runtime directory%s\n", FORMAT_BYTES(d.runtime_free),
                       FORMAT_BYTES(d.runtime_size),
                       d.runtime_free < d.runtime_size / 20 ? " (nearly full: persistent ranges may be refused)" : "");
        if (d.fd_store_max > 0)
                printf("  Fd store: %" PRIu64 " of %" PRIu64 " fds\n", d.stored_fds, d.fd_store_max);
        if (s.n_lost > 0) {
                printf("      Lost: %" PRIu32 " persistent range(s) could not be restored at the last start:\n", s.n_lost);
                for (uint32_t i = 0; i < s.n_lost && i < SVMD_MAX_LOST_REPORTED; i++)
                        printf("            range %" PRIu64 ": %s\n", s.lost[i].id, s.lost[i].reason);
        }
        return 0;
}

/* ---- gpus ---- */

static int verb_gpus(int argc, char *argv[]) {
        _cleanup_free_ svmd_gpu *gpus = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        Table *t = NULL;
        size_t n;
        int r;

        if (argc > 1)
                return usage_error("gpus", "unexpected argument '%s'", argv[1]);
        r = svmd_list_gpus(client, &gpus, &n, &e);
        if (r < 0)
                return report(r, &e, "listing GPUs failed");

        if (arg_json) {
                json_t *a = json_array();

                for (size_t i = 0; i < n; i++)
                        json_array_append_new(a, json_gpu_object(&gpus[i]));
                return json_print(json_pack("{s:o}", "gpus", a));
        }

        r = table_new(&t, (const char *const[]) { "GPU", ">NODE", "TARGET", "NAME", ">VRAM", ">USED", ">FREE",
                                                  "RENDER", NULL });
        if (r < 0)
                return r;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                char id[16], node[16], render[32];

                snprintf(id, sizeof(id), "0x%x", gpus[i].gpu_id);
                snprintf(node, sizeof(node), "%" PRIu32, gpus[i].node_id);
                snprintf(render, sizeof(render), "renderD%u", gpus[i].render_minor);
                r = table_add_row(t, (const char *const[]) { id, node, gpus[i].target, gpus[i].name,
                                                             FORMAT_BYTES(gpus[i].vram_total),
                                                             FORMAT_BYTES(gpus[i].vram_used),
                                                             FORMAT_BYTES(gpus[i].vram_free), render });
        }
        if (r >= 0)
                r = table_print(t, "No GPUs.");
        table_free(t);
        return r;
}

/* ---- ranges ---- */

/*
 * All ranges matching f, page by page: each page starts after the last id of the one before.
 * An svmd from before the cursor refuses "after" (InvalidArgs): then by offset, as it pages.
 */
static int list_all_ranges(svmd_range_filter *f, svmd_range **ret, size_t *ret_n, bool quiet_denied) {
        _cleanup_free_ svmd_range *all = NULL;
        size_t n_all = 0;
        svmd_error e = SVMD_ERROR_NULL;
        bool by_offset = false;

        f->limit = 4096;
        f->offset = 0;
        f->has_after = false;
        for (;;) {
                _cleanup_free_ svmd_range *page = NULL;
                svmd_range *p;
                size_t n;
                int r;

                r = svmd_list_ranges(client, f, &page, &n, &e);
                if (r == -EINVAL && f->has_after) {
                        svmd_error_free(&e);
                        by_offset = true;
                        f->has_after = false;
                        f->offset = n_all;
                        r = svmd_list_ranges(client, f, &page, &n, &e);
                }
                if (r < 0 && quiet_denied && (r == -EACCES || r == -EPERM)) {
                        svmd_error_free(&e);
                        return r;
                }
                if (r < 0)
                        return report(r, &e, "listing ranges failed");
                p = reallocarray(all, n_all + n ?: 1, sizeof(svmd_range));
                if (!p)
                        return -ENOMEM;
                all = p;
                if (n > 0) /* an empty page may come as NULL */
                        memcpy(all + n_all, page, n * sizeof(svmd_range));
                n_all += n;
                if (n < f->limit)
                        break;
                if (by_offset)
                        f->offset = n_all;
                else {
                        f->has_after = true;
                        f->after = all[n_all - 1].id;
                }
        }
        *ret = TAKE_PTR(all);
        *ret_n = n_all;
        return 0;
}

static bool is_svm_range(const svmd_range *rg) {
        return streq(rg->domain, "svm");
}

/* What ListRanges does not say of each listed range: its object's properties. */
typedef struct RangeDetails {
        size_t n;
        svmd_range_info *info;  /* one per listed range, in list order */
        bool *found;            /* false: freed since it was listed */
        size_t n_svm;           /* svm ranges found */
} RangeDetails;

static void range_details_done(RangeDetails *d) {
        free(d->info);
        free(d->found);
        *d = (RangeDetails) {};
}

static int fetch_range_details(const svmd_range *ranges, size_t n, RangeDetails *ret) {
        svmd_error e = SVMD_ERROR_NULL;
        RangeDetails d = { .n = n };

        d.info = calloc(n ?: 1, sizeof(svmd_range_info));
        d.found = calloc(n ?: 1, sizeof(bool));
        if (!d.info || !d.found) {
                range_details_done(&d);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                int r;

                r = svmd_get_range(client, ranges[i].id, &d.info[i], NULL, NULL, &e);
                if (r == -ENOENT)
                        svmd_error_free(&e); /* freed meanwhile: listed without details */
                else if (r < 0) {
                        range_details_done(&d);
                        return report(r, &e, "reading a range failed");
                } else {
                        d.found[i] = true;
                        d.n_svm += is_svm_range(&ranges[i]);
                }
        }
        *ret = d;
        return 0;
}

static json_t *json_range_object(const svmd_range *rg) {
        return json_pack("{s:I,s:I,s:o,s:I,s:s,s:I,s:o,s:o,s:I,s:s,s:s}", "id", (json_int_t) rg->id, "va",
                         (json_int_t) rg->va, "va_hex", json_hex(rg->va), "size", (json_int_t) rg->size, "domain",
                         rg->domain, "home_gpu", (json_int_t) rg->home_gpu, "mapped_gpus",
                         json_u32_array(rg->mapped, rg->n_mapped), "flags", json_flags(rg->flags), "owner_uid",
                         (json_int_t) rg->owner_uid, "label", rg->label, "state", rg->state);
}

/* The SVM attributes of the svm ranges, below the ranges table. */
static int print_svm_table(const svmd_range *ranges, size_t n, const RangeDetails *d) {
        Table *t = NULL;
        int r;

        r = table_new(&t, (const char *const[]) { ">ID", "PREFERRED", "PREFETCH", "SVM FLAGS", ">GRANULARITY",
                                                  "ACCESS", "IN PLACE", NULL });
        if (r < 0)
                return r;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                _cleanup_free_ char *access = NULL, *in_place = NULL;
                char id[24], pref[16], pf[16], gran[16];
                const svmd_svm_state *st;

                if (!is_svm_range(&ranges[i]) || !d->found[i])
                        continue;
                st = &d->info[i].svm;
                access = format_gpu_list(st->access, st->n_access);
                in_place = format_gpu_list(st->access_in_place, st->n_access_in_place);

                snprintf(id, sizeof(id), "%" PRIu64, ranges[i].id);
                snprintf(gran, sizeof(gran), "%" PRIu32, st->granularity);
                r = table_add_row(t, (const char *const[]) {
                        id, format_svm_location(pref, sizeof(pref), st->preferred),
                        format_svm_location(pf, sizeof(pf), st->prefetch), st->flag_names[0] ? st->flag_names : "-",
                        gran, access, in_place });
        }
        if (r >= 0 && table_n_rows(t) > 0) {
                putchar('\n');
                r = table_print(t, NULL);
        }
        table_free(t);
        return r;
}

static int verb_ranges(int argc, char *argv[]) {
        static const struct option options[] = {
                { "owner", required_argument, NULL, OPT_OWNER },
                { "gpu",   required_argument, NULL, OPT_GPU },
                { "label", required_argument, NULL, OPT_LABEL },
                { "all",   no_argument,       NULL, OPT_ALL },
                {}
        };
        _cleanup_free_ svmd_range *ranges = NULL;
        svmd_range_filter f = {};
        _cleanup_(range_details_done) RangeDetails details = {};
        Table *t = NULL;
        size_t n;
        int c, r;

        while ((c = verb_getopt(argc, argv, options)) >= 0)
                switch (c) {
                case OPT_OWNER:
                        if (parse_u32(optarg, &f.owner) < 0)
                                return usage_error("ranges", "invalid uid '%s'", optarg);
                        f.has_owner = true;
                        break;
                case OPT_GPU:
                        if (parse_u32(optarg, &f.gpu) < 0)
                                return usage_error("ranges", "invalid GPU id '%s'", optarg);
                        f.has_gpu = true;
                        break;
                case OPT_LABEL:
                        f.label = optarg;
                        break;
                case OPT_ALL:
                        f.all = true;
                        break;
                default:
                        return usage_error("ranges", "unknown option \'%s\'", argv[optind - 1]);
                }
        if (optind < argc)
                return usage_error("ranges", "unexpected argument '%s'", argv[optind]);

        r = list_all_ranges(&f, &ranges, &n, false);
        if (r < 0)
                return r;
        r = fetch_range_details(ranges, n, &details);
        if (r < 0)
                return r;

        if (arg_json) {
                json_t *a = json_array();

                for (size_t i = 0; i < n; i++) {
                        json_t *o = json_range_object(&ranges[i]);

                        if (o && details.found[i]) {
                                json_object_set_new(o, "persistent", json_boolean(details.info[i].persistent));
                                json_object_set_new(o, "holders", json_integer(details.info[i].n_holders));
                                json_object_set_new(o, "detached", json_boolean(details.info[i].detached));
                                if (is_svm_range(&ranges[i]))
                                        json_object_set_new(o, "svm", json_svm_state(&details.info[i].svm));
                        }
                        json_array_append_new(a, o);
                }
                return json_print(json_pack("{s:o}", "ranges", a));
        }

        r = table_new(&t, (const char *const[]) { ">ID", "VA", ">SIZE", "DOMAIN", "HOME", "MAPPED", "FLAGS",
                                                  ">OWNER", "STATE", "PERSISTENT", ">HOLDERS", "LABEL", NULL });
        if (r < 0)
                return r;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                _cleanup_free_ char *mapped = format_gpu_list(ranges[i].mapped, ranges[i].n_mapped);
                _cleanup_free_ char *flags = format_flags(ranges[i].flags);
                char id[24], va[24], home[16], owner[16], holders[16] = "-";
                const char *state = ranges[i].state, *persistent = "-";

                snprintf(id, sizeof(id), "%" PRIu64, ranges[i].id);
                snprintf(va, sizeof(va), "0x%" PRIx64, ranges[i].va);
                snprintf(home, sizeof(home), "0x%x", ranges[i].home_gpu);
                snprintf(owner, sizeof(owner), "%" PRIu32, ranges[i].owner_uid);
                if (details.found[i]) {
                        persistent = details.info[i].persistent ? "yes" : "no";
                        snprintf(holders, sizeof(holders), "%" PRIu32, details.info[i].n_holders);
                        /* A degraded range says so first: that is what needs attention. */
                        if (details.info[i].detached && streq(state, "active"))
                                state = "detached";
                }
                r = table_add_row(t, (const char *const[]) { id, va, FORMAT_BYTES(ranges[i].size),
                                                             ranges[i].domain, home, mapped, flags, owner,
                                                             state, persistent, holders,
                                                             ranges[i].label[0] ? ranges[i].label : "-" });
        }
        if (r >= 0)
                r = table_print(t, "No ranges.");
        table_free(t);
        if (r >= 0 && details.n_svm > 0)
                r = print_svm_table(ranges, n, &details);
        return r;
}

/* ---- show ---- */

static int verb_show(int argc, char *argv[]) {
        _cleanup_free_ svmd_token_info *tokens = NULL;
        _cleanup_free_ svmd_holder *holders = NULL;
        _cleanup_free_ svmd_revoking *revoking = NULL;
        _cleanup_free_ char *mapped = NULL, *flags = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_range_info info;
        const svmd_range *rg = &info.range;
        size_t n_holders = 0, n_tokens = 0, n_revoking = 0;
        bool has_tokens;
        uint64_t id = 0;
        int r;

        r = read_id_arg("show", argc, argv, 1, &id);
        if (r < 0)
                return r;
        if (argc > 2)
                return usage_error("show", "unexpected argument '%s'", argv[2]);
        r = svmd_get_range(client, id, &info, &holders, &n_holders, &e);
        if (r < 0)
                return report(r, &e, "reading the range failed");
        r = svmd_get_revoking(client, id, &revoking, &n_revoking, &e);
        if (r < 0)
                return report(r, &e, "reading the range failed");
        /* Its tokens are for its owner and administrators; a holder sees the range without them. */
        r = svmd_list_tokens(client, id, &tokens, &n_tokens, &e);
        has_tokens = r >= 0;
        if (r < 0)
                svmd_error_free(&e);

        if (arg_json) {
                json_t *o = json_range_object(rg), *h = json_array(), *v = json_array();

                for (size_t i = 0; h && i < n_holders; i++)
                        json_array_append_new(h, json_pack("{s:I,s:s}", "uid", (json_int_t) holders[i].uid, "unit",
                                                           holders[i].unit));
                for (size_t i = 0; v && i < n_revoking; i++)
                        json_array_append_new(v, json_pack("{s:I,s:I}", "uid", (json_int_t) revoking[i].uid,
                                                           "deadline_usec", (json_int_t) revoking[i].deadline_usec));
                if (o) {
                        json_object_set_new(o, "owner_unit", json_string(info.owner_unit));
                        json_object_set_new(o, "persistent", json_boolean(info.persistent));
                        json_object_set_new(o, "detached", json_boolean(info.detached));
                        json_object_set_new(o, "holders", h);
                        json_object_set_new(o, "revoking", v);
                        json_object_set_new(o, "tokens", has_tokens ? json_integer((json_int_t) n_tokens) : json_null());
                        if (is_svm_range(rg))
                                json_object_set_new(o, "svm", json_svm_state(&info.svm));
                }
                return json_print(o);
        }

        /* Key=value lines, like systemctl show. */
        mapped = format_gpu_list(rg->mapped, rg->n_mapped);
        flags = format_flags(rg->flags);
        printf("Id=%" PRIu64 "\nVa=0x%" PRIx64 "\nSize=%" PRIu64 "\nDomain=%s\nHomeGpu=0x%x\nMappedGpus=%s\n"
               "Flags=%s\nLabel=%s\nState=%s\nPersistent=%s\nDetached=%s\n",
               rg->id, rg->va, rg->size, rg->domain, rg->home_gpu, strna(mapped), strna(flags), rg->label,
               rg->state, info.persistent ? "yes" : "no", info.detached ? "yes" : "no");
        if (rg->owner_uid == UINT32_MAX)
                printf("Owner=\n");
        else
                printf("Owner=%" PRIu32 "%s%s\n", rg->owner_uid, info.owner_unit[0] ? " " : "", info.owner_unit);
        printf("Holders=");
        for (size_t i = 0; i < n_holders; i++)
                printf("%s%" PRIu32 "%s%s", i > 0 ? " " : "", holders[i].uid, holders[i].unit[0] ? ":" : "",
                       holders[i].unit);
        putchar('\n');
        /* Holds being revoked: "UID until DEADLINE", comma-separated (the time has spaces). */
        printf("Revoking=");
        for (size_t i = 0; i < n_revoking; i++) {
                char when[64];

                format_time(when, sizeof(when), revoking[i].deadline_usec);
                printf("%s%" PRIu32 " until %s", i > 0 ? ", " : "", revoking[i].uid, when);
        }
        putchar('\n');
        if (has_tokens)
                printf("Tokens=%zu\n", n_tokens);
        if (is_svm_range(rg)) {
                _cleanup_free_ char *access = format_gpu_list(info.svm.access, info.svm.n_access);
                _cleanup_free_ char *in_place = format_gpu_list(info.svm.access_in_place,
                                                                info.svm.n_access_in_place);
                char pref[16], pf[16];

                printf("SvmPreferred=%s\nSvmPrefetch=%s\nSvmFlags=%s\nSvmGranularity=%" PRIu32
                       "\nSvmAccess=%s\nSvmAccessInPlace=%s\n",
                       format_svm_location(pref, sizeof(pref), info.svm.preferred),
                       format_svm_location(pf, sizeof(pf), info.svm.prefetch), info.svm.flag_names,
                       info.svm.granularity, strna(access), strna(in_place));
        }
        return 0;
}

/* ---- alloc ---- */

/*
 * The GPU of a VRAM allocation without --gpu: the only one svmctl sees, i.e. the only one on the
 * node or the only one the environment names (a container given one GPU, docs/containers.md).
 */
static int default_gpu(uint32_t *ret) {
        _cleanup_free_ svmd_gpu *gpus = NULL;
        _cleanup_free_ char *names = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        size_t n, len = 0;
        FILE *f;
        int r;

        r = svmd_list_gpus(client, &gpus, &n, &e);
        if (r < 0)
                return report(r, &e, "listing GPUs failed");
        if (n == 1) {
                *ret = gpus[0].gpu_id;
                return 0;
        }
        f = open_memstream(&names, &len);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s0x%x", i > 0 ? ", " : "", gpus[i].gpu_id);
        if (fclose(f) != 0)
                return -ENOMEM;
        return usage_error("alloc", "VRAM needs --gpu G (%s)", n > 0 ? names : "no GPUs visible");
}

static int verb_alloc(int argc, char *argv[]) {
        static const struct option options[] = {
                { "gpu",        required_argument, NULL, OPT_GPU },
                { "domain",     required_argument, NULL, OPT_DOMAIN },
                { "map",        required_argument, NULL, OPT_MAP },
                { "label",      required_argument, NULL, OPT_LABEL },
                { "persistent", no_argument,       NULL, OPT_PERSISTENT },
                { "dry-run",    no_argument,       NULL, OPT_DRY_RUN },
                { "flags",      required_argument, NULL, OPT_FLAGS },
                { "alignment",  required_argument, NULL, OPT_ALIGNMENT },
                { "request-id", required_argument, NULL, OPT_REQUEST_ID },
                { "hold",       no_argument,       NULL, OPT_HOLD },
                SVM_OPTIONS,
                {}
        };
        _cleanup_free_ uint32_t *map = NULL;
        _cleanup_(strv_freep) char **flags = NULL;
        _cleanup_(svm_args_done) SvmArgs svm = {};
        svmd_allocate_options o = {};
        bool hold = false;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_allocation a = {};
        svmd_range_info info;
        svmd_range *done = &info.range;
        const char *domain = "vram";
        char where[48] = "";
        uint64_t size;
        uint32_t gpu = 0;
        bool has_gpu = false, is_svm;
        int c, r;

        while ((c = verb_getopt(argc, argv, options)) >= 0)
                switch (c) {
                case OPT_GPU:
                        if (parse_u32(optarg, &gpu) < 0)
                                return usage_error("alloc", "invalid GPU id '%s'", optarg);
                        has_gpu = true;
                        break;
                case OPT_DOMAIN:
                        if (!streq(optarg, "vram") && !streq(optarg, "gtt") && !streq(optarg, "host") &&
                            !streq(optarg, "svm"))
                                return usage_error("alloc", "invalid domain '%s' (vram, gtt, host or svm)", optarg);
                        domain = optarg;
                        break;
                case OPT_MAP:
                        free(map);
                        map = NULL;
                        if (parse_gpu_list(optarg, &map, &o.n_map) < 0)
                                return usage_error("alloc", "invalid GPU list '%s'", optarg);
                        break;
                case OPT_LABEL:
                        o.label = optarg;
                        break;
                case OPT_PERSISTENT:
                        o.persistent = true;
                        break;
                case OPT_DRY_RUN:
                        o.dry_run = true;
                        break;
                case OPT_FLAGS:
                        strv_free(flags);
                        flags = NULL;
                        if (split_list(optarg, &flags) < 0)
                                return usage_error("alloc", "invalid flag list '%s'", optarg);
                        break;
                case OPT_ALIGNMENT:
                        if (parse_size(optarg, &o.alignment) < 0)
                                return usage_error("alloc", "invalid alignment '%s'", optarg);
                        break;
                case OPT_REQUEST_ID:
                        o.request_id = optarg;
                        break;
                case OPT_HOLD:
                        hold = true;
                        break;
                default:
                        r = svm_args_parse(&svm, "alloc", c, optarg);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                return usage_error("alloc", "unknown option \'%s\'", argv[optind - 1]);
                }
        if (optind >= argc)
                return usage_error("alloc", "missing SIZE");
        if (optind + 1 < argc)
                return usage_error("alloc", "unexpected argument '%s'", argv[optind + 1]);
        if (parse_size(argv[optind], &size) < 0 || size == 0)
                return usage_error("alloc", "invalid size '%s' (e.g. 4G, 512M, 0x1000)", argv[optind]);
        is_svm = streq(domain, "svm");
        if (!has_gpu && streq(domain, "vram")) {
                r = default_gpu(&gpu);
                if (r < 0)
                        return r;
        }
        if (svm.any && !is_svm)
                return usage_error("alloc", "the --svm-* options are for --domain svm");
        if (flags && is_svm)
                return usage_error("alloc", "--flags is not for svm ranges; use --svm-flags");
        o.map = map;
        o.flags = (const char *const *) flags;
        o.svm = svm.any ? &svm.attrs : NULL;

        r = svmd_allocate(client, size, gpu, domain, &o, &a, &e);
        if (r < 0)
                return report(r, &e, "allocation failed");

        /*
         * Say what svmd did, not what was asked: the range's home GPU (svmd picks one for gtt, host
         * and svm), and for a retried request id the range the first request made.
         */
        info = (svmd_range_info) {
                .range = { .id = a.id, .va = a.va, .size = size, .home_gpu = gpu },
                .persistent = o.persistent,
        };
        snprintf(done->domain, sizeof(done->domain), "%s", domain);
        if (!o.dry_run) {
                r = svmd_get_range(client, a.id, &info, NULL, NULL, &e);
                if (r < 0)
                        return report(r, &e, "reading the allocated range failed");
        }

        if (arg_json) {
                json_t *j = json_pack("{s:I,s:I,s:o,s:I,s:s,s:o,s:o,s:b,s:b}", "id", (json_int_t) a.id, "va",
                                      (json_int_t) a.va, "va_hex", json_hex(a.va), "size", (json_int_t) done->size,
                                      "domain", done->domain, "gpu",
                                      o.dry_run && !has_gpu ? json_null() : json_integer(done->home_gpu),
                                      "mapped_gpus",
                                      o.dry_run ? json_u32_array(map, o.n_map)
                                                : json_u32_array(done->mapped, done->n_mapped),
                                      "persistent", info.persistent, "dry_run", o.dry_run);

                /* svm: the attributes asked for (svmctl show ID has what the range has). */
                if (j && is_svm)
                        json_object_set_new(j, "svm", json_svm_attributes(&svm.attrs));
                r = json_print(j);
                if (r < 0 || !hold || o.dry_run)
                        return r;
                /* --hold as without --json, but stdout is the one JSON document. */
                fflush(stdout);
                for (;;)
                        pause();
        }
        if (!is_svm) {
                /* A dry run of gtt or host without --gpu: svmd picks the home GPU when it allocates. */
                if (!o.dry_run || has_gpu)
                        snprintf(where, sizeof(where), " on GPU 0x%x", done->home_gpu);
        } else {
                /* --gpu is the preferred location of an svm range, unless --svm-preferred says otherwise;
                 * once allocated, the range's own. */
                uint32_t pref = !o.dry_run                                 ? info.svm.preferred
                                : (svm.attrs.set & SVMD_SVM_SET_PREFERRED) ? svm.attrs.preferred
                                : gpu != 0                                 ? gpu
                                                                           : SVMD_SVM_LOCATION_NONE;

                if (pref == SVMD_SVM_LOCATION_SYSTEM)
                        snprintf(where, sizeof(where), " preferring system memory");
                else if (pref != SVMD_SVM_LOCATION_NONE)
                        snprintf(where, sizeof(where), " preferring GPU 0x%x", pref);
        }
        if (o.dry_run) {
                printf("Dry run: %s of %s%s can be allocated.\n", FORMAT_BYTES(size), domain, where);
                return 0;
        }
        printf("Allocated range %" PRIu64 ": %s of %s%s at 0x%" PRIx64 ".\n", a.id, FORMAT_BYTES(done->size),
               done->domain, where, a.va);
        if (hold)
                hold_until_terminated();
        if (!info.persistent)
                fprintf(stderr, "Note: range %" PRIu64 " is not persistent: svmd frees it when svmctl disconnects; "
                        "use --persistent to keep it, or --hold to keep svmctl running.\n", a.id);
        return 0;
}

/* ---- set-attr ---- */

static int verb_set_attr(int argc, char *argv[]) {
        static const struct option options[] = {
                { "dry-run",    no_argument,       NULL, OPT_DRY_RUN },
                { "request-id", required_argument, NULL, OPT_REQUEST_ID },
                SVM_OPTIONS,
                {}
        };
        _cleanup_(svm_args_done) SvmArgs svm = {};
        svmd_change_options o = {};
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t id = 0;
        int c, r;

        while ((c = verb_getopt(argc, argv, options)) >= 0) {
                if (change_options_parse(&o, c, optarg) > 0)
                        continue;
                r = svm_args_parse(&svm, "set-attr", c, optarg);
                if (r < 0)
                        return r;
                if (r == 0)
                        return usage_error("set-attr", "unknown option '%s'", argv[optind - 1]);
        }
        r = read_id_arg("set-attr", argc, argv, optind, &id);
        if (r < 0)
                return r;
        if (optind + 1 < argc)
                return usage_error("set-attr", "unexpected argument '%s'", argv[optind + 1]);
        if (!svm.any)
                return usage_error("set-attr", "nothing to set: give at least one --svm-* option");

        r = svmd_set_attributes(client, id, &svm.attrs, &o, &e);
        if (r < 0)
                return report(r, &e, "setting SVM attributes failed");
        if (arg_json)
                return json_print(json_pack("{s:I,s:o,s:b}", "id", (json_int_t) id, "svm",
                                            json_svm_attributes(&svm.attrs), "dry_run", o.dry_run));
        if (o.dry_run)
                printf("Dry run: the SVM attributes of range %" PRIu64 " can be set.\n", id);
        else
                printf("Set the SVM attributes of range %" PRIu64 ".\n", id);
        return 0;
}

/* ---- commit ---- */

/* What one operation of a commit file points to: freed with it. */
typedef struct CommitArgs {
        uint32_t *gpus;
        char **flags;
        SvmArgs svm;
} CommitArgs;

static void commit_args_done(CommitArgs *a) {
        free(a->gpus);
        strv_free(a->flags);
        svm_args_done(&a->svm);
}

static int commit_error(size_t i, const char *format, ...) _printf_(2, 3);
static int commit_error(size_t i, const char *format, ...) {
        _cleanup_free_ char *s = NULL;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&s, format, ap) < 0)
                s = NULL;
        va_end(ap);
        return usage_error("commit", "operation %zu: %s", i, strna(s));
}

/* A GPU id, a size or a count: a JSON number, or a string as on the command line ("0x3a1f", "4G"). */
static int json_u64(json_t *v, bool size, uint64_t *ret) {
        uint32_t u;

        if (json_is_integer(v) && json_integer_value(v) >= 0) {
                *ret = (uint64_t) json_integer_value(v);
                return 0;
        }
        if (!json_is_string(v))
                return -EINVAL;
        if (size)
                return parse_size(json_string_value(v), ret);
        if (parse_u32(json_string_value(v), &u) < 0)
                return -EINVAL;
        *ret = u;
        return 0;
}

static int json_gpu(json_t *v, uint32_t *ret) {
        uint64_t u;

        if (json_u64(v, false, &u) < 0 || u > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t) u;
        return 0;
}

static int json_gpu_list(json_t *v, uint32_t **ret, size_t *ret_n) {
        size_t i;
        json_t *x;

        if (!json_is_array(v))
                return -EINVAL;
        free(*ret);
        *ret = calloc(json_array_size(v) ?: 1, sizeof(uint32_t));
        if (!*ret)
                return -ENOMEM;
        json_array_foreach(v, i, x)
                if (json_gpu(x, &(*ret)[i]) < 0)
                        return -EINVAL;
        *ret_n = json_array_size(v);
        return 0;
}

static int json_strv(json_t *v, char ***ret) {
        size_t i;
        json_t *x;

        if (!json_is_array(v))
                return -EINVAL;
        *ret = calloc(json_array_size(v) + 1, sizeof(char *));
        if (!*ret)
                return -ENOMEM;
        json_array_foreach(v, i, x) {
                if (!json_is_string(x))
                        return -EINVAL;
                (*ret)[i] = strdup(json_string_value(x));
                if (!(*ret)[i])
                        return -ENOMEM;
        }
        return 0;
}

/* "svm": {"preferred", "prefetch", "flags", "granularity", "access", "access-in-place", "no-access"}. */
static int parse_commit_svm(size_t i, json_t *o, SvmArgs *a) {
        svmd_svm_attributes *s = &a->attrs;
        const char *key;
        json_t *v;

        if (!json_is_object(o))
                return commit_error(i, "\"svm\" must be an object");
        json_object_foreach(o, key, v) {
                int r = 0;

                if (streq(key, "preferred") || streq(key, "prefetch")) {
                        bool pref = streq(key, "preferred");
                        uint32_t *loc = pref ? &s->preferred : &s->prefetch;

                        if (json_is_string(v))
                                r = parse_svm_location(json_string_value(v), pref, loc);
                        else
                                r = json_gpu(v, loc);
                        s->set |= pref ? SVMD_SVM_SET_PREFERRED : SVMD_SVM_SET_PREFETCH;
                } else if (streq(key, "flags")) {
                        r = json_strv(v, &a->flags);
                        s->flags = (const char *const *) a->flags;
                        s->set |= SVMD_SVM_SET_FLAGS;
                } else if (streq(key, "granularity")) {
                        uint64_t g = 0;

                        r = json_u64(v, false, &g);
                        if (r >= 0 && g > SVMD_SVM_GRANULARITY_MAX)
                                r = -EINVAL;
                        s->granularity = (uint32_t) g;
                        s->set |= SVMD_SVM_SET_GRANULARITY;
                } else if (streq(key, "access")) {
                        r = json_gpu_list(v, &a->access, &s->n_access);
                        s->access = a->access;
                } else if (streq(key, "access-in-place")) {
                        r = json_gpu_list(v, &a->access_in_place, &s->n_access_in_place);
                        s->access_in_place = a->access_in_place;
                } else if (streq(key, "no-access")) {
                        r = json_gpu_list(v, &a->no_access, &s->n_no_access);
                        s->no_access = a->no_access;
                } else
                        return commit_error(i, "unknown key \"svm.%s\"", key);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return commit_error(i, "invalid \"svm.%s\"", key);
                a->any = true;
        }
        return 0;
}

static const char *const commit_op_names[] = {
        [SVMD_OP_ALLOCATE] = "allocate",
        [SVMD_OP_MAP] = "map",
        [SVMD_OP_UNMAP] = "unmap",
        [SVMD_OP_FREE] = "free",
        [SVMD_OP_SET_ATTRIBUTES] = "set-attributes",
};

/* One operation of a commit file into op (its arrays in a). */
static int parse_commit_op(size_t i, json_t *o, svmd_op *op, CommitArgs *a) {
        const char *key, *name;
        bool has_kind = false, has_range = false;
        json_t *v;

        if (!json_is_object(o))
                return commit_error(i, "not an object");
        name = json_string_value(json_object_get(o, "op"));
        for (size_t k = 0; name && k < ELEMENTSOF(commit_op_names); k++)
                if (commit_op_names[k] && streq(commit_op_names[k], name)) {
                        op->kind = (svmd_op_kind) k;
                        has_kind = true;
                }
        if (!has_kind)
                return commit_error(i, "\"op\" must be allocate, map, unmap, free or set-attributes");
        if (op->kind == SVMD_OP_ALLOCATE)
                op->domain = "vram";

        json_object_foreach(o, key, v) {
                bool alloc = op->kind == SVMD_OP_ALLOCATE;
                int r = 0;

                if (streq(key, "op"))
                        continue;
                if (!alloc && (streq(key, "id") || streq(key, "ref"))) {
                        uint64_t u = 0;

                        r = json_u64(v, false, &u);
                        if (streq(key, "ref")) {
                                if (r >= 0 && u >= i)
                                        return commit_error(i, "\"ref\" must name an earlier allocate");
                                op->by_ref = true;
                                op->ref = (uint32_t) u;
                        } else
                                op->id = u;
                        if (has_range)
                                return commit_error(i, "give \"id\" or \"ref\", not both");
                        has_range = true;
                } else if ((op->kind == SVMD_OP_MAP || op->kind == SVMD_OP_UNMAP) && streq(key, "gpus"))
                        r = json_gpu_list(v, &a->gpus, &op->n_gpus);
                else if (alloc && streq(key, "map"))
                        r = json_gpu_list(v, &a->gpus, &op->n_gpus);
                else if (alloc && streq(key, "size"))
                        r = json_u64(v, true, &op->size);
                else if (alloc && streq(key, "alignment"))
                        r = json_u64(v, true, &op->alignment);
                else if (alloc && streq(key, "gpu"))
                        r = json_gpu(v, &op->gpu_id);
                else if (alloc && streq(key, "domain")) {
                        op->domain = json_string_value(v);
                        r = op->domain ? 0 : -EINVAL;
                } else if (alloc && streq(key, "label")) {
                        op->label = json_string_value(v);
                        r = op->label ? 0 : -EINVAL;
                } else if (alloc && streq(key, "persistent")) {
                        op->persistent = json_is_true(v);
                        r = json_is_boolean(v) ? 0 : -EINVAL;
                } else if (alloc && streq(key, "flags"))
                        r = json_strv(v, &a->flags);
                else if ((alloc || op->kind == SVMD_OP_SET_ATTRIBUTES) && streq(key, "svm")) {
                        r = parse_commit_svm(i, v, &a->svm);
                        if (r < 0)
                                return r;
                } else
                        return commit_error(i, "\"%s\" takes no \"%s\"", name, key);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return commit_error(i, "invalid \"%s\"", key);
        }
        if (op->kind == SVMD_OP_ALLOCATE && op->size == 0)
                return commit_error(i, "allocate needs a \"size\"");
        if (op->kind != SVMD_OP_ALLOCATE && !has_range)
                return commit_error(i, "%s needs the range: \"id\", or \"ref\" to an earlier allocate", name);
        op->gpus = a->gpus;
        op->flags = (const char *const *) a->flags;
        op->svm = a->svm.any ? &a->svm.attrs : NULL;
        return 0;
}

static int verb_commit(int argc, char *argv[]) {
        static const struct option options[] = {
                { "dry-run",    no_argument,       NULL, OPT_DRY_RUN },
                { "request-id", required_argument, NULL, OPT_REQUEST_ID },
                {}
        };
        _cleanup_free_ svmd_op_result *results = NULL;
        _cleanup_free_ CommitArgs *args = NULL;
        _cleanup_free_ svmd_op *ops = NULL;
        json_auto_t *doc = NULL;
        svmd_change_options o = {};
        svmd_error e = SVMD_ERROR_NULL;
        json_error_t jerr;
        json_t *list, *x;
        size_t n, i;
        int c, r;

        while ((c = verb_getopt(argc, argv, options)) >= 0)
                if (change_options_parse(&o, c, optarg) == 0)
                        return usage_error("commit", "unknown option '%s'", argv[optind - 1]);
        if (optind >= argc)
                return usage_error("commit", "missing FILE (- for stdin)");
        if (optind + 1 < argc)
                return usage_error("commit", "unexpected argument '%s'", argv[optind + 1]);
        doc = streq(argv[optind], "-") ? json_loadf(stdin, 0, &jerr) : json_load_file(argv[optind], 0, &jerr);
        if (!doc)
                return usage_error("commit", "%s:%d:%d: %s", streq(argv[optind], "-") ? "stdin" : argv[optind],
                                   jerr.line, jerr.column, jerr.text);
        /* The operations, or {"operations": [...]}. */
        list = json_is_object(doc) ? json_object_get(doc, "operations") : doc;
        if (!json_is_array(list) || json_array_size(list) == 0)
                return usage_error("commit", "expected a non-empty array of operations, or {\"operations\": [...]}");
        n = json_array_size(list);
        ops = calloc(n, sizeof(svmd_op));
        args = calloc(n, sizeof(CommitArgs));
        results = calloc(n, sizeof(svmd_op_result));
        if (!ops || !args || !results)
                return -ENOMEM;
        r = 0;
        json_array_foreach(list, i, x) {
                r = parse_commit_op(i, x, &ops[i], &args[i]);
                if (r < 0)
                        break;
        }
        if (r >= 0) {
                r = svmd_commit(client, ops, n, &o, results, &e);
                if (r < 0)
                        r = report(r, &e, "commit failed");
        }
        if (r >= 0 && arg_json) {
                json_t *a = json_array();

                for (i = 0; i < n; i++) {
                        json_t *y = json_pack("{s:s,s:I}", "op", commit_op_names[ops[i].kind], "id",
                                              (json_int_t) results[i].id);

                        if (y && ops[i].kind == SVMD_OP_ALLOCATE) {
                                json_object_set_new(y, "va", json_integer((json_int_t) results[i].va));
                                json_object_set_new(y, "va_hex", json_hex(results[i].va));
                        }
                        json_array_append_new(a, y);
                }
                r = json_print(json_pack("{s:o,s:b}", "results", a, "dry_run", o.dry_run));
        } else if (r >= 0 && o.dry_run)
                printf("Dry run: the %zu operation(s) can be committed.\n", n);
        else if (r >= 0) {
                printf("Committed %zu operation(s):\n", n);
                for (i = 0; i < n; i++)
                        if (ops[i].kind == SVMD_OP_ALLOCATE)
                                printf("  %zu allocate: range %" PRIu64 " at 0x%" PRIx64 "\n", i, results[i].id,
                                       results[i].va);
                        else
                                printf("  %zu %s: range %" PRIu64 "\n", i, commit_op_names[ops[i].kind],
                                       results[i].id);
        }
        for (i = 0; i < n; i++)
                commit_args_done(&args[i]);
        return r;
}

/* ---- free, map, unmap ---- */

static int read_id_arg(const char *verb, int argc, char *argv[], int index, uint64_t *ret) {
        if (index >= argc)
                return usage_error(verb, "missing range ID");
        if (parse_id(argv[index], ret) < 0)
                return usage_error(verb, "invalid range ID '%s'", argv[index]);
        return 0;
}

static int verb_free(int argc, char *argv[]) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_range_info info;
        bool detached;
        uint64_t id = 0;
        int r;

        r = read_id_arg("free", argc, argv, 1, &id);
        if (r < 0)
                return r;
        if (argc > 2)
                return usage_error("free", "unexpected argument '%s'", argv[2]);
        r = svmd_free(client, id, &e);
        if (r < 0)
                return report(r, &e, "free failed");
        /* Free succeeds too where holders keep the range: then it lives on, detached from its owner. */
        r = svmd_get_range(client, id, &info, NULL, NULL, &e);
        if (r < 0)
                svmd_error_free(&e); /* gone: freed */
        detached = r >= 0 && info.detached;
        if (arg_json)
                return json_print(json_pack("{s:I,s:b,s:b,s:I}", "id", (json_int_t) id, "freed", !detached,
                                            "detached", detached, "holders",
                                            (json_int_t) (detached ? info.n_holders : 0)));
        if (detached)
                printf("Range %" PRIu64 " is detached: %" PRIu32 " holder(s) keep it, and svmd frees it when the "
                       "last one releases it (see svmctl show %" PRIu64 ").\n", id, info.n_holders, id);
        else
                printf("Freed range %" PRIu64 ".\n", id);
        return 0;
}

static int verb_map_unmap(int argc, char *argv[], bool map) {
        static const struct option options[] = {
                { "dry-run",    no_argument,       NULL, OPT_DRY_RUN },
                { "request-id", required_argument, NULL, OPT_REQUEST_ID },
                {}
        };
        const char *verb = map ? "map" : "unmap";
        _cleanup_free_ uint32_t *gpus = NULL;
        _cleanup_free_ char *list = NULL;
        svmd_change_options o = {};
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t id = 0;
        size_t n;
        int c, r;

        while ((c = verb_getopt(argc, argv, map ? options : (const struct option[]) { {} })) >= 0)
                if (change_options_parse(&o, c, optarg) == 0)
                        return usage_error(verb, "unknown option '%s'", argv[optind - 1]);
        r = read_id_arg(verb, argc, argv, optind, &id);
        if (r < 0)
                return r;
        if (optind + 1 >= argc)
                return usage_error(verb, "missing GPU list (G,G…)");
        if (optind + 2 < argc)
                return usage_error(verb, "unexpected argument '%s'", argv[optind + 2]);
        if (parse_gpu_list(argv[optind + 1], &gpus, &n) < 0)
                return usage_error(verb, "invalid GPU list '%s'", argv[optind + 1]);

        r = map ? svmd_map(client, id, gpus, n, &o, &e) : svmd_unmap(client, id, gpus, n, &e);
        if (r < 0)
                return report(r, &e, map ? "map failed" : "unmap failed");
        if (arg_json)
                return json_print(json_pack("{s:I,s:o,s:b}", "id", (json_int_t) id, map ? "mapped" : "unmapped",
                                            json_u32_array(gpus, n), "dry_run", o.dry_run));
        list = format_gpu_list(gpus, n);
        if (o.dry_run)
                printf("Dry run: range %" PRIu64 " can be mapped to GPU %s.\n", id, strna(list));
        else
                printf("%s range %" PRIu64 " %s GPU %s.\n", map ? "Mapped" : "Unmapped", id, map ? "to" : "from",
                       strna(list));
        return 0;
}

static int verb_map(int argc, char *argv[]) {
        return verb_map_unmap(argc, argv, true);
}

static int verb_unmap(int argc, char *argv[]) {
        return verb_map_unmap(argc, argv, false);
}

/* ---- export, share, attach ---- */

static const char *fd_kind(int fd) {
        char path[64], target[256];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return "fd";
        target[n] = 0;
        if (strstr(target, "memfd:"))
                return "memfd";
        return "dma-buf";
}

static int verb_export(int argc, char *argv[]) {
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t id = 0, va, size;
        const char *kind;
        int r, fd;

        r = read_id_arg("export", argc, argv, 1, &id);
        if (r < 0)
                return r;
        if (argc > 2)
                return usage_error("export", "unexpected argument '%s'", argv[2]);
        r = svmd_export(client, id, &fd, &va, &size, &e);
        if (r < 0)
                return report(r, &e, "export failed");
        kind = fd_kind(fd);
        safe_close(fd);
        if (arg_json)
                return json_print(json_pack("{s:I,s:I,s:o,s:I,s:s}", "id", (json_int_t) id, "va", (json_int_t) va,
                                            "va_hex", json_hex(va), "size", (json_int_t) size, "fd_kind", kind));
        printf("Range %" PRIu64 " exports as a %s: %s at 0x%" PRIx64 ".\n", id, kind, FORMAT_BYTES(size), va);
        return 0;
}

static int verb_share(int argc, char *argv[]) {
        static const struct option options[] = {
                { "uid",       required_argument, NULL, OPT_UID },
                { "unit",      required_argument, NULL, OPT_UNIT },
                { "cgroup",    required_argument, NULL, OPT_CGROUP },
                { "read-only", no_argument,       NULL, OPT_READ_ONLY },
                { "expires",   required_argument, NULL, OPT_EXPIRES },
                {}
        };
        _cleanup_free_ char *token = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_grant g = {};
        uint64_t id = 0;
        int c, r;

        while ((c = verb_getopt(argc, argv, options)) >= 0)
                switch (c) {
                case OPT_UID:
                        if (parse_u32(optarg, &g.uid) < 0)
                                return usage_error("share", "invalid uid '%s'", optarg);
                        g.has_uid = true;
                        break;
                case OPT_UNIT:
                        g.unit = optarg;
                        break;
                case OPT_CGROUP:
                        g.cgroup = optarg;
                        break;
                case OPT_READ_ONLY:
                        g.read_only = true;
                        break;
                case OPT_EXPIRES: {
                        struct timespec ts;

                        clock_gettime(CLOCK_REALTIME, &ts);
                        if (parse_expiry(optarg, (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000,
                                         &g.expires_usec) < 0)
                                return usage_error("share",
                                                   "invalid expiry '%s' (a duration like 10m, 1h or 2d, an ISO 8601 "
                                                   "time like 2026-12-06T10:00:00Z, or @SECONDS)", optarg);
                        break;
                }
                default:
                        return usage_error("share", "unknown option \'%s\'", argv[optind - 1]);
                }
        r = read_id_arg("share", argc, argv, optind, &id);
        if (r < 0)
                return r;
        if (optind + 1 < argc)
                return usage_error("share", "unexpected argument '%s'", argv[optind + 1]);
        r = svmd_share(client, id, &g, &token, &e);
        if (r < 0)
                return report(r, &e, "share failed");
        if (arg_json)
                return json_print(json_pack("{s:I,s:s}", "id", (json_int_t) id, "token", token));
        printf("%s\n", token);
        return 0;
}

static int verb_attach(int argc, char *argv[]) {
        static const struct option options[] = {
                { "hold", no_argument, NULL, OPT_HOLD },
                {}
        };
        svmd_error e = SVMD_ERROR_NULL;
        svmd_attachment a;
        const char *kind;
        bool hold = false;
        int c, r;

        while ((c = verb_getopt(argc, argv, options)) >= 0)
                switch (c) {
                case OPT_HOLD:
                        hold = true;
                        break;
                default:
                        return usage_error("attach", "unknown option '%s'", argv[optind - 1]);
                }
        if (optind >= argc)
                return usage_error("attach", "missing TOKEN");
        if (optind + 1 < argc)
                return usage_error("attach", "unexpected argument '%s'", argv[optind + 1]);
        r = svmd_attach(client, argv[optind], &a, &e);
        if (r < 0)
                return report(r, &e, "attach failed");
        kind = fd_kind(a.fd);
        safe_close(a.fd);
        if (arg_json) {
                r = json_print(json_pack("{s:I,s:I,s:o,s:I,s:s,s:b}", "id", (json_int_t) a.id, "va",
                                         (json_int_t) a.va, "va_hex", json_hex(a.va), "size", (json_int_t) a.size,
                                         "fd_kind", kind, "hold", hold));
                if (r < 0 || !hold)
                        return r;
                fflush(stdout);
                for (;;)
                        pause();
        }
        printf("Attached range %" PRIu64 ": %s at 0x%" PRIx64 " (%s)", a.id, FORMAT_BYTES(a.size), a.va, kind);
        if (hold) {
                printf(".\n");
                hold_until_terminated();
        }
        printf("; the reference ends when svmctl exits (--hold keeps it).\n");
        return 0;
}

/* A command that takes one range ID and calls fn on it: release, reuse. */
static int verb_on_id(int argc, char *argv[], int (*fn)(svmd_client *c, uint64_t id, svmd_error *e),
                      const char *json_key, const char *before, const char *after) {
        svmd_error e = SVMD_ERROR_NULL;
        char failed[32];
        uint64_t id = 0;
        int r;

        r = read_id_arg(argv[0], argc, argv, 1, &id);
        if (r < 0)
                return r;
        if (argc > 2)
                return usage_error(argv[0], "unexpected argument '%s'", argv[2]);
        r = fn(client, id, &e);
        snprintf(failed, sizeof(failed), "%s failed", argv[0]);
        if (r < 0)
                return report(r, &e, failed);
        if (arg_json)
                return json_print(json_pack("{s:I,s:b}", "id", (json_int_t) id, json_key, 1));
        printf("%s%" PRIu64 "%s\n", before, id, after);
        return 0;
}

static int verb_release(int argc, char *argv[]) {
        return verb_on_id(argc, argv, svmd_release, "released", "Released range ", ".");
}

static int verb_reuse(int argc, char *argv[]) {
        return verb_on_id(argc, argv, svmd_reuse, "reused", "Range ",
                          " is active again; its contents are undefined until written.");
}

static int verb_tokens(int argc, char *argv[]) {
        _cleanup_free_ svmd_token_info *tokens = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        Table *t = NULL;
        uint64_t id = 0;
        size_t n = 0;
        int r;

        r = read_id_arg("tokens", argc, argv, 1, &id);
        if (r < 0)
                return r;
        if (argc > 2)
                return usage_error("tokens", "unexpected argument '%s'", argv[2]);
        r = svmd_list_tokens(client, id, &tokens, &n, &e);
        if (r < 0)
                return report(r, &e, "listing tokens failed");
        if (arg_json) {
                json_t *a = json_array();

                for (size_t i = 0; i < n; i++) {
                        json_t *o = json_pack("{s:s,s:b,s:I}", "token", tokens[i].token, "read_only",
                                              tokens[i].read_only, "expires_usec", (json_int_t) tokens[i].expires_usec);

                        if (o && tokens[i].has_uid)
                                json_object_set_new(o, "uid", json_integer(tokens[i].uid));
                        if (o && tokens[i].unit[0])
                                json_object_set_new(o, "unit", json_string(tokens[i].unit));
                        if (o && tokens[i].cgroup[0])
                                json_object_set_new(o, "cgroup", json_string(tokens[i].cgroup));
                        json_array_append_new(a, o);
                }
                return json_print(json_pack("{s:I,s:o}", "id", (json_int_t) id, "tokens", a));
        }

        r = table_new(&t, (const char *const[]) { "TOKEN", "UID", "UNIT", "CGROUP", "ACCESS", ">EXPIRES", NULL });
        if (r < 0)
                return r;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                char uid[16] = "any", expires[64] = "never";

                if (tokens[i].has_uid)
                        snprintf(uid, sizeof(uid), "%" PRIu32, tokens[i].uid);
                if (tokens[i].expires_usec > 0)
                        format_time(expires, sizeof(expires), tokens[i].expires_usec);
                r = table_add_row(t, (const char *const[]) { tokens[i].token, uid,
                                                             tokens[i].unit[0] ? tokens[i].unit : "any",
                                                             tokens[i].cgroup[0] ? tokens[i].cgroup : "any",
                                                             tokens[i].read_only ? "read-only" : "read-write",
                                                             expires });
        }
        if (r >= 0)
                r = table_print(t, "No share tokens.");
        table_free(t);
        return r;
}

/* --wait: RevokeFinished for the range this svmctl revoked. */
typedef struct RevokeWait {
        uint64_t id;
        bool done;
        uint32_t acknowledged, forced;
} RevokeWait;

static void on_revoke_signal(svmd_client *c, const svmd_signal *s, void *userdata) {
        RevokeWait *w = userdata;

        if (s->kind == SVMD_SIGNAL_REVOKE_FINISHED && s->id == w->id) {
                w->done = true;
                w->acknowledged = s->acknowledged;
                w->forced = s->forced;
        }
}

static int wait_revoked(RevokeWait *w) {
        while (!w->done) {
                int r = svmd_client_process(client);

                if (r < 0) {
                        fprintf(stderr, "svmctl: the connection to svmd broke: %s\n", strerror(-r));
                        return -ECONNRESET;
                }
                if (r == 0 && !w->done) {
                        r = svmd_client_wait(client, UINT64_MAX);
                        if (r < 0) {
                                fprintf(stderr, "svmctl: waiting for the revocation failed: %s\n", strerror(-r));
                                return r;
                        }
                }
        }
        return 0;
}

/* revoke --range ID [--uid UID] --deadline WHEN [--wait]: ask the holders first (docs/svmctl.1). */
static int revoke_with_deadline(uint64_t id, bool has_uid, uint32_t uid, uint64_t deadline_usec, bool wait) {
        svmd_error e = SVMD_ERROR_NULL;
        RevokeWait w = { .id = id };
        struct timespec ts;
        unsigned holders = 0;
        uint64_t now;
        char when[64];
        int r;

        clock_gettime(CLOCK_REALTIME, &ts);
        now = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        if (deadline_usec <= now)
                return usage_error("revoke", "the deadline lies in the past");
        if (wait) {
                /* Before Revoke: a RevokeFinished that comes at once is not missed. */
                r = svmd_client_watch(client, on_revoke_signal, &w, &e);
                if (r < 0)
                        return report(r, &e, "watching svmd's signals failed");
        }
        r = svmd_revoke(client, id, has_uid ? uid : SVMD_REVOKE_ALL_HOLDERS, deadline_usec - now, &holders,
                        &deadline_usec, &e);
        if (r < 0)
                return report(r, &e, "revoke failed");
        if (wait && holders > 0) {
                r = wait_revoked(&w);
                if (r < 0)
                        return r;
        }
        if (arg_json)
                return json_print(json_pack("{s:I,s:o,s:I,s:I,s:o,s:o}", "id", (json_int_t) id, "uid",
                                            has_uid ? json_integer((json_int_t) uid) : json_null(), "holders",
                                            (json_int_t) holders, "deadline_usec", (json_int_t) deadline_usec,
                                            "acknowledged", w.done ? json_integer(w.acknowledged) : json_null(),
                                            "forced", w.done ? json_integer(w.forced) : json_null()));
        if (holders == 0)
                printf("Range %" PRIu64 ": no hold left to wait for.\n", id);
        else if (w.done)
                printf("Range %" PRIu64 ": %" PRIu32 " hold(s) released in time, %" PRIu32 " taken at the deadline.\n",
                       id, w.acknowledged, w.forced);
        else
                printf("Asked %u holder connection(s) of range %" PRIu64 " to release it by %s; svmd takes what is "
                       "left then.\n", holders, id, format_time(when, sizeof(when), deadline_usec));
        return 0;
}

static int verb_revoke(int argc, char *argv[]) {
        static const struct option options[] = {
                { "range",    required_argument, NULL, OPT_RANGE },
                { "uid",      required_argument, NULL, OPT_UID },
                { "deadline", required_argument, NULL, OPT_DEADLINE },
                { "wait",     no_argument,       NULL, OPT_WAIT },
                {}
        };
        svmd_error e = SVMD_ERROR_NULL;
        bool has_range = false, has_uid = false, has_deadline = false, wait = false;
        uint64_t id = 0, deadline_usec = 0;
        uint32_t uid = 0;
        int c, r;

        while ((c = verb_getopt(argc, argv, options)) >= 0)
                switch (c) {
                case OPT_RANGE:
                        if (parse_id(optarg, &id) < 0)
                                return usage_error("revoke", "invalid range id '%s'", optarg);
                        has_range = true;
                        break;
                case OPT_UID:
                        if (parse_u32(optarg, &uid) < 0)
                                return usage_error("revoke", "invalid uid '%s'", optarg);
                        has_uid = true;
                        break;
                case OPT_DEADLINE: {
                        struct timespec ts;

                        clock_gettime(CLOCK_REALTIME, &ts);
                        if (parse_expiry(optarg, (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000,
                                         &deadline_usec) < 0)
                                return usage_error("revoke",
                                                   "invalid deadline '%s' (a duration like 30s, 10m or 1h, an ISO "
                                                   "8601 time like 2026-12-06T10:00:00Z, or @SECONDS)", optarg);
                        has_deadline = true;
                        break;
                }
                case OPT_WAIT:
                        wait = true;
                        break;
                default:
                        return usage_error("revoke", "unknown option \'%s\'", argv[optind - 1]);
                }

        if (wait && !has_deadline)
                return usage_error("revoke", "--wait needs --deadline");
        if (has_deadline) {
                if (!has_range)
                        return usage_error("revoke", "--deadline needs --range (and --uid for one holder)");
                if (optind < argc)
                        return usage_error("revoke", "unexpected argument '%s'", argv[optind]);
                return revoke_with_deadline(id, has_uid, uid, deadline_usec, wait);
        }

        if (has_range || has_uid) {
                if (!has_range || !has_uid)
                        return usage_error("revoke", "revoking holds at once needs both --range and --uid "
                                                     "(--deadline revokes every hold)");
                if (optind < argc)
                        return usage_error("revoke", "unexpected argument '%s'", argv[optind]);
                r = svmd_revoke_hold(client, id, uid, &e);
                if (r < 0)
                        return report(r, &e, "revoke failed");
                if (arg_json)
                        return json_print(json_pack("{s:I,s:I}", "id", (json_int_t) id, "uid", (json_int_t) uid));
                printf("Uid %" PRIu32 " no longer holds range %" PRIu64 ".\n", uid, id);
                return 0;
        }

        if (optind >= argc)
                return usage_error("revoke", "missing TOKEN (or --range ID --uid UID, or --range ID --deadline WHEN)");
        if (optind + 1 < argc)
                return usage_error("revoke", "unexpected argument '%s'", argv[optind + 1]);
        r = svmd_revoke_token(client, argv[optind], &e);
        if (r < 0)
                return report(r, &e, "revoke failed");
        if (arg_json)
                return json_print(json_pack("{s:s}", "token", argv[optind]));
        printf("Token revoked; attaching with it fails from now on.\n");
        return 0;
}

/* ---- usage, capacity ---- */

static json_t *json_usage_object(const svmd_usage *u) {
        json_t *per_gpu = json_array();

        for (size_t i = 0; i < u->n_vram_per_gpu; i++)
                json_array_append_new(per_gpu, json_pack("{s:I,s:I}", "gpu_id", (json_int_t) u->vram_per_gpu[i].gpu_id,
                                                         "bytes", (json_int_t) u->vram_per_gpu[i].bytes));
        return json_pack("{s:s,s:I,s:I,s:I,s:o,s:{s:o,s:o,s:o,s:o}}", "scope", u->scope, "ranges",
                         (json_int_t) u->ranges, "vram", (json_int_t) u->vram, "host", (json_int_t) u->host,
                         "vram_per_gpu", per_gpu, "quota", "ranges", json_limit(u->quota_ranges), "vram",
                         json_limit(u->quota_vram), "vram_per_gpu", json_limit(u->quota_vram_per_gpu), "host",
                         json_limit(u->quota_host));
}

static const char *limit_str(char *buf, size_t size, uint64_t v, bool bytes) {
        if (v == SVMD_NO_LIMIT)
                return "no limit";
        if (bytes)
                return format_bytes(buf, size, v);
        snprintf(buf, size, "%" PRIu64, v);
        return buf;
}

static void print_usage(const svmd_usage *u) {
        char b[32];

        printf("       Scope: %s\n", u->scope[0] ? u->scope : "(caller)");
        printf("      Ranges: %" PRIu64 " (limit: %s)\n", u->ranges, limit_str(b, sizeof(b), u->quota_ranges, false));
        printf("        VRAM: %s (limit: %s)\n", FORMAT_BYTES(u->vram), limit_str(b, sizeof(b), u->quota_vram, true));
        printf("        Host: %s (limit: %s)\n", FORMAT_BYTES(u->host), limit_str(b, sizeof(b), u->quota_host, true));
        for (size_t i = 0; i < u->n_vram_per_gpu; i++)
                printf("  VRAM 0x%-4x %s (limit: %s)\n", u->vram_per_gpu[i].gpu_id,
                       FORMAT_BYTES(u->vram_per_gpu[i].bytes),
                       limit_str(b, sizeof(b), u->quota_vram_per_gpu, true));
}

static int verb_usage(int argc, char *argv[]) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_usage u;
        int r;

        if (argc > 2)
                return usage_error("usage", "unexpected argument '%s'", argv[2]);
        r = svmd_get_usage(client, argc > 1 ? argv[1] : "", &u, &e);
        if (r < 0)
                return report(r, &e, "reading usage failed");
        if (arg_json)
                return json_print(json_usage_object(&u));
        print_usage(&u);
        return 0;
}

/* ---- metrics ---- */

/* What the collector reads when svmd cannot be asked: svmd_up 0, so an alert can fire. */
static char *metrics_down_text(const char *format) {
        char *text;

        if (asprintf(&text, "# HELP svmd_up 1: svmd answered (svmctl writes 0 when it cannot reach svmd).\n"
                            "# TYPE svmd_up gauge\nsvmd_up 0\n%s",
                     format && streq(format, "prometheus") ? "" : "# EOF\n") < 0)
                return NULL;
        return text;
}

/*
 * Replace path with text atomically: a temporary file in the same directory renamed over it,
 * so a reader of the directory (node_exporter's textfile collector, a container runtime's CDI
 * specs) sees the old file or the new one, never a part.
 */
static int write_atomic(const char *path, const char *text) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        const char *slash = strrchr(path, '/');
        size_t len = strlen(text);
        int r = 0;

        /* A name node_exporter's textfile collector skips (it reads *.prom only). */
        if (asprintf(&tmp, "%.*s.%s.XXXXXX", slash ? (int) (slash - path + 1) : 0, path, slash ? slash + 1 : path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, 0644) < 0)
                r = -errno;
        for (size_t o = 0; r == 0 && o < len;) {
                ssize_t n = write(fd, text + o, len - o);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        r = -errno;
                else
                        o += (size_t) n;
        }
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);
        return r;
}

static int verb_metrics(int argc, char *argv[]) {
        static const struct option options[] = {
                { "format", required_argument, NULL, OPT_FORMAT },
                { "output", required_argument, NULL, OPT_OUTPUT },
                {}
        };
        _cleanup_free_ char *text = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        const char *format = NULL, *output = NULL;
        int c, r, k;

        while ((c = verb_getopt(argc, argv, options)) >= 0)
                switch (c) {
                case OPT_FORMAT:
                        if (!streq(optarg, "openmetrics") && !streq(optarg, "prometheus"))
                                return usage_error("metrics", "invalid format '%s' (openmetrics or prometheus)",
                                                   optarg);
                        format = optarg;
                        break;
                case OPT_OUTPUT:
                        if (!*optarg)
                                return usage_error("metrics", "--output needs a file name");
                        output = optarg;
                        break;
                default:
                        return usage_error("metrics", "unknown option '%s'", argv[optind - 1]);
                }
        if (optind < argc)
                return usage_error("metrics", "unexpected argument '%s'", argv[optind]);
        if (arg_json)
                return usage_error("metrics", "--json is not for metrics: they are text for Prometheus");

        r = connect_client();
        if (r >= 0) {
                r = svmd_get_metrics(client, format, &text, &e);
                if (r < 0)
                        (void) report(r, &e, "reading metrics failed");
        }
        if (!output) {
                if (r < 0)
                        return r;
                fputs(text, stdout);
                return 0;
        }

        /* The collector's file says svmd is down rather than keep the last good numbers. */
        if (r < 0) {
                text = metrics_down_text(format);
                if (!text)
                        return -ENOMEM;
        }
        k = write_atomic(output, text);
        if (k < 0) {
                fprintf(stderr, "svmctl: writing %s failed: %s\n", output, strerror(-k));
                return r < 0 ? r : k;
        }
        return r;
}

static int verb_capacity(int argc, char *argv[]) {
        _cleanup_free_ svmd_range *ranges = NULL;
        _cleanup_free_ svmd_gpu *gpus = NULL;
        _cleanup_free_ uint32_t *uids = NULL;
        svmd_range_filter f = {};
        svmd_error e = SVMD_ERROR_NULL;
        json_t *jg, *js;
        size_t n_gpus, n_ranges, n_uids = 0;
        svmd_usage own;
        int r;

        if (argc > 1)
                return usage_error("capacity", "unexpected argument '%s'", argv[1]);
        r = svmd_list_gpus(client, &gpus, &n_gpus, &e);
        if (r < 0)
                return report(r, &e, "listing GPUs failed");
        r = svmd_get_usage(client, "", &own, &e);
        if (r < 0)
                return report(r, &e, "reading usage failed");
        /* Everyone's ranges where the caller may see them, else the caller's own. */
        f.all = true;
        r = list_all_ranges(&f, &ranges, &n_ranges, true);
        if (r == -EACCES || r == -EPERM) {
                f.all = false;
                r = list_all_ranges(&f, &ranges, &n_ranges, false);
        }
        if (r < 0)
                return r;

        /* The scopes with memory on the node: the caller, and every owner the caller can see. */
        uids = calloc(n_ranges ?: 1, sizeof(uint32_t));
        if (!uids)
                return -ENOMEM;
        for (size_t i = 0; i < n_ranges; i++) {
                bool seen = false;

                for (size_t j = 0; j < n_uids; j++)
                        seen = seen || uids[j] == ranges[i].owner_uid;
                if (!seen)
                        uids[n_uids++] = ranges[i].owner_uid;
        }

        jg = json_array();
        js = json_array();
        json_array_append_new(js, json_usage_object(&own));
        for (size_t i = 0; i < n_gpus; i++)
                json_array_append_new(jg, json_gpu_object(&gpus[i]));
        for (size_t i = 0; i < n_uids; i++) {
                char scope[32];
                svmd_usage u;

                snprintf(scope, sizeof(scope), "uid:%" PRIu32, uids[i]);
                if (streq(scope, own.scope))
                        continue;
                r = svmd_get_usage(client, scope, &u, &e);
                if (r == -EACCES || r == -EPERM) {
                        svmd_error_free(&e); /* not ours to see */
                        continue;
                }
                if (r < 0) {
                        json_decref(jg);
                        json_decref(js);
                        return report(r, &e, "reading usage failed");
                }
                json_array_append_new(js, json_usage_object(&u));
        }

        if (arg_json)
                return json_print(json_pack("{s:o,s:o}", "gpus", jg, "scopes", js));

        {
                Table *t = NULL;
                size_t idx;
                json_t *v;

                r = table_new(&t, (const char *const[]) { "GPU", "NAME", "TARGET", ">TOTAL", ">USED", ">FREE", NULL });
                for (size_t i = 0; r >= 0 && i < n_gpus; i++) {
                        char id[16];

                        snprintf(id, sizeof(id), "0x%x", gpus[i].gpu_id);
                        r = table_add_row(t, (const char *const[]) { id, gpus[i].name, gpus[i].target,
                                                                     FORMAT_BYTES(gpus[i].vram_total),
                                                                     FORMAT_BYTES(gpus[i].vram_used),
                                                                     FORMAT_BYTES(gpus[i].vram_free) });
                }
                if (r >= 0)
                        r = table_print(t, "No GPUs.");
                table_free(t);
                t = NULL;

                if (r >= 0)
                        r = table_new(&t, (const char *const[]) { "SCOPE", ">RANGES", ">VRAM", ">HOST", "QUOTA VRAM",
                                                                  "QUOTA HOST", NULL });
                json_array_foreach(js, idx, v) {
                        char qv[32], qh[32], n[24], vram[FORMAT_BYTES_MAX],
                                host[FORMAT_BYTES_MAX];
                        json_t *q = json_object_get(v, "quota");

                        if (r < 0)
                                break;
                        snprintf(n, sizeof(n), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(v, "ranges")));
                        format_bytes(vram, sizeof(vram), (uint64_t) json_integer_value(json_object_get(v, "vram")));
                        format_bytes(host, sizeof(host), (uint64_t) json_integer_value(json_object_get(v, "host")));
                        limit_str(qv, sizeof(qv), json_is_null(json_object_get(q, "vram")) ? SVMD_NO_LIMIT
                                  : (uint64_t) json_integer_value(json_object_get(q, "vram")), true);
                        limit_str(qh, sizeof(qh), json_is_null(json_object_get(q, "host")) ? SVMD_NO_LIMIT
                                  : (uint64_t) json_integer_value(json_object_get(q, "host")), true);
                        r = table_add_row(t, (const char *const[]) {
                                json_string_value(json_object_get(v, "scope")), n, vram, host,
                                json_is_null(json_object_get(q, "vram")) ? "no limit" : qv,
                                json_is_null(json_object_get(q, "host")) ? "no limit" : qh });
                }
                if (r >= 0) {
                        putchar('\n');
                        r = table_print(t, NULL);
                }
                table_free(t);
        }
        json_decref(jg);
        json_decref(js);
        return r;
}

/* ---- reload ---- */

static int verb_reload(int argc, char *argv[]) {
        svmd_error e = SVMD_ERROR_NULL;
        int r;

        if (argc > 1)
                return usage_error("reload", "unexpected argument '%s'", argv[1]);
        r = svmd_reload(client, &e);
        if (r < 0)
                return report(r, &e, "reload failed");
        if (arg_json)
                return json_print(json_pack("{s:b}", "reloaded", 1));
        printf("svmd reloaded its configuration.\n");
        return 0;
}

/* ---- monitor ---- */

static volatile sig_atomic_t stop_monitor;
static uint64_t monitor_left;   /* 0: forever */

static void on_stop(int sig) {
        stop_monitor = 1;
}

static void on_signal(svmd_client *c, const svmd_signal *s, void *userdata) {
        json_t *v;

        if (arg_json) {
                switch (s->kind) {
                case SVMD_SIGNAL_RANGE_CREATED:
                case SVMD_SIGNAL_RANGE_FREED:
                        v = json_pack("{s:s,s:I}", "signal", s->name, "id", (json_int_t) s->id);
                        break;
                case SVMD_SIGNAL_QUOTA_EXCEEDED:
                        v = json_pack("{s:s,s:s,s:s}", "signal", s->name, "scope", s->scope, "resource", s->resource);
                        break;
                case SVMD_SIGNAL_GPU_LOST:
                        v = json_pack("{s:s,s:I,s:o}", "signal", s->name, "gpu_id", (json_int_t) s->gpu_id,
                                      "gpu_id_hex", json_hex(s->gpu_id));
                        break;
                case SVMD_SIGNAL_CONTENTS_LOST:
                        v = json_pack("{s:s,s:I,s:I,s:o,s:s}", "signal", s->name, "id", (json_int_t) s->id,
                                      "gpu_id", (json_int_t) s->gpu_id, "gpu_id_hex", json_hex(s->gpu_id),
                                      "reason", s->reason);
                        break;
                case SVMD_SIGNAL_VM_FAULT:
                        v = json_pack("{s:s,s:I,s:o,s:I,s:s}", "signal", s->name, "gpu_id", (json_int_t) s->gpu_id,
                                      "gpu_id_hex", json_hex(s->gpu_id), "pid", (json_int_t) s->pid, "task", s->task);
                        break;
                case SVMD_SIGNAL_REVOKE_REQUESTED:
                        v = json_pack("{s:s,s:I,s:I,s:I}", "signal", s->name, "id", (json_int_t) s->id, "uid",
                                      (json_int_t) s->uid, "deadline_usec", (json_int_t) s->deadline_usec);
                        break;
                case SVMD_SIGNAL_REVOKE_FINISHED:
                        v = json_pack("{s:s,s:I,s:I,s:I}", "signal", s->name, "id", (json_int_t) s->id,
                                      "acknowledged", (json_int_t) s->acknowledged, "forced", (json_int_t) s->forced);
                        break;
                default:
                        return;
                }
                (void) json_print(v);
        } else
                switch (s->kind) {
                case SVMD_SIGNAL_RANGE_CREATED:
                        printf("%-14s range %" PRIu64 "\n", s->name, s->id);
                        break;
                case SVMD_SIGNAL_RANGE_FREED:
                        printf("%-14s range %" PRIu64 "\n", s->name, s->id);
                        break;
                case SVMD_SIGNAL_QUOTA_EXCEEDED:
                        printf("%-14s %s: %s\n", s->name, s->scope, s->resource);
                        break;
                case SVMD_SIGNAL_GPU_LOST:
                        printf("%-14s GPU 0x%x\n", s->name, s->gpu_id);
                        break;
                case SVMD_SIGNAL_CONTENTS_LOST:
                        printf("%-14s range %" PRIu64 " (GPU 0x%x): %s\n", s->name, s->id, s->gpu_id, s->reason);
                        break;
                case SVMD_SIGNAL_VM_FAULT:
                        printf("%-14s GPU 0x%x, process %" PRIu32 " (%s)\n", s->name, s->gpu_id, s->pid, s->task);
                        break;
                case SVMD_SIGNAL_REVOKE_REQUESTED: {
                        char when[64];

                        printf("%-14s range %" PRIu64 ": uid %" PRIu32 " to release it by %s\n", s->name, s->id,
                               s->uid, format_time(when, sizeof(when), s->deadline_usec));
                        break;
                }
                case SVMD_SIGNAL_REVOKE_FINISHED:
                        printf("%-14s range %" PRIu64 ": %" PRIu32 " released in time, %" PRIu32
                               " taken at the deadline\n", s->name, s->id, s->acknowledged, s->forced);
                        break;
                }
        fflush(stdout);
        if (monitor_left > 0 && --monitor_left == 0)
                stop_monitor = 1;
}

static int verb_monitor(int argc, char *argv[]) {
        static const struct option options[] = {
                { "count", required_argument, NULL, OPT_COUNT },
                {}
        };
        struct sigaction sa = { .sa_handler = on_stop };
        svmd_error e = SVMD_ERROR_NULL;
        int c, r;

        while ((c = verb_getopt(argc, argv, options)) >= 0)
                switch (c) {
                case OPT_COUNT:
                        if (parse_id(optarg, &monitor_left) < 0 || monitor_left == 0)
                                return usage_error("monitor", "invalid count '%s'", optarg);
                        break;
                default:
                        return usage_error("monitor", "unknown option \'%s\'", argv[optind - 1]);
                }
        if (optind < argc)
                return usage_error("monitor", "unexpected argument '%s'", argv[optind]);

        /* No SA_RESTART: poll() returns on SIGINT/SIGTERM and the loop ends cleanly. */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);

        r = svmd_client_watch(client, on_signal, NULL, &e);
        if (r < 0)
                return report(r, &e, "watching svmd's signals failed");
        fprintf(stderr, "Watching svmd's signals; Ctrl-C stops.\n");

        while (!stop_monitor) {
                r = svmd_client_process(client);
                if (r < 0) {
                        fprintf(stderr, "svmctl: the connection to svmd broke: %s\n", strerror(-r));
                        return -ECONNRESET;
                }
                if (r > 0 || stop_monitor)
                        continue;
                r = svmd_client_wait(client, UINT64_MAX);
                if (r < 0) {
                        fprintf(stderr, "svmctl: waiting for signals failed: %s\n", strerror(-r));
                        return r;
                }
        }
        return 0;
}

/* ---- cdi ---- */

static int verb_cdi(int argc, char *argv[]) {
        enum { OPT_RUNTIME_DIR = 0x200, OPT_REQUIRE_NODES, OPT_NO_NODES };
        static const struct option options[] = {
                { "output",               required_argument, NULL, OPT_OUTPUT },
                { "runtime-dir",          required_argument, NULL, OPT_RUNTIME_DIR },
                { "require-device-nodes", no_argument,       NULL, OPT_REQUIRE_NODES },
                { "no-device-nodes",      no_argument,       NULL, OPT_NO_NODES },
                {}
        };
        _cleanup_free_ svmd_gpu *gpus = NULL;
        _cleanup_free_ char *socket_path = NULL, *text = NULL;
        json_auto_t *spec = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        CdiOptions o = {};
        const char *output = NULL;
        struct stat st;
        size_t n;
        int c, r;

        while ((c = verb_getopt(argc, argv, options)) >= 0)
                switch (c) {
                case OPT_OUTPUT:
                        output = optarg;
                        break;
                case OPT_RUNTIME_DIR:
                        o.runtime_dir = optarg;
                        break;
                case OPT_REQUIRE_NODES:
                        o.require_device_nodes = true;
                        break;
                case OPT_NO_NODES:
                        o.no_device_nodes = true;
                        break;
                default:
                        return usage_error("cdi", "unknown option '%s'", argv[optind - 1]);
                }
        if (o.require_device_nodes && o.no_device_nodes)
                return usage_error("cdi", "--require-device-nodes and --no-device-nodes contradict each other");
        if (optind >= argc)
                return usage_error("cdi", "missing subcommand (generate)");
        if (!streq(argv[optind], "generate"))
                return usage_error("cdi", "unknown subcommand '%s'", argv[optind]);
        if (optind + 1 < argc)
                return usage_error("cdi", "unexpected argument '%s'", argv[optind + 1]);

        /* The directory libsvmd connects to, as svmd's own default is: $SVMD_RUNTIME_DIR, else /run/svmd. */
        if (!o.runtime_dir)
                o.runtime_dir = getenv("SVMD_RUNTIME_DIR") && *getenv("SVMD_RUNTIME_DIR") ? getenv("SVMD_RUNTIME_DIR")
                                                                                         : SVMD_RUNTIME_DIR;
        if (o.runtime_dir[0] != '/')
                return usage_error("cdi", "--runtime-dir must be an absolute path, not '%s'", o.runtime_dir);
        if (asprintf(&socket_path, "%s/io.socket", o.runtime_dir) < 0)
                return -ENOMEM;
        if (stat(socket_path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
                fprintf(stderr, "svmctl: %s is not svmd's socket; give svmd's runtime directory with --runtime-dir.\n",
                        socket_path);
                json_error(NULL, "svmd's socket was not found", EXIT_NOT_FOUND);
                return -ENOENT;
        }

        r = svmd_list_gpus(client, &gpus, &n, &e);
        if (r < 0)
                return report(r, &e, "listing GPUs failed");
        if (n == 0) {
                fprintf(stderr, "svmctl: svmd reports no GPUs; a CDI spec needs at least one device.\n");
                json_error(NULL, "svmd reports no GPUs", EXIT_NOT_FOUND);
                return -ENOENT;
        }
        r = cdi_spec_new(gpus, n, &o, &spec);
        if (r == -ENOENT)
                return r; /* said which node */
        if (r < 0) {
                fprintf(stderr, "svmctl: building the CDI spec failed: %s\n", strerror(-r));
                return r;
        }
        text = json_dumps(spec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        if (!output) {
                printf("%s\n", text);
                return 0;
        }
        free(TAKE_PTR(socket_path));
        if (asprintf(&socket_path, "%s\n", text) < 0)
                return -ENOMEM;
        r = write_atomic(output, socket_path);       /* the temporary name is hidden: runtimes skip it */
        if (r < 0) {
                fprintf(stderr, "svmctl: writing %s failed: %s\n", output, strerror(-r));
                return r;
        }
        return 0;
}

/* ---- main ---- */

static int verb_help(int argc, char *argv[]);

#define SVM_OPTIONS_HELP                                                                                    \
        "SVM OPTIONS (svm ranges only; their pages stay in system memory, see svmctl(1)):\n"                \
        "  --svm-preferred G|system|none    the preferred location, kept and shown\n"                        \
        "  --svm-prefetch G|system          where the kernel is to move its pages (it keeps them where they are)\n" \
        "  --svm-access G,G…                GPUs that may access it, over PCIe or XGMI\n"                    \
        "  --svm-access-in-place G,G…       GPUs that access it where it is, without migrating it\n"         \
        "  --svm-no-access G,G…             GPUs that may not access it\n"                                   \
        "  --svm-flags F,F…|none            the exact flag set: host-access, coherent, hive-local, gpu-ro,\n" \
        "                                   gpu-exec, gpu-read-mostly, gpu-always-mapped, ext-coherent\n"    \
        "  --svm-granularity N              the migration unit: 2^N pages (0–63)"

static const Verb verbs[] = {
        { "status", "status", "Show the daemon's version, GPU count, ranges, bytes allocated and XNACK mode.",
          verb_status, true },
        { "gpus", "gpus", "List the node's GPUs: id, node, target, name, VRAM total/used/free, render node.",
          verb_gpus, true },
        { "ranges", "ranges [--all] [--owner UID] [--gpu G] [--label L]",
          "List the caller's ranges (--all: everyone's, for administrators), optionally only those of an\n"
          "owner, on or mapped to a GPU, or with a label; and the SVM attributes of svm ranges.",
          verb_ranges, true },
        { "alloc",
          "alloc SIZE [--gpu G] [--domain vram|gtt|host|svm] [--map G,G…] [--label L] [--persistent] [--dry-run]\n"
          "                    [--hold] [--flags F,F…] [--alignment SIZE] [--request-id ID] [SVM OPTIONS]",
          "Allocate SIZE (4G, 512M, 0x1000) of vram (default; needs --gpu), gtt, host or svm memory,\n"
          "optionally mapped to GPUs at once. --dry-run validates only. Without --persistent the range is\n"
          "freed when svmctl disconnects. An svm range is host memory with SVM attributes (--gpu: its\n"
          "preferred GPU); mapping it gives GPUs access. Its pages stay in system memory.\n" SVM_OPTIONS_HELP, verb_alloc, true },
        { "set-attr", "set-attr ID [--dry-run] [--request-id ID] SVM OPTIONS…",
          "Change the SVM attributes of svm range ID, all or nothing (svmd sets the prior attributes back\n"
          "if the kernel fails half-way). GPUs in no access list keep their access.\n" SVM_OPTIONS_HELP,
          verb_set_attr, true },
        { "show", "show ID",
          "Show everything about range ID as Key=value lines: what ranges lists, and whether it is\n"
          "persistent or detached, its owner's unit, its holders, its share tokens and SVM attributes.",
          verb_show, true },
        { "free", "free ID",
          "Unmap range ID everywhere and free it. While others hold it, it is detached instead: it lives\n"
          "until the last holder releases it.", verb_free, true },
        { "commit", "commit [--dry-run] [--request-id ID] FILE|-",
          "Run the operations in FILE (- for stdin), all or none: a JSON array of {\"op\": \"allocate\",\n"
          "\"size\", \"gpu\", \"domain\", \"map\", \"flags\", \"label\", \"persistent\", \"svm\"}, {\"op\": \"map\" or\n"
          "\"unmap\", \"id\" or \"ref\", \"gpus\"}, {\"op\": \"free\", \"id\" or \"ref\"} and {\"op\":\n"
          "\"set-attributes\", \"id\" or \"ref\", \"svm\"}; \"ref\": N is the range the allocate at index N\n"
          "makes. Sizes and GPU ids as numbers or strings (\"4G\", \"0x3a1f\"). See svmctl(1).",
          verb_commit, true },
        { "map", "map [--dry-run] [--request-id ID] ID G,G…", "Map range ID to the GPUs, all or none.", verb_map,
          true },
        { "unmap", "unmap ID G,G…", "Unmap range ID from the GPUs.", verb_unmap, true },
        { "export", "export ID", "Export range ID and describe what the daemon hands out (dma-buf or memfd).",
          verb_export, true },
        { "share", "share ID [--uid U] [--unit GLOB] [--cgroup PREFIX] [--read-only] [--expires WHEN]",
          "Print a token another client can attach range ID with. WHEN: a duration (10m, 1h, 2d), an\n"
          "ISO 8601 time (2026-12-06T10:00:00Z) or @SECONDS; --cgroup: an absolute path prefix.", verb_share, true },
        { "attach", "attach TOKEN [--hold]",
          "Attach a shared range by token and describe it; --hold keeps the reference until svmctl is\n"
          "terminated.", verb_attach, true },
        { "reuse", "reuse ID",
          "End the contents-lost state of range ID after a GPU reset: you will overwrite it (owners).",
          verb_reuse, true },
        { "release", "release ID", "Drop the caller's reference to range ID, taken with attach.", verb_release,
          true },
        { "tokens", "tokens ID", "List the share tokens of range ID (its owner, administrators).", verb_tokens,
          true },
        { "revoke", "revoke TOKEN | revoke --range ID --uid UID | revoke --range ID [--uid UID] --deadline WHEN [--wait]",
          "Revoke a share token, or every hold uid UID has on range ID at once, or ask the holders to release "
          "by a deadline (the range's owner, administrators).",
          verb_revoke, true },
        { "usage", "usage [SCOPE]",
          "Show usage and quota of a scope: the caller's own, or uid:N, unit:NAME, cgroup:PATH.", verb_usage, true },
        { "capacity", "capacity",
          "Per GPU total/used/free VRAM, and usage and quota per scope: the node report for schedulers.",
          verb_capacity, true },
        { "reload", "reload", "Make svmd re-read its configuration (administrators).", verb_reload, true },
        { "metrics", "metrics [--format openmetrics|prometheus] [--output FILE]",
          "Print svmd's Prometheus metrics (OpenMetrics text; prometheus: the text format 0.0.4). --output\n"
          "replaces FILE atomically, e.g. for node_exporter's textfile collector; if svmd cannot be\n"
          "reached it writes svmd_up 0 there and fails. Other scopes' series: administrators only.",
          verb_metrics, false },
        { "monitor", "monitor [--count N]",
          "Print RangeCreated, RangeFreed, QuotaExceeded, GpuLost, ContentsLost and VmFault signals as they "
          "come; stop after N.",
          verb_monitor, true },
        { "cdi", "cdi generate [--output FILE] [--runtime-dir DIR] [--require-device-nodes|--no-device-nodes]",
          "Print (or write atomically to FILE) a CDI spec of the GPUs svmd serves: kind svmd.io/gpu, one\n"
          "device per GPU id and \"all\", giving containers svmd's socket, /dev/kfd and render nodes.\n"
          "Device nodes that are not character devices here are left out with a warning (an error with\n"
          "--require-device-nodes); --no-device-nodes gives the socket only. See docs/containers.md.",
          verb_cdi, true },
        { "help", "help [COMMAND]", "Show help.", verb_help, false },
};

static const Verb *find_verb(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name))
                        return &verbs[i];
        return NULL;
}

static void help_verb(const Verb *v) {
        printf("Usage: svmctl [OPTIONS] %s\n\n%s\n\n"
               "Options: --json  --address ADDR  --direct  (see svmctl --help)\n", v->synopsis, v->help);
}

static void help(void) {
        printf("Usage: svmctl [OPTIONS] COMMAND [ARGS…]\n\n"
               "Control svmd, the node's GPU memory manager.\n\n"
               "Options:\n"
               "  -h --help          Show this help (COMMAND --help: the command's)\n"
               "     --version       Show the version\n"
               "     --json          Print one JSON document (monitor: one per line)\n"
               "     --address ADDR  D-Bus address of the bus svmd is on (default: $SVMD_BUS_ADDRESS,\n"
               "                     else the system bus)\n"
               "     --direct        Talk to svmd's socket only ($SVMD_RUNTIME_DIR/io.socket), not the bus\n\n"
               "Commands:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                printf("  %s\n", verbs[i].synopsis);
        printf("\nSizes: 4096, 0x1000, 512M, 4G. GPU ids: decimal or 0x-hex. Exit codes: see svmctl(1).\n");
}

static int verb_help(int argc, char *argv[]) {
        const Verb *v;

        if (argc < 2) {
                help();
                return 0;
        }
        v = find_verb(argv[1]);
        if (!v)
                return usage_error(NULL, "unknown command '%s'", argv[1]);
        help_verb(v);
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_JSON, ARG_ADDRESS, ARG_DIRECT };
        static const struct option options[] = {
                { "help",    no_argument,       NULL, 'h' },
                { "version", no_argument,       NULL, ARG_VERSION },
                { "json",    no_argument,       NULL, ARG_JSON },
                { "address", required_argument, NULL, ARG_ADDRESS },
                { "direct",  no_argument,       NULL, ARG_DIRECT },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("svmctl %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case ARG_ADDRESS:
                        arg_address = optarg;
                        break;
                case ARG_DIRECT:
                        arg_direct = true;
                        break;
                default:
                        return usage_error(NULL, "unknown option '%s'", argv[optind - 1]);
                }
        return 1;
}

/* Global options may also follow the command: "svmctl gpus --json". */
static int pick_global_options(int *argc, char *argv[]) {
        int j = 1;

        for (int i = 1; i < *argc; i++) {
                if (streq(argv[i], "--")) {
                        while (i < *argc)
                                argv[j++] = argv[i++];
                        break;
                }
                if (streq(argv[i], "--json"))
                        arg_json = true;
                else if (streq(argv[i], "--direct"))
                        arg_direct = true;
                else if (streq(argv[i], "--address") && i + 1 < *argc)
                        arg_address = argv[++i];
                else if (strncmp(argv[i], "--address=", 10) == 0)
                        arg_address = argv[i] + 10;
                else
                        argv[j++] = argv[i];
        }
        *argc = j;
        argv[j] = NULL;
        return 0;
}

int main(int argc, char *argv[]) {
        const Verb *v;
        int r;

        /* Our own messages for bad options, naming the command to get help for. */
        opterr = 0;
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_OK;
        if (optind >= argc) {
                usage_error(NULL, "missing command");
                return EXIT_USAGE;
        }
        v = find_verb(argv[optind]);
        if (!v) {
                usage_error(NULL, "unknown command '%s'", argv[optind]);
                return EXIT_USAGE;
        }
        argc -= optind;
        argv += optind;
        pick_global_options(&argc, argv);
        if (want_help(argc, argv)) {
                help_verb(v);
                return EXIT_OK;
        }

        if (v->needs_client) {
                r = connect_client();
                if (r < 0)
                        return EXIT_UNREACHABLE;
        }
        optind = 0;
        r = v->run(argc, argv);
        svmd_client_free(client);
        if (fflush(stdout) != 0 && r >= 0)
                r = -EIO;
        return exit_code_from_errno(r);
}
