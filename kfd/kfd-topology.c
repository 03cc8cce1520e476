/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * KFD sysfs topology parser (kfd_topology.c: node_show, mem_show, iolink_show).
 *
 * Every property file is "<key> <decimal>\n" lines. Keys are looked up by name,
 * never by position: kernels insert keys (recommended_sdma_engine_id_mask in
 * 1.17) and append new ones. Values of the keys we use are strict decimal;
 * unknown keys are skipped without looking at their values. The walk is
 * bracketed by two reads of generation_id and repeated when a GPU was hot-
 * (un)plugged in between, as libhsakmt does.
 */

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kfd-topology.h"
#include "macro.h"

/* Bounds on what we accept from sysfs; real nodes are far below them. */
#define TOPOLOGY_MAX_NODES 1024U
#define TOPOLOGY_MAX_ENTRIES 1024U      /* mem_banks/io_links/p2p_links per node */
#define TOPOLOGY_FILE_MAX (64U * 1024U)
#define TOPOLOGY_MAX_ATTEMPTS 8U

/*
 * Unit tests include this file and define the hook to bump generation_id
 * between the two reads; it is empty otherwise.
 */
#ifndef KFD_TOPOLOGY_TEST_AFTER_WALK
#define KFD_TOPOLOGY_TEST_AFTER_WALK(root, attempt) do {} while (0)
#endif

typedef struct TopologyLink {
        uint32_t type;
        uint32_t node_from;
        uint32_t node_to;
        uint32_t flags;
        bool p2p;       /* from p2p_links (indirect) rather than io_links */
} TopologyLink;

typedef struct Parser {
        const char *root;
        char *error;
        KfdGpu *gpus;
        size_t n_gpus;
        size_t n_denied;
        TopologyLink *links;
        size_t n_links;
        size_t n_links_allocated;
} Parser;

typedef struct PropKey {
        const char *key;
        uint64_t max;
        bool required;
} PropKey;

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

_printf_(3, 4)
static int parser_error(Parser *p, int r, const char *format, ...) {
        va_list ap;

        assert(r < 0);

        /* The first error is the cause; later ones are consequences. */
        if (p->error)
                return r;

        va_start(ap, format);
        if (vasprintf(&p->error, format, ap) < 0)
                p->error = NULL;
        va_end(ap);
        return r;
}

static bool errno_is_denied(int r) {
        return r == -EPERM || r == -EACCES;
}

static void parser_reset(Parser *p) {
        p->gpus = mfree(p->gpus);
        p->n_gpus = p->n_denied = 0;
        p->links = mfree(p->links);
        p->n_links = p->n_links_allocated = 0;
}

static int parse_decimal(const char *s, size_t len, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0)
                return -EINVAL;

        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                if (__builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t) (s[i] - '0'), &v))
                        return -ERANGE;
        }
        if (v > max)
                return -ERANGE;

        *ret = v;
        return 0;
}

static int read_text(Parser *p, const char *path, bool missing_ok, char **ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t n = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                if (errno == ENOENT && missing_ok)
                        return -ENOENT;
                return parser_error(p, negative_errno(), "cannot open %s: %s", path, strerror(errno));
        }

        buf = malloc(TOPOLOGY_FILE_MAX + 1);
        if (!buf)
                return -ENOMEM;

        for (;;) {
                ssize_t k = read(fd, buf + n, TOPOLOGY_FILE_MAX + 1 - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return parser_error(p, negative_errno(), "cannot read %s: %s", path, strerror(errno));
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > TOPOLOGY_FILE_MAX)
                        return parser_error(p, -EFBIG, "%s is larger than %u bytes", path, TOPOLOGY_FILE_MAX);
        }

        if (memchr(buf, '\0', n))
                return parser_error(p, -EBADMSG, "%s contains a NUL byte", path);
        buf[n] = '\0';

        *ret = TAKE_PTR(buf);
        return 0;
}

