/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The direct socket (docs/architecture.md, "The direct socket").
 *
 * Each peer is served by its own sd-bus server object, but svmd reads what the
 * peer sends and hands sd-bus only what fits the limits of svmd.conf: sd-bus
 * reads from a socketpair svmd writes to, and writes its replies straight to
 * the peer's socket. The gate in front of sd-bus is what makes these hold:
 *
 *   - a message announcing more than "message-size" never reaches sd-bus (which
 *     would allocate the announced size, up to 128 MiB): its bytes are read and
 *     dropped, and the caller gets LimitsExceeded;
 *   - file descriptors pass only with the first bytes of a message whose
 *     UNIX_FDS header field names exactly that many; libsystemd 252 leaks the
 *     fds of a message where they do not match (bus_socket_make_message() drops
 *     them unclosed on -EBADMSG), so such a peer is dropped here instead;
 *   - data sent in the same write as the SASL BEGIN is held back until sd-bus
 *     runs, and sd-bus is driven until it has nothing left to do: libsystemd
 *     leaves a message read together with BEGIN in its buffer without
 *     dispatching it until the next event on the socket;
 *   - a peer that does not finish authenticating, stalls in the middle of a
 *     message or does not read its replies for "peer-timeout-ms" is dropped,
 *     and one with replies queued is not read from until they are gone;
 *   - connections are counted per uid (SO_PEERCRED) and in total; a refused
 *     connection gets its LimitsExceeded error from a minimal SASL exchange here,
 *     without an sd-bus object, and is logged once per uid.
 *
 * The peers' sd-bus objects are not attached to the event loop: sd-event calls
 * every attached bus's prepare callback on each iteration, which with
 * thousands of peers made every iteration, and so every disconnect, O(peers).
 * Each peer instead has one edge-triggered io source that puts it on its uid's
 * ready list, and the uids with ready peers take turns of one message each.
 */

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-event.h>
#include <systemd/sd-id128.h>

#include "client.h"
#include "direct.h"
#include "id-table.h"
#include "list.h"
#include "log.h"
#include "manager.h"
#include "svmd-protocol.h"

#define AUTH_LINE_MAX   512U                    /* a SASL line and what follows it in the same read */
#define HEADER_MAX      4096U                   /* fixed header and header fields of a message */
#define MESSAGE_MIN     24U                     /* the smallest valid message */
#define PEER_FDS_MAX    16U                     /* fds one message may carry: no method takes any */
#define ROOT_RESERVE    16U                     /* connections root may have beyond "connections" */
#define REFUSED_MAX     64U                     /* refused connections waiting for their error */
#define CHUNK_SIZE      (64U * 1024U)           /* bytes read and forwarded at once */
#define RUN_BUDGET      (256U * 1024U)          /* bytes a peer moves before the others get a turn */
#define ACCEPT_BATCH    8U                      /* connections accepted per dispatch of the listener */
#define TRIM_PEAK       256U                    /* a flood of peers whose memory is worth giving back */

#define HEADER_FIELD_UNIX_FDS 9
#define HEADER_FIELD_SENDER   7

typedef enum PeerState {
        PEER_AUTH,              /* SASL lines, forwarded line by line */
        PEER_STARTING,          /* BEGIN forwarded: what follows waits until sd-bus runs */
        PEER_HEADER,            /* a message's fixed header and header fields */
        PEER_BODY,              /* its body, forwarded as it comes */
        PEER_DISCARD,           /* a message over "message-size": read, dropped, then answered */
        PEER_REFUSED_AUTH,      /* a refused connection: SASL answered here */
        PEER_REFUSED_HEADER,    /* … its first call gets the error */
        PEER_REFUSED_DONE,      /* … error sent: waits for the peer to close */
} PeerState;

typedef enum Refusal {
        REFUSAL_NONE,
        REFUSAL_PER_UID,
        REFUSAL_TOTAL,
} Refusal;

typedef struct UidCount {
        uid_t uid;
        unsigned n_peers;               /* admitted */
        unsigned n_refused_peers;       /* refused, still connected */
        unsigned n_refused;             /* refused since the refusal was logged */
        bool logged;                    /* a refusal was logged; again only once the uid is below its limits */
        bool timeout_logged;
        /* The uid's peers with work to do, served one message each in turn. */
        struct Peer *ready_head, *ready_tail;
        struct UidCount *ring_prev, *ring_next; /* on the server's ring while it has ready peers */
        bool in_ring;
        unsigned n_jobs;                /* its direct peers' requests in flight on the kernel executor */
} UidCount;

typedef struct Peer Peer;

struct Peer {
        DirectServer *server;
        int fd;                 /* the peer's socket; sd-bus writes replies to it (and owns it) */
        int feed;               /* our end of the socketpair sd-bus reads from */
        sd_bus *bus;            /* NULL: a refused connection */
        sd_bus_slot *filter;    /* counts the messages sd-bus dispatched (n_dispatched) */
        uint64_t n_dispatched;
        sd_event_source *io, *timer;
        uid_t uid;
        pid_t pid;
        UidCount *uc;
        Peer *prev, *next;
        Peer *ready_prev, *ready_next;
        bool queued;            /* on its uid's ready list */
        bool hangup;
        bool drained;           /* a read came back short: nothing to read until the next edge */
        bool closing;           /* the peer shut down its side: read on until the end of the stream */
        bool turn_over;         /* a message went to sd-bus in this turn */
        bool bus_owns_fd;       /* sd_bus_set_fd() took p->fd */
        bool busy;              /* the timer runs */
        bool restart_timer;     /* a message was complete: the next one has its own time */
        bool size_logged;
        uint32_t events;
        PeerState state;
        Refusal refusal;
        uint8_t *buf;           /* SASL lines, or the header of the current message */
        size_t n_buf;
        uint64_t left;          /* PEER_BODY, PEER_DISCARD: bytes of the message still to come */
        uint64_t discarding;    /* PEER_DISCARD: the size the message announced */
        uint32_t serial;        /* PEER_DISCARD: the call to answer, if want_reply */
        bool want_reply;
        int fds[PEER_FDS_MAX];
        unsigned n_fds;
        size_t fds_at;          /* the fds came with a read that ended at buf[fds_at] */
        bool fds_overflow;
};