/* A file holding exactly one decimal number and an optional trailing newline. */
static int read_number(Parser *p, const char *path, uint64_t max, uint64_t *ret) {
        _cleanup_free_ char *text = NULL;
        uint64_t v;
        size_t len;
        int r;

        r = read_text(p, path, false, &text);
        if (r < 0)
                return r;

        len = strlen(text);
        if (len > 0 && text[len - 1] == '\n')
                len--;
        r = parse_decimal(text, len, max, &v);
        if (r < 0)
                return parser_error(p, r, "%s: expected a decimal number up to %" PRIu64 ", got \"%.*s\"",
                                    path, max, (int) MIN(len, 32U), text);

        *ret = v;
        return 0;
}

/*
 * Parse "<key> <value>" lines into values[i] for the keys in table. A known key
 * appearing twice is an error (the file is not what we think it is).
 */
static int parse_properties(Parser *p, const char *path, const char *text,
                            const PropKey *table, size_t n_table, uint64_t *values, bool *seen) {

        for (size_t i = 0; i < n_table; i++) {
                values[i] = 0;
                seen[i] = false;
        }

        for (const char *line = text; *line; ) {
                const char *eol = strchrnul(line, '\n');
                const char *sp = memchr(line, ' ', (size_t) (eol - line));

                if (sp && sp > line) {
                        size_t klen = (size_t) (sp - line);

                        for (size_t i = 0; i < n_table; i++) {
                                int r;

                                if (strlen(table[i].key) != klen || memcmp(table[i].key, line, klen) != 0)
                                        continue;

                                if (seen[i])
                                        return parser_error(p, -EBADMSG, "%s: key %s appears twice",
                                                            path, table[i].key);

                                r = parse_decimal(sp + 1, (size_t) (eol - sp - 1), table[i].max, &values[i]);
                                if (r < 0)
                                        return parser_error(p, -EBADMSG,
                                                            "%s: value of %s is not a decimal number up to %" PRIu64 ": \"%.*s\"",
                                                            path, table[i].key, table[i].max,
                                                            (int) MIN((size_t) (eol - sp - 1), 32U), sp + 1);
                                seen[i] = true;
                                break;
                        }
                }

                line = *eol ? eol + 1 : eol;
        }

        for (size_t i = 0; i < n_table; i++)
                if (table[i].required && !seen[i])
                        return parser_error(p, -EBADMSG, "%s: key %s is missing", path, table[i].key);

        return 0;
}

static int cmp_unsigned(const void *a, const void *b) {
        unsigned x = *(const unsigned *) a, y = *(const unsigned *) b;
        return x < y ? -1 : x > y;
}

/* The numeric entries of a directory, sorted. A missing directory is empty if missing_ok. */
static int list_numeric(Parser *p, const char *path, unsigned max, bool missing_ok,
                        unsigned **ret, size_t *ret_n) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_free_ unsigned *list = NULL;
        _cleanup_close_ int fd = -EBADF;
        size_t n = 0;

        /* open() + fdopendir(): the directory is opened by the same call as every file. */
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT && missing_ok) {
                        *ret = NULL;
                        *ret_n = 0;
                        return 0;
                }
                return parser_error(p, negative_errno(), "cannot open directory %s: %s", path, strerror(errno));
        }
        d = fdopendir(fd);
        if (!d)
                return parser_error(p, negative_errno(), "cannot read directory %s: %s", path, strerror(errno));
        TAKE_FD(fd);

        list = new0(unsigned, max);
        if (!list)
                return -ENOMEM;

        for (;;) {
                struct dirent *de;
                uint64_t v;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return parser_error(p, negative_errno(), "cannot read directory %s: %s",
                                                    path, strerror(errno));
                        break;
                }

                /* "." and ".." and anything else that is not a node index. */
                if (parse_decimal(de->d_name, strlen(de->d_name), UINT32_MAX, &v) < 0)
                        continue;
                if (n >= max)
                        return parser_error(p, -E2BIG, "%s has more than %u entries", path, max);
                list[n++] = (unsigned) v;
        }

        qsort(list, n, sizeof(unsigned), cmp_unsigned);
        *ret = TAKE_PTR(list);
        *ret_n = n;
        return 0;
}