struct DirectServer {
        Manager *manager;
        char *path;
        int fd;
        sd_event_source *source;
        sd_event_source *ready_source;
        sd_id128_t id;
        Peer *peers;
        UidCount *ring_head, *ring_tail;        /* uids with ready peers, in the order they are served */
        Peer *last_direct;              /* served at once, without a turn, in loop iteration last_iteration */
        uint64_t last_iteration;
        IdTable *by_bus;                /* sd_bus pointer → Peer */
        IdTable *uids;                  /* uid + 1 → UidCount */
        unsigned n_peers;               /* admitted */
        unsigned n_refused_peers;
        unsigned peak;                  /* most peers at once since the heap was last trimmed */
        uint8_t *chunk;                 /* CHUNK_SIZE bytes, shared by every peer */
};

static uint64_t server_timeout_usec(const DirectServer *s) {
        return s->manager->config.limit_peer_timeout_ms * UINT64_C(1000);
}

/* The jobs a uid's direct peers may have in flight: one per worker, so that it never queues ahead of others. */
static unsigned server_jobs_max(const DirectServer *s) {
        return (unsigned) MAX(s->manager->config.limit_kernel_workers, UINT64_C(1));
}

static bool uid_may_run(const DirectServer *s, const UidCount *uc) {
        return uc->n_jobs < server_jobs_max(s);
}

/* ---- uids ---- */

static UidCount *uid_count_get(DirectServer *s, uid_t uid) {
        UidCount *uc = id_table_get(s->uids, (uint64_t) uid + 1);

        if (uc)
                return uc;
        uc = calloc(1, sizeof(UidCount));
        if (!uc)
                return NULL;
        uc->uid = uid;
        if (id_table_put(s->uids, (uint64_t) uid + 1, uc) < 0) {
                free(uc);
                return NULL;
        }
        return uc;
}

/* Whether a new connection of uc's uid may be served, and if not, why. */
static Refusal admission(const DirectServer *s, const UidCount *uc) {
        const Config *c = &s->manager->config;

        if (uc->uid == 0)
                return s->n_peers >= c->limit_connections + ROOT_RESERVE ? REFUSAL_TOTAL : REFUSAL_NONE;
        if (uc->n_peers >= c->limit_connections_per_uid)
                return REFUSAL_PER_UID;
        if (s->n_peers >= c->limit_connections)
                return REFUSAL_TOTAL;
        return REFUSAL_NONE;
}

static void uid_count_release(DirectServer *s, UidCount *uc) {
        if (!uc)
                return;
        if (uc->logged && admission(s, uc) == REFUSAL_NONE) {
                if (uc->n_refused > 1)
                        log_info("uid %u: %u direct connections were refused in all while it was at its limit.",
                                 (unsigned) uc->uid, uc->n_refused);
                uc->logged = false;
                uc->n_refused = 0;
        }
        if (uc->n_peers > 0 || uc->n_refused_peers > 0 || uc->logged || uc->n_jobs > 0)
                return;
        (void) id_table_remove(s->uids, (uint64_t) uc->uid + 1);
        free(uc);
}

/*
 * ---- the ready lists: peers with work to do ----
 *
 * Fair per uid, not per connection (docs/architecture.md, "The direct socket"): each uid with
 * ready peers is on a ring, and each dispatch serves the uid at the head one message of its
 * first ready peer, then moves both to the back. A uid with 16 busy connections gets one turn
 * per round, like a uid with one.
 */

static void ring_remove(DirectServer *s, UidCount *uc) {
        if (!uc->in_ring)
                return;
        LIST_REMOVE_TAIL(s->ring_head, s->ring_tail, uc, ring_prev, ring_next);
        uc->in_ring = false;
}

static void ring_append(DirectServer *s, UidCount *uc) {
        if (uc->in_ring)
                return;
        LIST_APPEND(s->ring_head, s->ring_tail, uc, ring_prev, ring_next);
        uc->in_ring = true;
}

static void peer_queue(Peer *p) {
        DirectServer *s = p->server;
        UidCount *uc = p->uc;

        if (p->queued)
                return;
        p->queued = true;
        LIST_APPEND(uc->ready_head, uc->ready_tail, p, ready_prev, ready_next);
        /* A uid with all the jobs it may have in flight waits off the ring (direct_server_job_ended()). */
        if (uid_may_run(s, uc)) {
                ring_append(s, uc);
                (void) sd_event_source_set_enabled(s->ready_source, SD_EVENT_ON);
        }
}

static void peer_unqueue(Peer *p) {
        DirectServer *s = p->server;
        UidCount *uc = p->uc;

        if (!p->queued)
                return;
        LIST_REMOVE_TAIL(uc->ready_head, uc->ready_tail, p, ready_prev, ready_next);
        p->queued = false;
        if (!uc->ready_head)
                ring_remove(s, uc);
        if (!s->ring_head)
                (void) sd_event_source_set_enabled(s->ready_source, SD_EVENT_OFF);
}

/* ---- peers ---- */

static void close_fds(Peer *p) {
        for (unsigned i = 0; i < p->n_fds; i++)
                safe_close(p->fds[i]);
        p->n_fds = 0;
        p->fds_overflow = false;
}

static Peer *peer_free(Peer *p) {
        DirectServer *s;

        if (!p)
                return NULL;
        s = p->server;

        peer_unqueue(p);
        LIST_REMOVE(s->peers, p, prev, next);

        /* The io source goes before sd-bus closes the fd it watches. */
        p->io = sd_event_source_disable_unref(p->io);
        p->timer = sd_event_source_disable_unref(p->timer);
        close_fds(p);

        if (p->refusal == REFUSAL_NONE) {
                s->n_peers--;
                p->uc->n_peers--;
        } else {
                s->n_refused_peers--;
                p->uc->n_refused_peers--;
        }
        if (s->last_direct == p)
                s->last_direct = NULL;
        p->filter = sd_bus_slot_unref(p->filter);
        if (p->bus) {
                (void) id_table_remove(s->by_bus, (uint64_t) (uintptr_t) p->bus);
                manager_direct_peer_closed(s->manager, p->bus);
                /* No flush: a peer that does not read must not block the daemon. */
                sd_bus_close_unref(p->bus);
        }
        if (!p->bus_owns_fd)
                safe_close(p->fd);
        safe_close(p->feed);
        uid_count_release(s, p->uc);
        free(p->buf);
        free(p);

        /* After a flood of connections, the heap would keep their memory until the next one:
         * give it back once most of them are gone. */
        if (s->peak >= TRIM_PEAK && (s->n_peers + s->n_refused_peers) * 4 <= s->peak) {
                s->peak = s->n_peers + s->n_refused_peers;
                (void) malloc_trim(0);
        }
        return NULL;
}

static bool peer_output_pending(Peer *p) {
        int e;

        if (!p->bus)
                return false;
        e = sd_bus_get_events(p->bus);
        return e > 0 && (e & POLLOUT);
}

static int on_peer_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        Peer *p = userdata;
        const char *what = p->state == PEER_AUTH || p->state == PEER_STARTING || p->state == PEER_REFUSED_AUTH
                                   ? "did not authenticate"
                           : peer_output_pending(p) ? "did not read its replies"
                                                    : "did not finish sending a message";

        if (p->uc && !p->uc->timeout_logged) {
                p->uc->timeout_logged = true;
                log_info("Direct peer of uid %u (pid %d) %s within %" PRIu64 " ms (\"peer-timeout-ms\"), "
                         "dropping it; further ones of this uid are dropped silently.",
                         (unsigned) p->uid, (int) p->pid, what, p->server->manager->config.limit_peer_timeout_ms);
        } else
                log_debug("Direct peer of uid %u (pid %d) %s in time, dropping it.", (unsigned) p->uid, (int) p->pid,
                          what);
        peer_free(p);
        return 0;
}

/* Whether the peer is in the middle of something that must end within the timeout. */
static bool peer_is_busy(Peer *p) {
        switch (p->state) {
        case PEER_HEADER:
                return p->n_buf > 0 || peer_output_pending(p);
        case PEER_BODY:
        case PEER_DISCARD:
                return true;
        default:
                return true; /* authenticating, or refused */
        }
}

/* Match the io events to what sd-bus wants to write, and run the timer while the peer is busy. */
static int peer_update(Peer *p) {
        uint32_t events = EPOLLIN | EPOLLRDHUP | EPOLLET;
        bool busy;
        int r;

        if (peer_output_pending(p))
                events |= EPOLLOUT;
        if (events != p->events) {
                r = sd_event_source_set_io_events(p->io, events);
                if (r < 0)
                        return r;
                p->events = events;
        }

        busy = peer_is_busy(p);
        if (!busy) {
                p->busy = p->restart_timer = false;
                return p->timer ? sd_event_source_set_enabled(p->timer, SD_EVENT_OFF) : 0;
        }
        if (p->busy && !p->restart_timer)
                return 0;
        p->busy = true;
        p->restart_timer = false;
        if (!p->timer) {
                r = sd_event_add_time_relative(p->server->manager->event, &p->timer, CLOCK_MONOTONIC,
                                               server_timeout_usec(p->server), 0, on_peer_timeout, p);
                if (r < 0)
                        return r;
                return sd_event_source_set_description(p->timer, "direct-peer-timeout");
        }
        r = sd_event_source_set_time_relative(p->timer, server_timeout_usec(p->server));
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(p->timer, SD_EVENT_ONESHOT);
}

/* Let sd-bus read what was fed to it and dispatch it, until it has nothing left to do. */
static int peer_pump(Peer *p) {
        int r, any = 0;

        for (;;) {
                r = sd_bus_process(p->bus, NULL);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                any = 1;
        }
        if (sd_bus_is_open(p->bus) <= 0)
                return -ECONNRESET;
        return any;
}

/*
 * A whole message was fed, and sd-bus had read everything before it (it reads no further than
 * the message it is at): let it read and dispatch that one. Stopping once it is dispatched
 * saves the read that would end in EAGAIN.
 */
static int peer_pump_message(Peer *p) {
        uint64_t n = p->n_dispatched;
        int r;

        do {
                r = sd_bus_process(p->bus, NULL);
                if (r < 0)
                        return r;
        } while (r > 0 && p->n_dispatched == n);
        if (sd_bus_is_open(p->bus) <= 0)
                return -ECONNRESET;
        return 0;
}

static int on_bus_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Peer *p = userdata;

        p->n_dispatched++;
        return 0;
}

/*
 * Read up to size bytes from the peer; fds that come along are kept in p->fds. 0 is EOF. A short
 * read without fds means the socket is empty (a stream read stops early only after fds): the next
 * data raises a new edge, so until then nothing is read and no read ends in EAGAIN.
 */
static ssize_t peer_recv(Peer *p, void *data, size_t size) {
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int) * PEER_FDS_MAX)];
        } control;
        struct iovec iov = { .iov_base = data, .iov_len = size };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = sizeof(control),
        };
        unsigned n_fds = p->n_fds;
        ssize_t n;

        if (p->drained && !p->closing)
                return -EAGAIN;
        n = recvmsg(p->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
                if (errno == EAGAIN)
                        p->drained = true;
                return -errno;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                size_t k;

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int fd;

                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (p->n_fds < PEER_FDS_MAX)
                                p->fds[p->n_fds++] = fd;
                        else {
                                safe_close(fd);
                                p->fds_overflow = true;
                        }
                }
        }
        /* The kernel closed what did not fit. */
        if (mh.msg_flags & MSG_CTRUNC)
                p->fds_overflow = true;
        if (p->n_fds > n_fds && n_fds > 0)
                p->fds_overflow = true; /* fds of two messages at once: no client sends so */
        /* After a shutdown no edge is left to come: then read on until the end of the stream. */
        if (n > 0 && (size_t) n < size && p->n_fds == n_fds && !(mh.msg_flags & MSG_CTRUNC) && !p->closing)
                p->drained = true;
        return n;
}

/* Hand len bytes (and the fds, with the first of them) to sd-bus. */
static int peer_feed(Peer *p, const uint8_t *data, size_t len, bool with_fds) {
        while (len > 0) {
                union {
                        struct cmsghdr align;
                        uint8_t buf[CMSG_SPACE(sizeof(int) * PEER_FDS_MAX)];
                } control = {};
                struct iovec iov = { .iov_base = (void *) data, .iov_len = len };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                ssize_t k;
                int r;

                if (with_fds && p->n_fds > 0) {
                        struct cmsghdr *c;

                        mh.msg_control = &control;
                        mh.msg_controllen = CMSG_SPACE(sizeof(int) * p->n_fds);
                        c = CMSG_FIRSTHDR(&mh);
                        c->cmsg_level = SOL_SOCKET;
                        c->cmsg_type = SCM_RIGHTS;
                        c->cmsg_len = CMSG_LEN(sizeof(int) * p->n_fds);
                        memcpy(CMSG_DATA(c), p->fds, sizeof(int) * p->n_fds);
                }
                k = sendmsg(p->feed, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno != EAGAIN)
                                return -errno;
                        /* sd-bus reads at most the message it knows the size of; let it. */
                        r = peer_pump(p);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                return -EIO;
                        continue;
                }
                if (with_fds) {
                        close_fds(p); /* sd-bus has its own copies now */
                        with_fds = false;
                }
                data += k;
                len -= (size_t) k;
        }
        return 0;
}