enum {
        MEM_HEAP_TYPE,
        MEM_SIZE_IN_BYTES,
        _MEM_KEY_MAX,
};

static const PropKey mem_keys[_MEM_KEY_MAX] = {
        [MEM_HEAP_TYPE]     = { "heap_type",     UINT32_MAX, true },
        [MEM_SIZE_IN_BYTES] = { "size_in_bytes", UINT64_MAX, true },
};

static int parse_mem_banks(Parser *p, const char *node_path, KfdGpu *gpu) {
        _cleanup_free_ char *dir = NULL;
        _cleanup_free_ unsigned *banks = NULL;
        size_t n_banks;
        int r;

        if (asprintf(&dir, "%s/mem_banks", node_path) < 0)
                return -ENOMEM;

        r = list_numeric(p, dir, TOPOLOGY_MAX_ENTRIES, true, &banks, &n_banks);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n_banks; i++) {
                _cleanup_free_ char *path = NULL, *text = NULL;
                uint64_t values[_MEM_KEY_MAX];
                bool seen[_MEM_KEY_MAX];

                if (asprintf(&path, "%s/%u/properties", dir, banks[i]) < 0)
                        return -ENOMEM;
                r = read_text(p, path, false, &text);
                if (r < 0)
                        return r;
                r = parse_properties(p, path, text, mem_keys, _MEM_KEY_MAX, values, seen);
                if (r < 0)
                        return r;

                if (values[MEM_HEAP_TYPE] != KFD_HEAP_TYPE_FB_PUBLIC &&
                    values[MEM_HEAP_TYPE] != KFD_HEAP_TYPE_FB_PRIVATE)
                        continue;

                if (__builtin_add_overflow(gpu->vram_size, values[MEM_SIZE_IN_BYTES], &gpu->vram_size))
                        return parser_error(p, -ERANGE, "%s: VRAM size overflows", path);
                if (values[MEM_HEAP_TYPE] == KFD_HEAP_TYPE_FB_PUBLIC)
                        gpu->large_bar = true;
        }

        return 0;
}

enum {
        LINK_TYPE,
        LINK_NODE_FROM,
        LINK_NODE_TO,
        LINK_FLAGS,
        _LINK_KEY_MAX,
};

static const PropKey link_keys[_LINK_KEY_MAX] = {
        [LINK_TYPE]      = { "type",      UINT32_MAX, true },
        [LINK_NODE_FROM] = { "node_from", UINT32_MAX, true },
        [LINK_NODE_TO]   = { "node_to",   UINT32_MAX, true },
        [LINK_FLAGS]     = { "flags",     UINT32_MAX, true },
};

static int parse_links(Parser *p, const char *node_path, const char *kind, bool p2p) {
        _cleanup_free_ char *dir = NULL;
        _cleanup_free_ unsigned *links = NULL;
        size_t n;
        int r;

        if (asprintf(&dir, "%s/%s", node_path, kind) < 0)
                return -ENOMEM;

        /* p2p_links only exists on kernels with CONFIG_HSA_AMD_P2P-era topology code. */
        r = list_numeric(p, dir, TOPOLOGY_MAX_ENTRIES, true, &links, &n);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = NULL, *text = NULL;
                uint64_t values[_LINK_KEY_MAX];
                bool seen[_LINK_KEY_MAX];

                if (asprintf(&path, "%s/%u/properties", dir, links[i]) < 0)
                        return -ENOMEM;
                r = read_text(p, path, false, &text);
                if (r < 0)
                        return r;
                r = parse_properties(p, path, text, link_keys, _LINK_KEY_MAX, values, seen);
                if (r < 0)
                        return r;

                if (p->n_links >= p->n_links_allocated) {
                        size_t m = MAX(p->n_links_allocated * 2, 16U);
                        TopologyLink *l = reallocarray(p->links, m, sizeof(TopologyLink));
                        if (!l)
                                return -ENOMEM;
                        p->links = l;
                        p->n_links_allocated = m;
                }
                p->links[p->n_links++] = (TopologyLink) {
                        .type = (uint32_t) values[LINK_TYPE],
                        .node_from = (uint32_t) values[LINK_NODE_FROM],
                        .node_to = (uint32_t) values[LINK_NODE_TO],
                        .flags = (uint32_t) values[LINK_FLAGS],
                        .p2p = p2p,
                };
        }

        return 0;
}