static void put_u32(uint8_t *at, uint32_t v) {
        v = htole32(v);
        memcpy(at, &v, sizeof(v));
}

static uint32_t get_u32(const uint8_t *at, bool le) {
        uint32_t v;

        memcpy(&v, at, sizeof(v));
        return le ? le32toh(v) : be32toh(v);
}

/*
 * Send a D-Bus error reply to serial, marshalled here: the call never reached
 * sd-bus. Only written while sd-bus has nothing queued for the peer, so the
 * bytes cannot interleave with its output.
 */
static int send_error(int fd, uint32_t reply_serial, const char *name, const char *text) {
        uint8_t m[1024] = {};
        size_t n = 16, name_len = strlen(name), text_len = strlen(text), fields_len;
        ssize_t k;

        if (name_len > 255 || text_len > 512)
                return -EINVAL;

        /* ERROR_NAME */
        m[n++] = 4, m[n++] = 1, m[n++] = 's', m[n++] = 0;
        put_u32(m + n, (uint32_t) name_len);
        memcpy(m + n + 4, name, name_len);
        n = ALIGN_POW2(n + 4 + name_len + 1, 8);
        /* REPLY_SERIAL */
        m[n++] = 5, m[n++] = 1, m[n++] = 'u', m[n++] = 0;
        put_u32(m + n, reply_serial);
        n = ALIGN_POW2(n + 4, 8);
        /* SIGNATURE */
        m[n++] = 8, m[n++] = 1, m[n++] = 'g', m[n++] = 0;
        m[n++] = 1, m[n++] = 's', m[n++] = 0;
        fields_len = n - 16;
        n = ALIGN_POW2(n, 8);
        /* the body: the message */
        put_u32(m + n, (uint32_t) text_len);
        memcpy(m + n + 4, text, text_len);

        m[0] = 'l', m[1] = 3 /* error */, m[2] = 1 /* no reply expected */, m[3] = 1;
        put_u32(m + 4, (uint32_t) (4 + text_len + 1));
        put_u32(m + 8, 1);
        put_u32(m + 12, (uint32_t) fields_len);
        n += 4 + text_len + 1;

        k = send(fd, m, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k < 0)
                return -errno;
        return (size_t) k == n ? 0 : -EAGAIN;
}

static int send_text(int fd, const char *s) {
        ssize_t k = send(fd, s, strlen(s), MSG_DONTWAIT | MSG_NOSIGNAL);

        if (k < 0)
                return -errno;
        return (size_t) k == strlen(s) ? 0 : -EAGAIN;
}

/*
 * Walk the header fields: the UNIX_FDS field, and whether there is a SENDER.
 * A peer has no bus to vouch for a sender; sd-bus would pass one on as is.
 * Every field the specification defines has a one-letter signature.
 */
static int header_parse_fields(const uint8_t *h, size_t end, bool le, uint32_t *ret_unix_fds) {
        size_t i = 16;

        *ret_unix_fds = 0;
        while (i < end) {
                uint8_t code;
                uint32_t len;

                i = ALIGN_POW2(i, 8);
                if (i + 4 > end || h[i + 1] != 1 || h[i + 3] != 0)
                        return -EBADMSG;
                code = h[i];
                if (code == HEADER_FIELD_SENDER)
                        return -EPERM;
                switch (h[i + 2]) {
                case 'y':
                        i += 5;
                        break;
                case 'u':
                        i = ALIGN_POW2(i + 4, 4);
                        if (i + 4 > end)
                                return -EBADMSG;
                        if (code == HEADER_FIELD_UNIX_FDS)
                                *ret_unix_fds = get_u32(h + i, le);
                        i += 4;
                        break;
                case 's':
                case 'o':
                        i = ALIGN_POW2(i + 4, 4);
                        if (i + 4 > end)
                                return -EBADMSG;
                        len = get_u32(h + i, le);
                        if (len > end)
                                return -EBADMSG;
                        i += 4 + (size_t) len + 1;
                        break;
                case 'g':
                        i += 4;
                        if (i >= end)
                                return -EBADMSG;
                        i += 1 + (size_t) h[i] + 1;
                        break;
                default:
                        return -EBADMSG;
                }
                if (i > end)
                        return -EBADMSG;
        }
        return 0;
}

/* ---- the states ---- */

/* The length of the first complete SASL line in buf, with its CRLF; 0 if none yet. */
static size_t auth_line(const Peer *p) {
        for (size_t i = 1; i < p->n_buf; i++)
                if (p->buf[i - 1] == '\r' && p->buf[i] == '\n')
                        return i + 1;
        return 0;
}

static void buf_consume(Peer *p, size_t n) {
        memmove(p->buf, p->buf + n, p->n_buf - n);
        p->n_buf -= n;
        p->fds_at = p->fds_at > n ? p->fds_at - n : 0;
}

/*
 * Until buf holds want bytes, read what fits up to cap (the messages that follow come along
 * in the same read); returns what was read (0: nothing for now), -ECONNRESET at EOF.
 */
static ssize_t buf_fill(Peer *p, size_t want, size_t cap) {
        unsigned n_fds = p->n_fds;
        ssize_t n;

        assert(want <= cap);
        if (p->n_buf >= want)
                return 0;
        n = peer_recv(p, p->buf + p->n_buf, cap - p->n_buf);
        if (n == -EAGAIN || n == -EINTR)
                return 0;
        if (n < 0)
                return n;
        if (n == 0)
                return -ECONNRESET;
        p->n_buf += (size_t) n;
        if (p->n_fds != n_fds)
                p->fds_at = p->n_buf;
        return n;
}

static bool line_is(const uint8_t *line, size_t len, const char *word) {
        size_t l = strlen(word);

        return len >= l + 2 && memcmp(line, word, l) == 0 && (len == l + 2 || line[l] == ' ');
}

/*
 * Read until buf holds a complete SASL line: *ret_len is its length with CRLF, 0 while there
 * is none; *ret_line the line without the NUL the first one starts with. Returns the bytes
 * read (0: none, wait for the peer) or -errno; fds during authentication break the protocol.
 */
static ssize_t auth_fill(Peer *p, size_t *ret_len, const uint8_t **ret_line, size_t *ret_line_len) {
        size_t len = auth_line(p);
        ssize_t n;

        *ret_len = len;
        if (len > 0) {
                *ret_line = p->buf[0] == 0 ? p->buf + 1 : p->buf;
                *ret_line_len = p->buf[0] == 0 ? len - 1 : len;
                return 1;
        }
        if (p->n_buf >= AUTH_LINE_MAX)
                return -EBADMSG;
        n = buf_fill(p, AUTH_LINE_MAX, AUTH_LINE_MAX);
        if (n > 0 && (p->n_fds > 0 || p->fds_overflow))
                return -EBADMSG;
        return n;
}

static int peer_setup_bus(Peer *p);

static ssize_t step_auth(Peer *p) {
        const uint8_t *line;
        size_t len, l;
        ssize_t n;
        int r;

        n = auth_fill(p, &len, &line, &l);
        if (len == 0)
                return n;

        /* The sd-bus server is made at the peer's first line, in its uid's turn, not at accept(). */
        if (!p->bus) {
                r = peer_setup_bus(p);
                if (r < 0) {
                        log_warning_errno(r, "Setting up a direct connection of uid %u failed, dropping it: %m",
                                          (unsigned) p->uid);
                        return -ECONNRESET;
                }
        }
        r = peer_feed(p, p->buf, len, false);
        if (r < 0)
                return r;
        if (line_is(line, l, "BEGIN"))
                p->state = PEER_STARTING;
        buf_consume(p, len);
        r = peer_pump(p);
        if (r < 0)
                return r;
        return (ssize_t) len;
}

static ssize_t step_starting(Peer *p) {
        int r;

        r = peer_pump(p);
        if (r < 0)
                return r;
        if (sd_bus_is_ready(p->bus) > 0) {
                p->state = PEER_HEADER;
                return 1;
        }
        if (peer_output_pending(p))
                return 0; /* sd-bus takes BEGIN once its answers are written */
        /* sd-bus did not accept BEGIN (no mechanism agreed on yet): more SASL follows. */
        p->state = PEER_AUTH;
        return 1;
}

/* A message is complete: the next one starts, and its time with it. */
static void message_done(Peer *p) {
        p->state = PEER_HEADER;
        p->left = 0;
        p->turn_over = true; /* one message per turn: the other uids' peers come next */
        p->restart_timer = true; /* for peer_update(), if the next one is under way already */
}

static ssize_t step_header(Peer *p) {
        const Config *c = &p->server->manager->config;
        size_t header, len;
        uint64_t total;
        uint32_t body, fields, unix_fds;
        bool le;
        ssize_t n;
        int r;

        /* Replies still queued: read and feed nothing more until the peer took them. */
        if (peer_output_pending(p))
                return 0;

        if (p->n_buf < 16)
                return buf_fill(p, 16, HEADER_MAX);

        if (p->buf[0] != 'l' && p->buf[0] != 'B')
                return -EBADMSG;
        le = p->buf[0] == 'l';
        if (p->buf[3] != 1)
                return -EBADMSG;
        body = get_u32(p->buf + 4, le);
        fields = get_u32(p->buf + 12, le);
        header = 16 + ALIGN_POW2((size_t) fields, 8);
        total = (uint64_t) header + body;

        if (total > c->limit_message_size || header > HEADER_MAX) {
                /* Not for sd-bus: read it, drop it, answer with the reason. */
                p->state = PEER_DISCARD;
                p->discarding = total;
                p->left = total;
                p->serial = get_u32(p->buf + 8, le);
                p->want_reply = p->buf[1] == 1 /* method call */ && !(p->buf[2] & 1 /* no reply expected */);
                if (p->fds_at <= total)
                        close_fds(p); /* this message's: a later message's stay */
                if (!p->size_logged) {
                        p->size_logged = true;
                        log_info("Direct peer of uid %u (pid %d) sent a message of %" PRIu64 " bytes, more than "
                                 "\"message-size\" allows (%" PRIu64 "); refusing it.",
                                 (unsigned) p->uid, (int) p->pid, total, c->limit_message_size);
                }
                return 1;
        }
        if (total < MESSAGE_MIN)
                return -EBADMSG;

        if (p->n_buf < header) {
                n = buf_fill(p, header, HEADER_MAX);
                if (n <= 0 || p->n_buf < header)
                        return n;
        }

        r = header_parse_fields(p->buf, 16 + (size_t) fields, le, &unix_fds);
        if (r < 0)
                return r;
        /*
         * fds travel with the first bytes of their message, as many as it says. A read stops
         * after the bytes that carried fds, so fds that came with a read reaching past this
         * message are a later one's (several messages are read at once); fds that came with
         * bytes of this message and that it does not declare break the protocol.
         */
        if (p->fds_overflow)
                return -EBADMSG;
        if (unix_fds > 0 ? p->n_fds != unix_fds : p->n_fds > 0 && p->fds_at <= total)
                return -EBADMSG;

        /* The whole message at once, if it was read whole: one write, and sd-bus reads it in two. */
        len = (size_t) MIN(total, (uint64_t) p->n_buf);
        r = peer_feed(p, p->buf, len, unix_fds > 0);
        if (r < 0)
                return r;
        buf_consume(p, len);
        p->left = total - len;
        if (p->left == 0) {
                message_done(p);
                r = peer_pump_message(p);
                if (r < 0)
                        return r;
        } else
                p->state = PEER_BODY;
        return (ssize_t) len;
}

static int discard_done(Peer *p) {
        char text[256];
        int r;

        if (p->want_reply) {
                snprintf(text, sizeof(text),
                         "The message of %" PRIu64 " bytes is larger than the %" PRIu64
                         " bytes svmd.conf allows on the direct socket (\"message-size\"); "
                         "split the request or call over the system bus.",
                         p->discarding, p->server->manager->config.limit_message_size);
                r = send_error(p->fd, p->serial, SVMD_ERROR_LIMITS_EXCEEDED, text);
                if (r < 0)
                        return r;
        }
        message_done(p);
        return 0;
}