enum {
        NODE_SIMD_COUNT,
        NODE_GFX_TARGET_VERSION,
        NODE_VENDOR_ID,
        NODE_DEVICE_ID,
        NODE_LOCATION_ID,
        NODE_DOMAIN,
        NODE_DRM_RENDER_MINOR,
        NODE_HIVE_ID,
        NODE_CAPABILITY,
        NODE_UNIQUE_ID,
        NODE_NUM_XCC,
        _NODE_KEY_MAX,
};

static const PropKey node_keys[_NODE_KEY_MAX] = {
        [NODE_SIMD_COUNT]         = { "simd_count",         UINT32_MAX, true },
        [NODE_GFX_TARGET_VERSION] = { "gfx_target_version", UINT32_MAX, true },
        [NODE_VENDOR_ID]          = { "vendor_id",          UINT32_MAX, true },
        [NODE_DEVICE_ID]          = { "device_id",          UINT32_MAX, true },
        [NODE_LOCATION_ID]        = { "location_id",        UINT32_MAX, true },
        [NODE_DOMAIN]             = { "domain",             UINT32_MAX, true },
        [NODE_DRM_RENDER_MINOR]   = { "drm_render_minor",   UINT32_MAX, true },
        [NODE_HIVE_ID]            = { "hive_id",            UINT64_MAX, true },
        [NODE_CAPABILITY]         = { "capability",         UINT32_MAX, true },
        /* Appended by later kernels; absent means "not reported". */
        [NODE_UNIQUE_ID]          = { "unique_id",          UINT64_MAX, false },
        [NODE_NUM_XCC]            = { "num_xcc",            UINT32_MAX, false },
};

static int parse_gpu_node(Parser *p, unsigned node, uint32_t gpu_id, const char *node_path, KfdGpu *ret) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        uint64_t values[_NODE_KEY_MAX];
        bool seen[_NODE_KEY_MAX];
        KfdGpu gpu = {
                .gpu_id = gpu_id,
                .node_id = node,
        };
        size_t len;
        int r;

        /* name */
        if (asprintf(&path, "%s/name", node_path) < 0)
                return -ENOMEM;
        r = read_text(p, path, false, &text);
        if (r < 0)
                return r;
        len = strcspn(text, "\n");
        if (len >= sizeof(gpu.name))
                return parser_error(p, -EBADMSG, "%s: name longer than %zu characters",
                                    path, sizeof(gpu.name) - 1);
        memcpy(gpu.name, text, len);
        gpu.name[len] = '\0';
        path = mfree(path);
        text = mfree(text);

        /* properties */
        if (asprintf(&path, "%s/properties", node_path) < 0)
                return -ENOMEM;
        r = read_text(p, path, false, &text);
        if (r < 0)
                return r;
        r = parse_properties(p, path, text, node_keys, _NODE_KEY_MAX, values, seen);
        if (r < 0)
                return r;

        gpu.simd_count = (uint32_t) values[NODE_SIMD_COUNT];
        gpu.gfx_target_version = (uint32_t) values[NODE_GFX_TARGET_VERSION];
        gpu.vendor_id = (uint32_t) values[NODE_VENDOR_ID];
        gpu.device_id = (uint32_t) values[NODE_DEVICE_ID];
        gpu.location_id = (uint32_t) values[NODE_LOCATION_ID];
        gpu.pci_domain = (uint32_t) values[NODE_DOMAIN];
        gpu.drm_render_minor = (uint32_t) values[NODE_DRM_RENDER_MINOR];
        gpu.hive_id = values[NODE_HIVE_ID];
        gpu.capability = (uint32_t) values[NODE_CAPABILITY];
        gpu.unique_id = values[NODE_UNIQUE_ID];
        gpu.num_xcc = seen[NODE_NUM_XCC] ? (uint32_t) values[NODE_NUM_XCC] : 1;

        r = kfd_target_name(gpu.gfx_target_version, gpu.target);
        if (r < 0)
                return parser_error(p, -EBADMSG, "%s: gfx_target_version %u has no gfx target name",
                                    path, gpu.gfx_target_version);

        /* location_id is (bus << 8) | devfn; GFX 9.4.3 partitions add the node id above bit 15. */
        (void) snprintf(gpu.pci_location, sizeof(gpu.pci_location), "%04x:%02x:%02x.%x",
                        gpu.pci_domain, (gpu.location_id >> 8) & 0xffU,
                        (gpu.location_id >> 3) & 0x1fU, gpu.location_id & 0x7U);

        r = parse_mem_banks(p, node_path, &gpu);
        if (r < 0)
                return r;
        r = parse_links(p, node_path, "io_links", false);
        if (r < 0)
                return r;
        r = parse_links(p, node_path, "p2p_links", true);
        if (r < 0)
                return r;

        *ret = gpu;
        return 0;
}

static int parse_nodes(Parser *p) {
        _cleanup_free_ char *dir = NULL;
        _cleanup_free_ unsigned *nodes = NULL;
        size_t n_nodes;
        int r;

        if (asprintf(&dir, "%s/nodes", p->root) < 0)
                return -ENOMEM;

        r = list_numeric(p, dir, TOPOLOGY_MAX_NODES, false, &nodes, &n_nodes);
        if (r < 0)
                return r;

        p->gpus = new0(KfdGpu, MAX(n_nodes, 1U));
        if (!p->gpus)
                return -ENOMEM;

        for (size_t i = 0; i < n_nodes; i++) {
                _cleanup_free_ char *node_path = NULL, *path = NULL;
                uint64_t gpu_id;

                if (asprintf(&node_path, "%s/%u", dir, nodes[i]) < 0 ||
                    asprintf(&path, "%s/gpu_id", node_path) < 0)
                        return -ENOMEM;

                r = read_number(p, path, UINT32_MAX, &gpu_id);
                if (errno_is_denied(r)) {
                        /* The device cgroup hides this GPU from us (kfd_topology.c sysfs show): skip it. */
                        p->error = mfree(p->error);
                        p->n_denied++;
                        continue;
                }
                if (r < 0)
                        return r;
                if (gpu_id == 0)
                        continue; /* a CPU node */

                for (size_t j = 0; j < p->n_gpus; j++)
                        if (p->gpus[j].gpu_id == gpu_id)
                                return parser_error(p, -ENOTUNIQ,
                                                    "%s: gpu_id %" PRIu64 " is also used by node %u",
                                                    path, gpu_id, p->gpus[j].node_id);

                r = parse_gpu_node(p, nodes[i], (uint32_t) gpu_id, node_path, &p->gpus[p->n_gpus]);
                if (r < 0)
                        return r;
                p->n_gpus++;
        }

        return 0;
}

static int gpu_index_by_node(const KfdGpu *gpus, size_t n, uint32_t node) {
        for (size_t i = 0; i < n; i++)
                if (gpus[i].node_id == node)
                        return (int) i;
        return -ENOENT;
}