static ssize_t step_body(Peer *p, bool discard) {
        uint8_t *data = p->server->chunk;
        ssize_t n;
        int r;

        if (p->left == 0) {
                /* Discarded whole: the error goes out once sd-bus has nothing half-written. */
                if (peer_output_pending(p))
                        return 0;
                r = discard_done(p);
                return r < 0 ? r : 1;
        }

        if (p->n_buf > 0) {
                /* Read together with the header (the buffer never holds fds of this message's body). */
                n = (ssize_t) MIN(p->left, (uint64_t) p->n_buf);
                memcpy(data, p->buf, (size_t) n);
                buf_consume(p, (size_t) n);
        } else {
                unsigned n_fds = p->n_fds;
                bool overflow = p->fds_overflow;

                /* No further than this message: fds that come now came with its bytes. */
                n = peer_recv(p, data, MIN(p->left, (uint64_t) CHUNK_SIZE));
                if (n == -EAGAIN || n == -EINTR)
                        return 0;
                if (n < 0)
                        return n;
                if (n == 0)
                        return -ECONNRESET;
                if (p->n_fds != n_fds || p->fds_overflow != overflow) {
                        if (!discard)
                                return -EBADMSG; /* fds in the middle of a message */
                        close_fds(p);
                }
        }
        p->left -= (uint64_t) n;

        if (discard)
                return n; /* the next call answers once left is 0 */

        r = peer_feed(p, data, (size_t) n, false);
        if (r < 0)
                return r;
        if (p->left == 0)
                message_done(p);
        r = peer_pump(p);
        if (r < 0)
                return r;
        return n;
}

/* A refused connection: the SASL server's part, as sd-bus would answer. */
static ssize_t step_refused_auth(Peer *p) {
        const uint8_t *line;
        size_t len, l;
        ssize_t n;
        int r;

        n = auth_fill(p, &len, &line, &l);
        if (len == 0)
                return n;

        if (line_is(line, l, "AUTH EXTERNAL") || line_is(line, l, "AUTH ANONYMOUS")) {
                bool has_data = memchr(line + 5, ' ', l - 7) != NULL;

                if (has_data) {
                        char ok[64];

                        snprintf(ok, sizeof(ok), "OK " SD_ID128_FORMAT_STR "\r\n", SD_ID128_FORMAT_VAL(p->server->id));
                        r = send_text(p->fd, ok);
                } else
                        r = send_text(p->fd, "DATA\r\n");
        } else if (line_is(line, l, "DATA")) {
                char ok[64];

                snprintf(ok, sizeof(ok), "OK " SD_ID128_FORMAT_STR "\r\n", SD_ID128_FORMAT_VAL(p->server->id));
                r = send_text(p->fd, ok);
        } else if (line_is(line, l, "AUTH"))
                r = send_text(p->fd, "REJECTED EXTERNAL ANONYMOUS\r\n");
        else if (line_is(line, l, "NEGOTIATE_UNIX_FD"))
                r = send_text(p->fd, "AGREE_UNIX_FD\r\n");
        else if (line_is(line, l, "BEGIN")) {
                p->state = PEER_REFUSED_HEADER;
                r = 0;
        } else if (line_is(line, l, "CANCEL") || line_is(line, l, "ERROR"))
                r = send_text(p->fd, "REJECTED EXTERNAL ANONYMOUS\r\n");
        else
                r = send_text(p->fd, "ERROR\r\n");
        if (r < 0)
                return r;
        buf_consume(p, len);
        return (ssize_t) len;
}

static ssize_t step_refused_header(Peer *p) {
        const Config *c = &p->server->manager->config;
        char text[320];
        ssize_t n;
        bool le;
        int r;

        if (p->n_buf < 16) {
                n = buf_fill(p, 16, 16);
                if (n > 0)
                        close_fds(p);
                return n;
        }
        le = p->buf[0] == 'l';
        if (p->refusal == REFUSAL_PER_UID)
                snprintf(text, sizeof(text),
                         "uid %u has %" PRIu64 " connections to svmd's direct socket, the most svmd.conf allows "
                         "(\"connections-per-uid\"); close one, or call over the system bus.",
                         (unsigned) p->uid, c->limit_connections_per_uid);
        else
                snprintf(text, sizeof(text),
                         "svmd's direct socket has %u connections, the most svmd.conf allows (\"connections\"); "
                         "try again later, or call over the system bus.",
                         p->server->n_peers);
        r = send_error(p->fd, get_u32(p->buf + 8, le), SVMD_ERROR_LIMITS_EXCEEDED, text);
        if (r < 0)
                return r;
        (void) shutdown(p->fd, SHUT_WR);
        p->n_buf = 0;
        p->state = PEER_REFUSED_DONE;
        return 1;
}

static ssize_t step_refused_done(Peer *p) {
        ssize_t n = peer_recv(p, p->server->chunk, CHUNK_SIZE);

        close_fds(p);
        if (n == -EAGAIN || n == -EINTR)
                return 0;
        if (n == 0)
                return -ECONNRESET;
        return n;
}

static ssize_t step_forward(Peer *p) {
        return step_body(p, false);
}

static ssize_t step_discard(Peer *p) {
        return step_body(p, true);
}

/* Each returns the bytes it moved (or 1 for a change of state), 0 to wait for the peer, or -errno. */
static ssize_t (*const steps[])(Peer *p) = {
        [PEER_AUTH] = step_auth,
        [PEER_STARTING] = step_starting,
        [PEER_HEADER] = step_header,
        [PEER_BODY] = step_forward,
        [PEER_DISCARD] = step_discard,
        [PEER_REFUSED_AUTH] = step_refused_auth,
        [PEER_REFUSED_HEADER] = step_refused_header,
        [PEER_REFUSED_DONE] = step_refused_done,
};

/* Whether a turn could move something without a new event from the peer. */
static bool peer_has_work(const Peer *p) {
        return !p->drained || p->closing || p->n_buf > 0;
}

/*
 * Move the peer's data along until it would block or has had its turn: one message handed to
 * sd-bus, or RUN_BUDGET bytes. Then it goes to the back of its uid's ready list.
 */
static int peer_run(Peer *p) {
        size_t moved = 0;
        ssize_t n;
        int r;

        if (peer_output_pending(p)) {
                r = peer_pump(p);
                if (r < 0)
                        return r;
        }

        p->turn_over = false;
        for (;;) {
                if (moved >= RUN_BUDGET || p->turn_over) {
                        if (peer_has_work(p))
                                peer_queue(p);
                        break;
                }
                assert(p->state < ELEMENTSOF(steps));
                n = steps[p->state](p);
                if (n < 0)
                        return (int) n;
                if (n == 0) {
                        /* Waiting for the peer: after a hangup, nothing more can come. */
                        if (p->hangup)
                                return -ECONNRESET;
                        break;
                }
                moved += (size_t) n;
        }
        return peer_update(p);
}