static void build_peers(const Parser *p, KfdPeerLink *peers, uint32_t *types) {
        size_t n = p->n_gpus;

        for (size_t a = 0; a < n; a++)
                for (size_t b = 0; b < n; b++) {
                        KfdPeerLink l = KFD_PEER_LINK_NONE;
                        uint32_t type = 0;

                        if (a == b)
                                l = KFD_PEER_LINK_SELF;
                        else if (p->gpus[a].hive_id != 0 && p->gpus[a].hive_id == p->gpus[b].hive_id) {
                                l = KFD_PEER_LINK_XGMI;
                                type = KFD_IOLINK_TYPE_XGMI;
                        }

                        peers[a * n + b] = l;
                        types[a * n + b] = type;
                }

        /*
         * A direct XGMI io_link, or a p2p_link (KFD's computed PCIe peer path)
         * without the no-P2P flag, lets the peers map each other's VRAM:
         * amdgpu_amdkfd_gpuvm.c kfd_mem_attach → amdgpu_device_is_peer_accessible.
         * The kernel creates these links in both directions; either direction counts.
         */
        for (size_t i = 0; i < p->n_links; i++) {
                const TopologyLink *link = &p->links[i];
                bool xgmi = !link->p2p && link->type == KFD_IOLINK_TYPE_XGMI;
                int a, b;

                if (!xgmi && (!link->p2p || (link->flags & KFD_IOLINK_FLAG_NO_PEER_TO_PEER_DMA)))
                        continue;

                a = gpu_index_by_node(p->gpus, n, link->node_from);
                b = gpu_index_by_node(p->gpus, n, link->node_to);
                if (a < 0 || b < 0 || a == b)
                        continue; /* a GPU↔CPU link */

                for (int k = 0; k < 2; k++) {
                        size_t idx = k == 0 ? (size_t) a * n + (size_t) b : (size_t) b * n + (size_t) a;

                        if (xgmi) {
                                peers[idx] = KFD_PEER_LINK_XGMI;
                                types[idx] = link->type;
                        } else if (peers[idx] == KFD_PEER_LINK_NONE) {
                                peers[idx] = KFD_PEER_LINK_PCIE;
                                types[idx] = link->type;
                        }
                }
        }
}

int kfd_topology_load(KfdTopology **ret, const char *root, char **ret_error) {
        _cleanup_free_ char *gen_path = NULL;
        Parser p = { .root = root };
        int r;

        assert(ret);
        assert(root);

        if (asprintf(&gen_path, "%s/generation_id", root) < 0)
                return -ENOMEM;

        for (unsigned attempt = 0; attempt < TOPOLOGY_MAX_ATTEMPTS; attempt++) {
                _cleanup_free_ KfdPeerLink *peers = NULL;
                _cleanup_free_ uint32_t *types = NULL;
                KfdTopology *t;
                uint64_t gen_before, gen_after;

                parser_reset(&p);

                r = read_number(&p, gen_path, UINT32_MAX, &gen_before);
                if (r < 0)
                        goto fail;

                r = parse_nodes(&p);
                if (r < 0) {
                        Parser scratch = {};
                        uint64_t gen_now;

                        /* A node vanishing under us is a hot-unplug, not a broken tree: retry. */
                        if (read_number(&scratch, gen_path, UINT32_MAX, &gen_now) >= 0 &&
                            gen_now != gen_before) {
                                p.error = mfree(p.error);
                                continue;
                        }
                        free(scratch.error);
                        goto fail;
                }

                KFD_TOPOLOGY_TEST_AFTER_WALK(root, attempt);

                r = read_number(&p, gen_path, UINT32_MAX, &gen_after);
                if (r < 0)
                        goto fail;
                if (gen_before != gen_after)
                        continue; /* a GPU came or went while we walked */

                peers = new0(KfdPeerLink, MAX(p.n_gpus * p.n_gpus, 1U));
                types = new0(uint32_t, MAX(p.n_gpus * p.n_gpus, 1U));
                t = new0(KfdTopology, 1);
                if (!peers || !types || !t) {
                        free(t);
                        r = -ENOMEM;
                        goto fail;
                }
                build_peers(&p, peers, types);

                *t = (KfdTopology) {
                        .generation_id = (uint32_t) gen_after,
                        .n_gpus = p.n_gpus,
                        .n_denied = p.n_denied,
                        .gpus = TAKE_PTR(p.gpus),
                        .peers = TAKE_PTR(peers),
                        .peer_link_types = TAKE_PTR(types),
                };
                parser_reset(&p);
                *ret = t;
                return 0;
        }

        r = parser_error(&p, -EAGAIN, "%s kept changing over %u attempts (GPUs being hot-plugged?)",
                         gen_path, TOPOLOGY_MAX_ATTEMPTS);
fail:
        parser_reset(&p);
        if (ret_error) {
                if (!p.error && r == -ENOMEM)
                        p.error = strdup("out of memory while reading the KFD topology");
                *ret_error = TAKE_PTR(p.error);
        }
        free(p.error);
        return r;
}