static void peer_run_or_drop(Peer *p) {
        int r = peer_run(p);

        if (r >= 0)
                return;
        if (r == -ECONNRESET || r == -EPIPE)
                log_debug("Direct peer of uid %u disconnected.", (unsigned) p->uid);
        else if (r == -EPERM)
                log_info("Direct peer of uid %u (pid %d) claimed a sender; only the bus may name one. Dropping it.",
                         (unsigned) p->uid, (int) p->pid);
        else
                log_info_errno(r, "Direct peer of uid %u (pid %d) broke the D-Bus protocol, dropping it: %m",
                               (unsigned) p->uid, (int) p->pid);
        peer_free(p);
}

/*
 * An edge: the peer goes on its uid's ready list, and on_ready() serves it in its turn. The io
 * sources run before on_ready() (a higher priority), so every peer that became ready in one
 * epoll_wait() is queued before any is served.
 */
static int on_peer_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        Peer *p = userdata;
        DirectServer *s = p->server;
        uint64_t iteration = 0;

        if (revents & (EPOLLHUP | EPOLLERR))
                p->hangup = true;
        if (revents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                p->closing = true;
        p->drained = false;

        /*
         * Nobody waits: serve it at once, which saves the loop an iteration per message. Not if
         * the iteration before served another peer so: then this one may have become ready in the
         * same epoll_wait(), with more behind it, and they all take turns.
         */
        (void) sd_event_get_iteration(s->manager->event, &iteration);
        if (!s->ring_head && !p->queued && uid_may_run(s, p->uc) &&
            (s->last_direct == p || !s->last_direct || iteration != s->last_iteration + 1)) {
                s->last_direct = p;
                s->last_iteration = iteration;
                peer_run_or_drop(p);
                return 0;
        }
        peer_queue(p);
        return 0;
}

/* One turn: the first ready peer of the uid at the head of the ring; both go to the back. */
static int on_ready(sd_event_source *source, void *userdata) {
        DirectServer *s = userdata;
        UidCount *uc;
        Peer *p;

        /* A uid whose last turn made it reach its jobs in flight waits for one to end. */
        while ((uc = s->ring_head) && !uid_may_run(s, uc))
                ring_remove(s, uc);
        if (!uc)
                return sd_event_source_set_enabled(source, SD_EVENT_OFF);
        p = uc->ready_head;
        peer_unqueue(p);
        if (uc->in_ring) {
                ring_remove(s, uc);
                ring_append(s, uc);
        }
        peer_run_or_drop(p);
        return 0;
}

/* ---- accepting ---- */

static void log_refusal(DirectServer *s, UidCount *uc, Refusal why, pid_t pid) {
        const Config *c = &s->manager->config;

        uc->n_refused++;
        if (uc->logged)
                return;
        uc->logged = true;
        if (why == REFUSAL_PER_UID)
                log_warning("Refusing direct connections of uid %u (pid %d): it has %u, the most \"connections-per-uid\" "
                            "allows; logged once until it is below the limit again.",
                            (unsigned) uc->uid, (int) pid, uc->n_peers);
        else
                log_warning("Refusing direct connections of uid %u (pid %d): %u are open, the most \"connections\" "
                            "allows (%" PRIu64 "); logged once per uid until there is room again.",
                            (unsigned) uc->uid, (int) pid, s->n_peers, c->limit_connections);
}

static int peer_setup_bus(Peer *p) {
        _cleanup_close_ int theirs = -EBADF;
        DirectServer *s = p->server;
        sd_id128_t id;
        int pair[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0)
                return -errno;
        p->feed = pair[0];
        theirs = pair[1];
        r = sd_bus_new(&p->bus);
        if (r < 0)
                return r;
        /* sd-bus reads what the gate lets through and writes to the peer itself. */
        r = sd_bus_set_fd(p->bus, theirs, p->fd);
        if (r < 0)
                return r;
        TAKE_FD(theirs);
        p->bus_owns_fd = true;
        r = sd_id128_randomize(&id);
        if (r < 0)
                return r;
        r = sd_bus_set_server(p->bus, 1, id);
        if (r < 0)
                return r;
        /* The peer's identity is its SO_PEERCRED, taken at accept(); sd-bus only sees the socketpair,
         * whose credentials are svmd's own, so it must not compare the uid EXTERNAL claims with them. */
        r = sd_bus_set_anonymous(p->bus, true);
        if (r < 0)
                return r;
        /* File descriptors travel on the direct connection (Export, Attach). */
        r = sd_bus_negotiate_fds(p->bus, 1);
        if (r < 0)
                return r;
        r = manager_add_bus_objects(s->manager, p->bus);
        if (r < 0)
                return r;
        r = sd_bus_add_filter(p->bus, &p->filter, on_bus_message, p);
        if (r < 0)
                return r;
        r = sd_bus_start(p->bus);
        if (r < 0)
                return r;
        return id_table_put(s->by_bus, (uint64_t) (uintptr_t) p->bus, p);
}