KfdTopology *kfd_topology_free(KfdTopology *t) {
        if (!t)
                return NULL;

        free(t->gpus);
        free(t->peers);
        free(t->peer_link_types);
        return mfree(t);
}

int kfd_topology_gpu_index(const KfdTopology *t, uint32_t gpu_id) {
        assert(t);

        for (size_t i = 0; i < t->n_gpus; i++)
                if (t->gpus[i].gpu_id == gpu_id)
                        return (int) i;
        return -ENODEV;
}

const KfdGpu *kfd_topology_get_gpu(const KfdTopology *t, uint32_t gpu_id) {
        int i = kfd_topology_gpu_index(t, gpu_id);

        return i < 0 ? NULL : &t->gpus[i];
}

KfdPeerLink kfd_topology_peer_link(const KfdTopology *t, size_t owner, size_t peer) {
        assert(t);

        if (owner >= t->n_gpus || peer >= t->n_gpus)
                return _KFD_PEER_LINK_INVALID;
        return t->peers[owner * t->n_gpus + peer];
}

bool kfd_topology_can_map(const KfdTopology *t, uint32_t owner_gpu_id, uint32_t peer_gpu_id) {
        int a = kfd_topology_gpu_index(t, owner_gpu_id);
        int b = kfd_topology_gpu_index(t, peer_gpu_id);

        if (a < 0 || b < 0)
                return false;
        return kfd_topology_peer_link(t, (size_t) a, (size_t) b) > KFD_PEER_LINK_NONE;
}

int kfd_target_name(uint32_t gfx_target_version, char ret[static KFD_TARGET_MAX]) {
        static const char hex[] = "0123456789abcdef";
        uint32_t major = KFD_GFX_MAJOR(gfx_target_version);
        uint32_t minor = KFD_GFX_MINOR(gfx_target_version);
        uint32_t stepping = KFD_GFX_STEPPING(gfx_target_version);
        char buf[KFD_TARGET_MAX];

        /* LLVM spells minor and stepping as one hex digit each: 9.0.10 is gfx90a. */
        if (major == 0 || minor > 15 || stepping > 15)
                return -EINVAL;

        (void) snprintf(buf, sizeof(buf), "gfx%u%c%c", major, hex[minor], hex[stepping]);
        memcpy(ret, buf, sizeof(buf));
        return 0;
}

static const char *const peer_link_table[_KFD_PEER_LINK_MAX] = {
        [KFD_PEER_LINK_NONE] = "none",
        [KFD_PEER_LINK_SELF] = "self",
        [KFD_PEER_LINK_XGMI] = "xgmi",
        [KFD_PEER_LINK_PCIE] = "pcie",
};

const char *kfd_peer_link_to_string(KfdPeerLink l) {
        if (l < 0 || l >= _KFD_PEER_LINK_MAX)
                return NULL;
        return peer_link_table[l];
}