/* Take one accepted connection: admitted, refused with an error, or dropped; never fails the listener. */
static void peer_new(DirectServer *s, int fd) {
        _cleanup_close_ int cfd = fd;
        struct ucred ucred = {};
        socklen_t len = sizeof(ucred);
        UidCount *uc;
        Refusal why;
        Peer *p;
        int r;

        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &ucred, &len) < 0) {
                log_warning_errno(errno, "Reading the credentials of a direct peer failed, dropping it: %m");
                return;
        }
        uc = uid_count_get(s, ucred.uid);
        if (!uc) {
                log_warning_errno(ENOMEM, "Accepting a direct connection of uid %u failed, dropping it: %m",
                                  (unsigned) ucred.uid);
                return;
        }
        why = admission(s, uc);
        if (why != REFUSAL_NONE) {
                log_refusal(s, uc, why, ucred.pid);
                if (s->n_refused_peers >= REFUSED_MAX) {
                        uid_count_release(s, uc);
                        return; /* too many waiting for their error already: just close */
                }
        }

        p = calloc(1, sizeof(Peer));
        if (!p) {
                log_warning_errno(ENOMEM, "Accepting a direct connection of uid %u failed, dropping it: %m",
                                  (unsigned) ucred.uid);
                uid_count_release(s, uc);
                return;
        }
        p->server = s;
        p->fd = TAKE_FD(cfd);
        p->feed = -EBADF;
        p->uid = ucred.uid;
        p->pid = ucred.pid;
        p->uc = uc;
        p->refusal = why;
        p->state = why == REFUSAL_NONE ? PEER_AUTH : PEER_REFUSED_AUTH;
        p->buf = malloc(HEADER_MAX);
        /* Linked and counted first, so peer_free() can undo any step. */
        LIST_PREPEND(s->peers, p, prev, next);
        if (why == REFUSAL_NONE) {
                s->n_peers++;
                uc->n_peers++;
        } else {
                s->n_refused_peers++;
                uc->n_refused_peers++;
        }
        s->peak = MAX(s->peak, s->n_peers + s->n_refused_peers);
        if (!p->buf) {
                r = -ENOMEM;
                goto fail;
        }

        r = sd_event_add_io(s->manager->event, &p->io, p->fd, EPOLLIN | EPOLLRDHUP | EPOLLET, on_peer_io, p);
        if (r < 0)
                goto fail;
        p->events = EPOLLIN | EPOLLRDHUP | EPOLLET;
        (void) sd_event_source_set_description(p->io, "direct-peer");
        /* Queueing only: before the turns (on_ready()), so that they see every ready peer. */
        r = sd_event_source_set_priority(p->io, SD_EVENT_PRIORITY_NORMAL - 1);
        if (r < 0)
                goto fail;
        r = peer_update(p);
        if (r < 0)
                goto fail;
        log_debug("Direct peer of uid %u (pid %d) %s.", (unsigned) p->uid, (int) p->pid,
                  why == REFUSAL_NONE ? "connected" : "refused");
        return;

fail:
        log_warning_errno(r, "Setting up a direct connection of uid %u failed, dropping it: %m", (unsigned) p->uid);
        peer_free(p);
}

static int on_accept(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        DirectServer *s = userdata;

        for (unsigned i = 0; i < ACCEPT_BATCH; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                return 0;
                        /* EMFILE, ENOBUFS, …: this connection is lost; the listener stays. */
                        log_warning_errno(errno, "Accepting a direct connection failed, ignoring: %m");
                        return 0;
                }
                peer_new(s, cfd);
        }
        return 0;
}

int direct_server_new(DirectServer **ret, Manager *m, const char *path) {
        _cleanup_(direct_server_freep) DirectServer *s = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(ENAMETOOLONG, "Socket path %s is too long.", path);
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(errno, "Creating the direct socket failed: %m");

        /* A stale socket from an earlier run would make bind() fail. */
        (void) unlink(path);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return log_error_errno(errno, "Binding %s failed: %m", path);
        /* Anyone may connect; every method authorizes the caller itself, and the limits of
         * svmd.conf bound what connections cost. */
        if (chmod(path, 0666) < 0)
                return log_error_errno(errno, "Setting the mode of %s failed: %m", path);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "Listening on %s failed: %m", path);

        s = calloc(1, sizeof(DirectServer));
        if (!s)
                return log_error_errno(ENOMEM, "Out of memory.");
        s->manager = m;
        s->fd = -EBADF;
        s->path = strdup(path);
        s->chunk = malloc(CHUNK_SIZE);
        if (!s->path || !s->chunk)
                return log_error_errno(ENOMEM, "Out of memory.");
        r = id_table_new(&s->by_bus);
        if (r >= 0)
                r = id_table_new(&s->uids);
        if (r >= 0)
                r = sd_id128_randomize(&s->id);
        if (r < 0)
                return log_error_errno(r, "Setting up the direct socket failed: %m");

        r = sd_event_add_defer(m->event, &s->ready_source, on_ready, s);
        if (r < 0)
                return log_error_errno(r, "Setting up the direct socket failed: %m");
        (void) sd_event_source_set_enabled(s->ready_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->ready_source, "direct-ready");

        r = sd_event_add_io(m->event, &s->source, fd, EPOLLIN, on_accept, s);
        if (r < 0)
                return log_error_errno(r, "Watching %s failed: %m", path);
        s->fd = TAKE_FD(fd);

        *ret = TAKE_PTR(s);
        return 0;
}

DirectServer *direct_server_free(DirectServer *s) {
        UidCount *uc;

        if (!s)
                return NULL;
        while (s->peers)
                peer_free(s->peers);
        sd_event_source_disable_unref(s->source);
        sd_event_source_disable_unref(s->ready_source);
        safe_close(s->fd);
        if (s->path)
                (void) unlink(s->path);
        while ((uc = id_table_steal_first(s->uids, NULL)))
                free(uc);
        id_table_free(s->uids);
        id_table_free(s->by_bus);
        free(s->chunk);
        free(s->path);
        free(s);
        return NULL;
}

/* A message was queued on a peer's bus outside its dispatch (a signal): send it, or wait for the peer to read. */
void direct_server_sent(DirectServer *s, sd_bus *bus) {
        Peer *p = s ? id_table_get(s->by_bus, (uint64_t) (uintptr_t) bus) : NULL;

        if (!p)
                return;
        /* What did not go out at once waits for the peer to read; a write error closes it. */
        if (sd_bus_is_open(p->bus) <= 0)
                peer_queue(p);
        else
                (void) peer_update(p);
}

int direct_server_peer_credentials(DirectServer *s, sd_bus *bus, uid_t *ret_uid, pid_t *ret_pid, int *ret_sockfd) {
        Peer *p = s ? id_table_get(s->by_bus, (uint64_t) (uintptr_t) bus) : NULL;

        if (!p)
                return -ENOENT;
        *ret_uid = p->uid;
        *ret_pid = p->pid;
        *ret_sockfd = p->fd;
        return 0;
}

unsigned direct_server_n_peers(const DirectServer *s) {
        return s ? s->n_peers : 0;
}

void direct_server_job_started(DirectServer *s, uid_t uid) {
        UidCount *uc = s ? id_table_get(s->uids, (uint64_t) uid + 1) : NULL;

        /* Started in the turn of one of its peers: the uid is known. */
        if (uc)
                uc->n_jobs++;
}

void direct_server_job_ended(DirectServer *s, uid_t uid) {
        UidCount *uc = s ? id_table_get(s->uids, (uint64_t) uid + 1) : NULL;

        if (!uc || uc->n_jobs == 0)
                return;
        uc->n_jobs--;
        if (uc->ready_head && uid_may_run(s, uc) && !uc->in_ring) {
                ring_append(s, uc);
                (void) sd_event_source_set_enabled(s->ready_source, SD_EVENT_ON);
        }
        uid_count_release(s, uc);
}
